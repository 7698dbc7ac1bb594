#![allow(clippy::unwrap_used, missing_docs)]
//! Safety and robustness under pauses, outages and extreme values (issue 6), and the
//! provider contract Blob and Cosmos need (issue 7). Each test failed before its fix.

mod common;

use common::*;
use leasing_abstractions::fault::Fault;
use leasing_abstractions::provider::ProviderLayer;
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{advance, Instant};

fn defaults(d: f64) -> LeaseOptions {
    LeaseOptions::default().with_default_lease_duration(secs(d))
}

/// A holder whose thread stops (SIGSTOP, a GC pause, a blocking call) past its safety
/// deadline must not be told it holds when it resumes, although the renewal engine has not
/// run since: every "may I act?" accessor answers from the deadline itself.
#[test]
fn a_paused_holder_is_not_told_it_holds() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let manager = LeaseManager::new(
        Arc::new(InMemoryLeaseProvider::new()),
        defaults(0.3).with_auto_renew_interval(secs(0.2)),
    )
    .unwrap();
    let lease = rt.block_on(manager.acquire("job")).unwrap();
    assert!(lease.is_held());
    let token = lease.cancellation_token();
    // The only thread stops: nothing can run, the renewal engine included.
    std::thread::sleep(Duration::from_millis(400));
    // First actions after resuming, with no await in between.
    assert!(!lease.is_held(), "told it holds after its safety deadline");
    assert_eq!(lease.state(), LeaseState::Lost);
    assert_eq!(lease.remaining_validity(), Some(Duration::ZERO));
    assert!(matches!(
        lease.lost_reason(),
        Some(LostReason::SafetyDeadline)
    ));
    assert!(token.is_cancelled(), "work tied to the lease keeps running");
    assert!(matches!(
        rt.block_on(lease.renew()).unwrap_err().kind(),
        ErrorKind::Lost
    ));
    // `lost()` resolves at once.
    let reason = rt.block_on(lease.lost());
    assert!(matches!(reason, LostReason::SafetyDeadline));
}

/// `lost()` fires at the safety deadline by itself, even if the renewal engine is starved.
#[tokio::test(start_paused = true)]
async fn lost_fires_at_the_deadline_while_a_renewal_hangs() {
    let rig = rig(defaults(3.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let sent = lease.grant().sent_at;
    rig.faults
        .script(Operation::Renew, std::iter::repeat_n(Fault::Hang, 10));
    let reason = lease.lost().await;
    assert!(matches!(reason, LostReason::SafetyDeadline), "{reason:?}");
    assert_eq!(Instant::now() - sent, secs(2.7));
}

/// The largest outage (every call failing) starting at a renewal that a lease survives with
/// default options; outages are tried in 10 ms steps.
async fn largest_outage_survived(duration: f64) -> Duration {
    let mut survived = Duration::ZERO;
    let step = secs(0.01);
    let mut outage = step;
    loop {
        let rig = rig(defaults(duration));
        let lease = rig.manager.acquire("job").await.unwrap();
        let sent = lease.grant().sent_at;
        // The outage starts just before the first renewal is due (2/3 of the duration).
        tokio::time::sleep_until(sent + secs(duration * 2.0 / 3.0) - step).await;
        rig.faults.set_partitioned(true);
        tokio::time::sleep(outage).await;
        rig.faults.set_partitioned(false);
        tokio::time::sleep(secs(duration)).await;
        if !lease.is_held() {
            return survived;
        }
        survived = outage;
        outage += step;
        lease.release().await.unwrap();
    }
}

/// An outage shorter than the slack between the renewal and the safety deadline
/// (`duration × 0.9 − interval`) loses no lease with default options: renewal retries
/// until the deadline, with pauses that shrink as it nears. Before, 3 retries from 500 ms
/// ended a 3 s lease 356 ms into an outage.
#[tokio::test(start_paused = true)]
async fn an_outage_shorter_than_the_slack_loses_nothing() {
    for (d, slack) in [(3.0, 0.7), (30.0, 7.0)] {
        let survived = largest_outage_survived(d).await;
        println!("{d} s lease: survived an outage of {survived:?} starting at a renewal (slack {slack} s)");
        // Within 2 % of the slack (retries near the deadline are ≥ 1 ms apart, and the
        // outage starts 10 ms before the renewal is due).
        assert!(
            survived >= secs(slack * 0.98),
            "{d} s lease survived only {survived:?} of {slack} s"
        );
        assert!(
            survived < secs(slack + 0.02),
            "{d} s lease outlived its deadline"
        );
    }
}

/// A user's retry cap still ends a lease early: it is the user's choice.
#[tokio::test(start_paused = true)]
async fn a_retry_cap_is_honoured() {
    let rig = rig(defaults(30.0).with_auto_renew_max_retries(1));
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.faults.set_partitioned(true);
    let reason = lease.lost().await;
    assert!(
        matches!(reason, LostReason::RetriesExhausted(_)),
        "{reason:?}"
    );
}

/// Extreme durations saturate instead of panicking (issue 6.5).
#[tokio::test(start_paused = true)]
async fn extreme_durations_do_not_panic() {
    // An acquire timeout of Duration::MAX waits (for a release).
    let rig = rig(defaults(30.0).with_acquire_timeout(Duration::MAX));
    let holder = rig.manager.acquire("job").await.unwrap();
    let waiter = {
        let m = rig.manager.clone();
        tokio::spawn(async move { m.acquire("job").await })
    };
    for _ in 0..100 {
        advance(secs(1.0)).await;
        settle().await;
    }
    if waiter.is_finished() {
        panic!("the waiter gave up: {:?}", waiter.await.unwrap());
    }
    holder.release().await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.fencing_token(), 2);
    drop(got);

    // A retry interval of Duration::MAX: the timeout still ends the wait.
    let slow = rig_retry_max();
    let _holder = slow.manager.acquire("job").await.unwrap();
    let started = Instant::now();
    let e = slow.manager.acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(Instant::now() - started, secs(2.0));

    // A manual lease with a huge duration on a provider that allows it.
    let manual = common::rig(defaults(30.0).with_auto_renew(false));
    let lease = manual
        .manager
        .acquire_with(
            "long",
            AcquireOptions::new().duration(Duration::from_secs(365 * 24 * 3600)),
        )
        .await
        .unwrap();
    assert!(lease.is_held());
    assert!(lease.expires_at().is_some());
}

fn rig_retry_max() -> Rig {
    rig(defaults(30.0)
        .with_acquire_retry_interval(Duration::MAX)
        .with_acquire_timeout(secs(2.0)))
}

/// A timeout names the whole timeout and the attempts, and keeps what the last attempt met:
/// "held" reads differently from "backend down" (issue 6.6).
#[tokio::test(start_paused = true)]
async fn timeouts_say_what_the_last_attempt_met() {
    use std::error::Error as _;
    let rig = rig(defaults(30.0)
        .with_acquire_timeout(secs(3.0))
        .with_acquire_retry_interval(secs(1.0)));
    let holder = rig.manager.acquire("job").await.unwrap();
    let e = rig.manager.acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.message().contains("within 3s"), "{e}");
    assert!(e.message().contains("attempts"), "{e}");
    assert!(e.message().contains("held"), "{e}");
    assert_eq!(
        e.operation(),
        Some(leasing_abstractions::Operation::Acquire)
    );
    let cause = e.source().unwrap().downcast_ref::<LeaseError>().unwrap();
    assert_eq!(cause.kind(), ErrorKind::Conflict);
    holder.release().await.unwrap();

    rig.faults.set_partitioned(true);
    let e = rig.manager.acquire("other").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let cause = e.source().unwrap().downcast_ref::<LeaseError>().unwrap();
    assert_eq!(cause.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.message().contains("unavailable"), "{e}");
}

/// A zero timeout is exactly one attempt, waited for in full: a free name is acquired even
/// if the backend is slow; a held one is a `Timeout` at once (issue 6.6).
#[tokio::test(start_paused = true)]
async fn a_zero_timeout_is_one_whole_attempt() {
    let rig = rig(defaults(30.0).with_acquire_timeout(Duration::ZERO));
    rig.faults.set_latency(secs(0.05));
    let lease = rig.manager.acquire("job").await.unwrap();
    assert_eq!(rig.faults.calls(Operation::Acquire), 1);
    let e = rig.manager.acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.message().contains("1 attempt)"), "{e}");
    assert_eq!(rig.faults.calls(Operation::Acquire), 2);
    drop(lease);
}

/// `try_acquire_with` honours a timeout override as the bound of its one attempt.
#[tokio::test(start_paused = true)]
async fn try_acquire_with_honours_a_timeout() {
    let rig = rig(defaults(30.0));
    rig.faults.script(Operation::Acquire, [Fault::Hang]);
    let started = Instant::now();
    let e = rig
        .manager
        .try_acquire_with("job", AcquireOptions::new().timeout(Some(secs(1.0))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(Instant::now() - started, secs(1.0));
}

/// Cancelling a token handed out by the lease stops only the work tied to it (issue 7.8).
#[tokio::test(start_paused = true)]
async fn a_cancelled_child_token_does_not_end_the_lease() {
    let rig = rig(defaults(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let mine = lease.cancellation_token();
    let other = lease.cancellation_token();
    mine.cancel();
    for _ in 0..25 {
        advance(secs(1.0)).await;
        settle().await;
    }
    assert!(lease.is_held());
    assert_eq!(lease.state(), LeaseState::Held);
    assert!(!other.is_cancelled());
    lease.release().await.unwrap();
    assert!(other.is_cancelled(), "release cancels every token");
}

/// A provider with optimistic concurrency: every write returns a new version (an ETag),
/// and a renewal must present the current one (issue 7.1).
#[derive(Debug)]
struct Etagged {
    inner: InMemoryLeaseProvider,
    writes: AtomicUsize,
}

impl Etagged {
    fn next(&self) -> String {
        format!("etag-{}", self.writes.fetch_add(1, Ordering::SeqCst))
    }
    fn current(&self) -> String {
        format!("etag-{}", self.writes.load(Ordering::SeqCst) - 1)
    }
}

/// Only what differs is written; the rest forwards to the store (`ProviderLayer`).
impl ProviderLayer for Etagged {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.inner
    }
    fn provider_name(&self) -> &'static str {
        "etagged"
    }
    fn try_acquire<'a>(
        &'a self,
        r: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            Ok(self
                .inner
                .try_acquire(r)
                .await?
                .map(|g| g.with_version(self.next())))
        })
    }
    fn renew<'a>(&'a self, g: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if g.version.get() != Some(self.current()) {
                return Err(LeaseError::lost("If-Match failed: stale version"));
            }
            self.inner.renew(g).await?;
            g.version.set(self.next());
            Ok(())
        })
    }
    // Batches must go through `renew` above, not straight to the store.
    fn renew_many<'a>(&'a self, g: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(g.len());
            for grant in g {
                out.push(ProviderLayer::renew(self, grant).await);
            }
            out
        })
    }
}
leasing_abstractions::provider_layer!(Etagged);

#[tokio::test(start_paused = true)]
async fn renewals_carry_the_version_the_last_renewal_returned() {
    let p = Arc::new(Etagged {
        inner: InMemoryLeaseProvider::new(),
        writes: AtomicUsize::new(0),
    });
    let manager = LeaseManager::new(p.clone(), defaults(3.0)).unwrap();
    let lease = manager.acquire("job").await.unwrap();
    assert_eq!(lease.grant().version.get().as_deref(), Some("etag-0"));
    // Ten auto-renewals and a manual one, each presenting the previous one's version.
    for _ in 0..205 {
        advance(secs(0.1)).await;
        settle().await;
    }
    lease.renew().await.unwrap();
    assert!(lease.is_held());
    assert!(p.writes.load(Ordering::SeqCst) >= 11);
    assert_eq!(lease.grant().version.get(), Some(p.current()));
    // Clones share the version; equality compares values.
    let clone = lease.grant().clone();
    assert_eq!(&clone, lease.grant());
    assert_eq!(
        format!("{:?}", clone.version),
        format!("{:?}", Some(p.current()))
    );
}

/// Whole-second providers (Azure Blob) reject 15.5 s before any call (issue 7.2).
#[tokio::test(start_paused = true)]
async fn durations_off_the_granularity_are_rejected_before_any_call() {
    #[derive(Debug)]
    struct WholeSeconds(FaultInjectingWrapper);
    type FaultInjectingWrapper = leasing_abstractions::fault::FaultInjectingProvider;
    impl ProviderLayer for WholeSeconds {
        fn inner(&self) -> &dyn LeaseProvider {
            &self.0
        }
        fn provider_name(&self) -> &'static str {
            "whole-seconds"
        }
        fn capabilities(&self) -> ProviderCapabilities {
            ProviderCapabilities::new(secs(15.0), secs(60.0)).with_duration_granularity(secs(1.0))
        }
        // Listing is what this provider cannot do.
        fn list<'a>(&'a self, _: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
            Box::pin(async {
                Err(LeaseError::new(
                    ErrorKind::Unsupported,
                    "the whole-seconds provider cannot list leases",
                ))
            })
        }
    }
    leasing_abstractions::provider_layer!(WholeSeconds);
    let faulty = leasing_abstractions::fault::FaultInjectingProvider::new(Arc::new(
        InMemoryLeaseProvider::new(),
    ));
    let control = faulty.control();
    let m = LeaseManager::new(Arc::new(WholeSeconds(faulty)), defaults(15.0)).unwrap();
    let e = m
        .try_acquire_with("job", AcquireOptions::new().duration(secs(15.5)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.field()),
        (ErrorKind::InvalidArgument, Some("lease_duration"))
    );
    assert!(e.message().contains("whole multiple of 1s"), "{e}");
    assert_eq!(control.calls(Operation::Acquire), 0);
    assert!(LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), defaults(15.5)).is_ok());
    let lease = m
        .try_acquire_with("job", AcquireOptions::new().duration(secs(16.0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(control.calls(Operation::Acquire), 1);
    lease.release().await.unwrap();
    // And the default duration is checked when the manager is built.
    let faulty = leasing_abstractions::fault::FaultInjectingProvider::new(Arc::new(
        InMemoryLeaseProvider::new(),
    ));
    let e = LeaseManager::new(Arc::new(WholeSeconds(faulty)), defaults(15.5)).unwrap_err();
    assert_eq!(e.field(), Some("lease_duration"));
    // The listing default of a provider that cannot list.
    let faulty = leasing_abstractions::fault::FaultInjectingProvider::new(Arc::new(
        InMemoryLeaseProvider::new(),
    ));
    let m = LeaseManager::new(Arc::new(WholeSeconds(faulty)), defaults(15.0)).unwrap();
    let e = m.list(&ListRequest::new("")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(e.operation(), Some(leasing_abstractions::Operation::List));
}

/// "Unknown" expiry is distinct from infinite (issue 7.3).
#[test]
fn expiry_can_be_unknown() {
    let now = std::time::SystemTime::now();
    let unknown = LeaseInfo::new("n", None, 1, now, LeaseExpiry::Unknown, Metadata::new());
    let infinite = LeaseInfo::new("n", None, 1, now, None, Metadata::new());
    let finite = LeaseInfo::new("n", None, 1, now, Some(now), Metadata::new());
    assert_eq!(unknown.expires_at.at(), None);
    assert_ne!(unknown.expires_at, infinite.expires_at);
    assert_eq!(infinite.expires_at, LeaseExpiry::Never);
    assert_eq!(finite.expires_at, LeaseExpiry::At(now));
    assert_eq!(LeaseExpiry::from(now).at(), Some(now));
}

/// Listing through the manager pages to the end and validates the prefix (issue 7.4).
#[tokio::test(start_paused = true)]
async fn list_all_pages_through_held_leases() {
    let rig = rig(defaults(30.0));
    let mut held = Vec::new();
    for i in 0..250 {
        held.push(
            rig.manager
                .acquire(&format!("tenant-a/{i:03}"))
                .await
                .unwrap(),
        );
    }
    let _b = rig.manager.acquire("tenant-b/0").await.unwrap();
    held.pop().unwrap().release().await.unwrap();
    let all = rig.manager.list_all("tenant-a/").await.unwrap();
    assert_eq!(all.len(), 249);
    assert!(all.iter().all(|i| i.name.starts_with("tenant-a/")));
    let page = rig
        .manager
        .list(&ListRequest::new("tenant-a/").with_limit(0))
        .await
        .unwrap();
    assert_eq!(page.leases.len(), 1, "a limit of 0 is taken as 1");
    assert_eq!(rig.manager.list_all("").await.unwrap().len(), 250);
    let e = rig
        .manager
        .list(&ListRequest::new("has space"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.field()),
        (ErrorKind::InvalidArgument, Some("prefix"))
    );
    // 3 pages for 249 names, 1 for the limit of 0, 3 for 250 names; the bad prefix none.
    assert_eq!(rig.faults.calls(Operation::List), 7);
}

/// A provider whose listing never ends: the manager stops at a repeated cursor instead of
/// looping forever.
#[derive(Debug)]
struct EndlessListing;

impl LeaseProvider for EndlessListing {
    fn provider_name(&self) -> &'static str {
        "endless"
    }
    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(secs(1.0), secs(60.0)).with_listing(true)
    }
    fn try_acquire<'a>(
        &'a self,
        _: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async { Ok(None) })
    }
    fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn release<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn inspect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async { Ok(None) })
    }
    fn break_lease<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Err(LeaseError::unavailable("down")) })
    }
    fn list<'a>(&'a self, r: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(async move {
            let info = LeaseInfo::new(
                format!("{}x", r.prefix),
                None,
                1,
                std::time::SystemTime::now(),
                LeaseExpiry::Unknown,
                Metadata::new(),
            );
            Ok(LeasePage::new(vec![info], Some("same".into())))
        })
    }
}

#[tokio::test]
async fn a_repeated_listing_cursor_is_an_error_not_a_loop() {
    let m = LeaseManager::new(Arc::new(EndlessListing), defaults(30.0)).unwrap();
    let e = m.list_all("p").await.unwrap_err();
    assert!(e.message().contains("same listing cursor"), "{e}");
    assert_eq!(e.operation(), Some(leasing_abstractions::Operation::List));
    // Errors from operator calls name the operation and the lease.
    let e = m.break_lease("job").await.unwrap_err();
    assert_eq!(e.operation(), Some(leasing_abstractions::Operation::Break));
    assert_eq!(e.lease_name(), Some("job"));
    let e = m.inspect("bad name").await.unwrap_err();
    assert_eq!(
        e.operation(),
        Some(leasing_abstractions::Operation::Inspect)
    );
}

/// Releasing a lease whose deadline passed while nothing looked (the process was stopped)
/// is not an error, and asks the backend to free it.
#[test]
fn releasing_after_an_unnoticed_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = InMemoryLeaseProvider::new();
    let m = LeaseManager::new(Arc::new(store.clone()), defaults(0.3)).unwrap();
    let lease = rt.block_on(m.acquire("job")).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    rt.block_on(lease.release()).unwrap();
    let info = rt.block_on(store.inspect("job")).unwrap();
    assert!(info.is_none(), "the backend still shows the lease");
}

/// The in-memory store tells an expired grant from a taken-over one.
#[tokio::test(start_paused = true)]
async fn the_store_reports_an_expired_grant() {
    let store = InMemoryLeaseProvider::new();
    let g = store
        .try_acquire(&AcquireRequest::new("job", secs(1.0), Metadata::new()))
        .await
        .unwrap()
        .unwrap();
    advance(secs(1.5)).await;
    let e = store.renew(&g).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Lost);
    assert!(e.message().contains("expired"), "{e}");
}

// ---- Findings of a user's attack on the changes above, each a regression test. ----

async fn run_for(d: f64) {
    for _ in 0..(d * 20.0) as usize {
        advance(secs(0.05)).await;
        settle().await;
    }
}

/// One renewal call that never answers (a dead connection, a lost packet) is cut off while
/// there is time to retry, and the retry keeps the lease; before, the call ran to the
/// safety deadline and the lease was lost.
#[tokio::test(start_paused = true)]
async fn one_hung_renewal_call_does_not_lose_the_lease() {
    let rig = rig(defaults(3.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let log = record(&lease);
    rig.faults.script(Operation::Renew, [Fault::Hang]);
    run_for(10.0).await;
    assert!(lease.is_held(), "{:?}", kinds(&log.lock().unwrap()));
    let k = kinds(&log.lock().unwrap());
    assert_eq!(k[..3], ["failed", "at_risk", "renewed"], "{k:?}");
}

/// Likewise for a batch: one hung grant in a `renew_many` of 20 loses none of them.
#[tokio::test(start_paused = true)]
async fn one_hung_grant_in_a_batch_loses_none() {
    let rig = rig(defaults(30.0));
    let mut leases = Vec::new();
    for i in 0..20 {
        leases.push(rig.manager.acquire(&format!("job-{i}")).await.unwrap());
    }
    rig.faults.script(Operation::Renew, [Fault::Hang]);
    run_for(60.0).await;
    let held = leases.iter().filter(|l| l.is_held()).count();
    assert_eq!(held, 20);
}

/// A failure of a renewal overtaken by a later successful one (a manual renewal beside a
/// hung automatic one) neither puts the lease at risk nor reports a failure.
#[tokio::test(start_paused = true)]
async fn a_failure_overtaken_by_a_later_renewal_is_ignored() {
    let rig = rig(defaults(3.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let log = record(&lease);
    rig.faults.script(Operation::Renew, [Fault::Hang]);
    run_for(2.05).await; // the automatic renewal (due at 2 s) hangs
    lease.renew().await.unwrap();
    run_for(0.6).await; // the hung call is cut off at 2.525 s
    assert_eq!(lease.state(), LeaseState::Held);
    let k = kinds(&log.lock().unwrap());
    assert!(!k.contains(&"failed") && !k.contains(&"at_risk"), "{k:?}");
    run_for(5.0).await;
    assert!(lease.is_held());
}

/// A provider that accepts any duration: `Duration::MAX` and near it neither panic in the
/// manager nor in the accessors.
#[tokio::test(start_paused = true)]
async fn unbounded_durations_do_not_panic() {
    #[derive(Debug)]
    struct Unbounded(InMemoryLeaseProvider);
    impl ProviderLayer for Unbounded {
        fn inner(&self) -> &dyn LeaseProvider {
            &self.0
        }
        fn capabilities(&self) -> ProviderCapabilities {
            ProviderCapabilities::new(secs(1.0), Duration::MAX)
        }
        fn try_acquire<'a>(
            &'a self,
            r: &'a AcquireRequest,
        ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
            // The store caps durations at a year; grant what was asked.
            Box::pin(async move {
                let capped = AcquireRequest::new(&r.name, secs(60.0), r.metadata.clone());
                Ok(self.0.try_acquire(&capped).await?.map(|mut g| {
                    g.duration = r.duration;
                    g
                }))
            })
        }
        fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }
        fn renew_many<'a>(&'a self, g: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
            Box::pin(async move { g.iter().map(|_| Ok(())).collect() })
        }
    }
    leasing_abstractions::provider_layer!(Unbounded);
    let m = LeaseManager::new(
        Arc::new(Unbounded(InMemoryLeaseProvider::new())),
        defaults(30.0),
    )
    .unwrap();
    for (i, d) in [
        Duration::from_secs(u64::MAX),
        Duration::from_secs(9_680_000_000_000_000_000),
    ]
    .into_iter()
    .enumerate()
    {
        let lease = m
            .acquire_with(&format!("huge-{i}"), AcquireOptions::new().duration(d))
            .await
            .unwrap();
        assert!(lease.is_held());
        assert!(lease.expires_at().unwrap() > std::time::SystemTime::now());
        assert!(lease.remaining_validity().unwrap() > secs(86_400.0 * 365.0));
        lease.release().await.unwrap();
    }
}

/// Asking the manager for its held leases declares a loss at the deadline too (health
/// checks then see it and tokens fire), as the lease's own accessors do.
#[test]
fn held_leases_notices_a_passed_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), defaults(0.3)).unwrap();
    let lease = rt.block_on(m.acquire("job")).unwrap();
    let token = lease.cancellation_token();
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(m.held_leases(), vec![("job".to_owned(), LeaseState::Lost)]);
    assert!(token.is_cancelled());
}

/// A zero timeout waits for its one attempt in full, but never past the grant's safety
/// window (a later grant would be refused anyway), for `acquire_with` and
/// `try_acquire_with` alike.
#[tokio::test(start_paused = true)]
async fn zero_timeouts_are_consistent() {
    let rig = rig(defaults(3.0));
    rig.faults.set_latency(secs(0.05));
    let zero = || AcquireOptions::new().timeout(Some(Duration::ZERO));
    let lease = rig
        .manager
        .try_acquire_with("free", zero())
        .await
        .unwrap()
        .expect("a free name is acquired");
    drop(lease);
    rig.faults
        .script(Operation::Acquire, [Fault::Hang, Fault::Hang]);
    for manager_call in 0..2 {
        let started = Instant::now();
        let e = if manager_call == 0 {
            rig.manager.acquire_with("hung", zero()).await.unwrap_err()
        } else {
            rig.manager
                .try_acquire_with("hung", zero())
                .await
                .unwrap_err()
        };
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert_eq!(
            Instant::now() - started,
            secs(0.05) + secs(2.7) - secs(0.05)
        );
    }
}

/// A provider's own `Timeout` (its call deadline) is a transient failure to retry, not the
/// end of the acquisition.
#[tokio::test(start_paused = true)]
async fn a_provider_timeout_is_retried() {
    #[derive(Debug)]
    struct TimesOutOnce(InMemoryLeaseProvider, AtomicUsize);
    impl ProviderLayer for TimesOutOnce {
        fn inner(&self) -> &dyn LeaseProvider {
            &self.0
        }
        fn try_acquire<'a>(
            &'a self,
            r: &'a AcquireRequest,
        ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
            Box::pin(async move {
                if self.1.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(LeaseError::new(ErrorKind::Timeout, "call deadline passed"));
                }
                self.0.try_acquire(r).await
            })
        }
    }
    leasing_abstractions::provider_layer!(TimesOutOnce);
    let p = TimesOutOnce(InMemoryLeaseProvider::new(), AtomicUsize::new(0));
    let m = LeaseManager::new(Arc::new(p), defaults(30.0)).unwrap();
    let lease = m.acquire("job").await.unwrap();
    assert_eq!(lease.fencing_token(), 1);
}

/// Errors from every path carry their operation, and the lease where known.
#[tokio::test(start_paused = true)]
async fn errors_carry_operation_and_lease() {
    use leasing_abstractions::Operation as Op;
    let rig = rig(defaults(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.faults.set_partitioned(true);
    let e = rig.manager.try_acquire("other").await.unwrap_err();
    assert_eq!(e.operation(), Some(Op::Acquire), "{e}");
    let e = lease.renew().await.unwrap_err();
    assert_eq!(e.operation(), Some(Op::Renew), "{e}");
    assert_eq!(e.lease_name(), Some("job"));
    assert_eq!(e.lease_id(), Some(lease.lease_id()));
    let e = lease.release().await.unwrap_err();
    assert_eq!(e.operation(), Some(Op::Release), "{e}");
}

/// A provider that panics in `renew` makes a manual renewal fail, not panic the caller.
#[tokio::test(start_paused = true)]
async fn a_panicking_provider_fails_a_manual_renewal() {
    #[derive(Debug)]
    struct Panics(InMemoryLeaseProvider);
    impl ProviderLayer for Panics {
        fn inner(&self) -> &dyn LeaseProvider {
            &self.0
        }
        fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { panic!("a provider bug") })
        }
    }
    leasing_abstractions::provider_layer!(Panics);
    let m = LeaseManager::new(
        Arc::new(Panics(InMemoryLeaseProvider::new())),
        defaults(30.0),
    )
    .unwrap();
    let lease = m.acquire("job").await.unwrap();
    let e = lease.renew().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    assert_eq!(lease.state(), LeaseState::AtRisk);
}
