//! The renewal engine: one scheduler task per manager renews every held lease.
//!
//! Leases wait in two ordered queues, by the instant they are due and by the instant they
//! become eligible (a little earlier); a single task sleeps until the earliest due one,
//! takes every lease eligible by then (each step O(log n)), and renews
//! them through [`LeaseProvider::renew_many`] in batches of the provider's
//! `max_renew_batch`, each batch one call (one pipelined round trip on Redis). A lease is
//! renewed when its interval ends, or up to `min(duration / 20, 1 s)` earlier when an
//! earlier lease's batch goes out, so leases due at nearly the same time share a batch.
//! Thousands of held leases cost one timer, not thousands.
//!
//! Each batch call is bounded by the earliest safety deadline in the batch. A failed
//! renewal is retried after a jittered exponential backoff, never past the lease's safety
//! deadline; a definitive `Lost` ends the lease at once.

use crate::contract::{LeaseGrant, LeaseProvider};
use crate::error::{ErrorKind, LeaseError, Operation, Result};
use crate::lease::{LeaseHost, LeaseShared, LostReason, RenewOutcome};
use crate::options::after;
use crate::spans;
use crate::telemetry::Metrics;
use futures::FutureExt;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Span;

/// What the manager and its leases share.
pub(crate) struct Ctx {
    pub(crate) provider: Arc<dyn LeaseProvider>,
    pub(crate) metrics: Metrics,
    /// The scheduler's command channel; replaced if the scheduler died with its runtime.
    chan: Mutex<Channel>,
    registry: Mutex<HashMap<u64, Weak<LeaseShared>>>,
}

struct Channel {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Until the scheduler task is spawned (on the first registration).
    rx: Option<mpsc::UnboundedReceiver<Cmd>>,
}

enum Cmd {
    Register(Arc<LeaseShared>),
    Unregister(u64),
    Release(Arc<LeaseShared>),
}

impl Ctx {
    pub(crate) fn new(provider: Arc<dyn LeaseProvider>, metrics: Metrics) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            provider,
            metrics,
            chan: Mutex::new(Channel { tx, rx: Some(rx) }),
            registry: Mutex::new(HashMap::new()),
        }
    }

    fn send(&self, cmd: Cmd) {
        // If the scheduler is gone (its runtime shut down), the next `register` restarts it
        // and re-registers every active lease; a drop-release is then left to the backend's
        // expiry.
        let _ = self
            .chan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tx
            .send(cmd);
    }

    /// Tracks a new lease and hands it to the scheduler. Must run inside a runtime.
    ///
    /// The scheduler runs on the runtime of the first registration. If that runtime has
    /// shut down since (a manager shared across runtimes), the scheduler is restarted here
    /// and every active lease is handed to it again, so none is left unrenewed.
    pub(crate) fn register(&self, lease: &Arc<LeaseShared>) {
        let mut chan = self.chan.lock().unwrap_or_else(|p| p.into_inner());
        let mut revive = Vec::new();
        if chan.tx.is_closed() {
            tracing::warn!("the lease renewal scheduler stopped with its runtime; restarting it");
            let (tx, rx) = mpsc::unbounded_channel();
            *chan = Channel { tx, rx: Some(rx) };
            revive = self.held().into_iter().filter(|l| !l.ended()).collect();
        }
        if let Some(rx) = chan.rx.take() {
            // Subscribed here, not in the task: a signal sent before the task first runs
            // still counts.
            let signals = self.provider.renew_now_signals();
            tokio::spawn(run(Arc::clone(&self.provider), rx, signals));
        }
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lease.key, Arc::downgrade(lease));
        for l in revive.into_iter().chain([Arc::clone(lease)]) {
            // The scheduler task ends only when every sender is gone, and `self` holds one.
            let _ = chan.tx.send(Cmd::Register(l));
        }
    }

    /// The leases this manager holds (their handles are alive), lost ones included.
    pub(crate) fn held(&self) -> Vec<Arc<LeaseShared>> {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

impl LeaseHost for Ctx {
    fn provider(&self) -> &Arc<dyn LeaseProvider> {
        &self.provider
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn forget(&self, key: u64) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.send(Cmd::Unregister(key));
    }

    fn release_in_background(&self, lease: Arc<LeaseShared>) {
        self.send(Cmd::Release(lease));
    }
}

struct Entry {
    lease: Arc<LeaseShared>,
    /// While queued: (due, eligible), its keys in the two queues.
    queued: Option<(Instant, Instant)>,
    /// How much earlier than due the entry may go, to share a batch with an earlier one.
    early: Duration,
    /// Failures in a row.
    failures: u32,
}

struct BatchDone {
    keys: Vec<u64>,
    sent: Instant,
    elapsed: Duration,
    results: Vec<Result<()>>,
    spans: Vec<Span>,
}

struct Scheduler {
    provider: Arc<dyn LeaseProvider>,
    entries: HashMap<u64, Entry>,
    /// By due instant: the scheduler wakes at the first.
    queue: BTreeSet<(Instant, u64)>,
    /// By eligible instant (due − early): a wake-up takes every entry eligible by then.
    eligible: BTreeSet<(Instant, u64)>,
    in_flight: JoinSet<BatchDone>,
    rng: fastrand::Rng,
}

async fn run(
    provider: Arc<dyn LeaseProvider>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    mut renew_now: Option<broadcast::Receiver<()>>,
) {
    let mut s = Scheduler {
        provider,
        entries: HashMap::new(),
        queue: BTreeSet::new(),
        eligible: BTreeSet::new(),
        in_flight: JoinSet::new(),
        rng: fastrand::Rng::new(),
    };
    loop {
        let next = s.queue.first().map(|&(at, _)| at);
        tokio::select! {
            biased;
            cmd = rx.recv() => match cmd {
                Some(cmd) => s.command(cmd),
                None => break,
            },
            signal = recv_opt(&mut renew_now) => match signal {
                Err(broadcast::error::RecvError::Closed) => renew_now = None,
                // A lagged receiver missed signals: one renewal round answers them all.
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => s.renew_all_now(),
            },
            Some(done) = s.in_flight.join_next(), if !s.in_flight.is_empty() => {
                // A renewal task only ends by returning: it is never aborted while we run.
                if let Ok(done) = done {
                    s.batch_done(done);
                }
            }
            () = sleep_until_opt(next) => s.dispatch_due(),
        }
    }
}

/// The next signal, or never when the provider gives none.
async fn recv_opt(
    rx: &mut Option<broadcast::Receiver<()>>,
) -> std::result::Result<(), broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Scheduler {
    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Register(lease) => {
                let Some(window) = lease.safety_window else {
                    return; // infinite: nothing to renew, nothing expires
                };
                let key = lease.key;
                let sent = lease.last_sent();
                let (at, early) = match lease.policy {
                    Some(p) => (after(sent, p.interval), early_slack(p.duration)),
                    // Manual renewal: only watch the safety deadline.
                    None => (after(sent, window), Duration::ZERO),
                };
                self.entries.insert(
                    key,
                    Entry {
                        lease,
                        queued: None,
                        early,
                        failures: 0,
                    },
                );
                self.enqueue(key, at);
            }
            Cmd::Unregister(key) => self.remove(key),
            Cmd::Release(lease) => {
                self.remove(lease.key);
                spawn_release(lease);
            }
        }
    }

    fn remove(&mut self, key: u64) {
        if let Some(e) = self.entries.remove(&key) {
            if let Some((due, eligible)) = e.queued {
                self.queue.remove(&(due, key));
                self.eligible.remove(&(eligible, key));
            }
        }
    }

    /// Queues an entry that is not queued (every caller has just taken it off the queue).
    fn enqueue(&mut self, key: u64, at: Instant) {
        if let Some(e) = self.entries.get_mut(&key) {
            let eligible = at.checked_sub(e.early).unwrap_or(at);
            e.queued = Some((at, eligible));
            self.queue.insert((at, key));
            self.eligible.insert((eligible, key));
        }
    }

    /// The provider asked for every lease to be renewed now: each auto-renewed lease that
    /// is waiting for its turn is due at once (those in flight are being renewed already;
    /// manual leases are renewed by their holders).
    fn renew_all_now(&mut self) {
        let now = Instant::now();
        let waiting: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.queued.is_some() && e.lease.policy.is_some())
            .map(|(&k, _)| k)
            .collect();
        for key in waiting {
            if let Some((due, eligible)) = self.entries.get_mut(&key).and_then(|e| e.queued.take())
            {
                self.queue.remove(&(due, key));
                self.eligible.remove(&(eligible, key));
            }
            self.enqueue(key, now);
        }
    }

    fn dispatch_due(&mut self) {
        let now = Instant::now();
        // Everything due now, plus whatever may go early to share this batch.
        let mut due = Vec::new();
        while let Some(&(eligible, key)) = self.eligible.first() {
            if eligible > now {
                break;
            }
            self.eligible.pop_first();
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            if let Some((at, _)) = e.queued.take() {
                self.queue.remove(&(at, key));
            }
            let lease = &e.lease;
            if lease.ended() {
                self.entries.remove(&key);
                continue;
            }
            let deadline = lease.safety_deadline().unwrap_or(now);
            if now >= deadline {
                let lease = Arc::clone(lease);
                self.entries.remove(&key);
                if lease.mark_lost(LostReason::SafetyDeadline) {
                    // It may still be ours on the backend; free it for the next holder.
                    spawn_release(lease);
                }
                continue;
            }
            if lease.policy.is_none() {
                // Manual lease renewed since: watch the new deadline.
                self.enqueue(key, deadline);
                continue;
            }
            due.push(key);
        }
        // Retries go in batches of their own: a batch call is bounded by its earliest safety
        // deadline, and a retrying lease's is near; healthy leases must not share it. They
        // go first: their deadlines are the nearest.
        let (retrying, fresh): (Vec<u64>, Vec<u64>) = due
            .into_iter()
            .partition(|k| self.entries.get(k).is_some_and(|e| e.failures > 0));
        let batch = self.provider.capabilities().max_renew_batch.max(1);
        for chunk in retrying.chunks(batch).chain(fresh.chunks(batch)) {
            self.spawn_batch(chunk.to_vec());
        }
    }

    fn spawn_batch(&mut self, keys: Vec<u64>) {
        let mut grants: Vec<Arc<LeaseGrant>> = Vec::with_capacity(keys.len());
        let mut spans = Vec::with_capacity(keys.len());
        // Each renewing lease bounds the call by its attempt deadline; the batch takes the
        // earliest. (Every queued lease is finite, so there is one.)
        let now = Instant::now();
        let mut deadline: Option<Instant> = None;
        for key in &keys {
            let e = &self.entries[key];
            grants.push(Arc::clone(&e.lease.grant));
            let span = e.lease.renewal_span(spans::Renewal::Auto);
            span.record("lease.retry_count", e.failures);
            spans.push(span);
            if let Some(d) = e.lease.safety_deadline() {
                let a = attempt_deadline(now, d, e.failures);
                deadline = Some(deadline.map_or(a, |b| b.min(a)));
            }
        }
        let deadline = deadline.unwrap_or_else(|| after(now, Duration::MAX));
        let provider = Arc::clone(&self.provider);
        self.in_flight.spawn(async move {
            let sent = Instant::now();
            // A panicking provider must not leave its leases unwatched: the panic becomes a
            // failed renewal of each (retried, then lost at the deadline).
            // (The provider is called inside the guarded future: a panic while building its
            // future is caught too.)
            let call = std::panic::AssertUnwindSafe(async {
                crate::contract::bounded(deadline, provider.renew_many(&grants)).await
            })
            .catch_unwind();
            let n = grants.len();
            let results = match call.await {
                Err(_) => vec![
                    Err(LeaseError::new(
                        ErrorKind::Unexpected,
                        "the provider panicked while renewing",
                    ));
                    n
                ],
                Ok(Some(r)) if r.len() == n => r,
                Ok(Some(r)) => vec![
                    Err(LeaseError::new(
                        ErrorKind::Unexpected,
                        format!("provider returned {} results for {n} renewals", r.len()),
                    ));
                    n
                ],
                Ok(None) => vec![
                    Err(crate::contract::deadline_passed(
                        Operation::Renew,
                        deadline.saturating_duration_since(sent),
                    ));
                    n
                ],
            };
            BatchDone {
                keys,
                sent,
                elapsed: sent.elapsed(),
                results,
                spans,
            }
        });
    }

    fn batch_done(&mut self, done: BatchDone) {
        let now = Instant::now();
        for ((key, result), span) in done.keys.into_iter().zip(done.results).zip(done.spans) {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            let lease = Arc::clone(&e.lease);
            if lease.ended() {
                self.remove(key);
                continue;
            }
            let result =
                result.map_err(|err| err.or_lease(&lease.grant.name, Some(&lease.grant.lease_id)));
            spans::record_result(&span, &result, e.failures);
            let attempt = e.failures + 1;
            let Some(policy) = lease.policy else { continue };
            match lease.on_renew_result(&result, done.sent, done.elapsed, attempt) {
                RenewOutcome::Renewed => {
                    e.failures = 0;
                    e.early = early_slack(policy.duration);
                    self.enqueue(key, after(done.sent, policy.interval));
                }
                RenewOutcome::Lost => self.remove(key),
                RenewOutcome::Superseded => {
                    e.failures = 0;
                    e.early = early_slack(policy.duration);
                    self.enqueue(key, after(lease.last_sent(), policy.interval));
                }
                RenewOutcome::Failed => {
                    e.failures = attempt;
                    if policy.max_retries.is_some_and(|max| attempt > max) {
                        self.remove(key);
                        let err = result.err().unwrap_or_else(|| lease.deadline_error());
                        if lease.mark_lost(LostReason::RetriesExhausted(err)) {
                            spawn_release(lease);
                        }
                        continue;
                    }
                    e.early = Duration::ZERO;
                    // Retry until the safety deadline, the pauses shrinking as it nears;
                    // at the deadline itself the dispatch declares the lease lost.
                    let deadline = lease.safety_deadline().unwrap_or(now);
                    let left = deadline.saturating_duration_since(now);
                    let pause = policy.retry_pause(attempt, self.rng.f64(), left);
                    self.enqueue(key, (now + pause).min(deadline));
                }
            }
        }
    }
}

/// How long one renewal call may take, from `now`, for a lease whose safety deadline is
/// `deadline`: three quarters of the time left for the first attempt of an episode, half
/// for a retry. A call that hangs (a dead connection, a lost packet) is cut off while
/// there is still time to retry it, instead of taking the lease down at the deadline.
fn attempt_deadline(now: Instant, deadline: Instant, failures: u32) -> Instant {
    let left = deadline.saturating_duration_since(now);
    let share = if failures == 0 {
        left * 3 / 4
    } else {
        left / 2
    };
    now + share.max(Duration::from_millis(1)).min(left)
}

/// The most any renewal goes early.
const MAX_EARLY: Duration = Duration::from_secs(1);

/// How early a lease may be renewed so that leases due together share a batch:
/// 5 % of its duration, at most [`MAX_EARLY`].
fn early_slack(duration: Duration) -> Duration {
    (duration / 20).min(MAX_EARLY)
}

fn spawn_release(lease: Arc<LeaseShared>) {
    tokio::spawn(async move {
        let timeout = lease.release_timeout();
        if let Err(e) = lease.release_now(timeout).await {
            tracing::warn!(
                lease.name = %lease.grant.name,
                error = %e,
                "background release failed; the backend will expire the lease"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_attempt_gets_three_quarters_of_the_time_left_then_half_for_retries() {
        let now = Instant::now();
        let deadline = now + ms(1000);
        assert_eq!(attempt_deadline(now, deadline, 0), now + ms(750));
        assert_eq!(attempt_deadline(now, deadline, 1), now + ms(500));
        assert_eq!(attempt_deadline(now, deadline, 7), now + ms(500));
        // Never less than 1 ms (a call needs some time) and never past the deadline.
        assert_eq!(attempt_deadline(now, now + ms(1), 0), now + ms(1));
        assert_eq!(
            attempt_deadline(now, now + Duration::from_micros(500), 0),
            now + Duration::from_micros(500)
        );
        assert_eq!(attempt_deadline(now, now, 0), now);
        // A deadline already passed leaves nothing.
        assert_eq!(attempt_deadline(deadline, now, 0), deadline);
    }

    #[test]
    fn leases_go_early_by_a_twentieth_of_their_duration_at_most_one_second() {
        assert_eq!(early_slack(ms(10_000)), ms(500));
        assert_eq!(early_slack(ms(20_000)), MAX_EARLY);
        assert_eq!(early_slack(ms(60_000)), MAX_EARLY);
        assert_eq!(MAX_EARLY, ms(1000));
    }
}
