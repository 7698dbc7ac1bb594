//! [`Lease`]: the held lease, its state, events and loss signals.

use crate::contract::{LeaseGrant, LeaseProvider};
use crate::error::{LeaseError, Operation, Result};
use crate::metadata::Metadata;
use crate::options::{LeaseDuration, RenewalPolicy};
use crate::spans;
use crate::telemetry::{Metrics, RESULT_SUCCESS};
use futures::FutureExt;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

mod shared;
mod state;

pub(crate) use shared::{LeaseHost, LeaseShared, RenewOutcome};
pub use state::{LeaseEvent, LeaseState, LostReason};

/// A held lease.
///
/// It renews itself in the background (unless auto-renewal is off or the lease is
/// infinite) and reports what happens on [`events`](Self::events), through
/// [`state`](Self::state), [`lost`](Self::lost) and its
/// [`cancellation_token`](Self::cancellation_token).
///
/// Dropping a `Lease` without [`release`](Self::release) stops renewal and releases it in
/// the background; the drop itself never blocks and never panics, also outside a runtime
/// (then the backend expires the lease after its duration).
///
/// # Which signal to use
///
/// - [`lost`](Self::lost) in a `tokio::select!` beside the work it guards.
/// - [`cancellation_token`](Self::cancellation_token) to hand to spawned work: each call
///   is a child token, so cancelling it stops only that work, never the lease.
/// - [`is_held`](Self::is_held) right before an action that must not happen without the
///   lease, and [`fencing_token`](Self::fencing_token) to the resource so that it can
///   refuse a stale holder. `is_held`, [`state`](Self::state),
///   [`remaining_validity`](Self::remaining_validity) and `lost` answer from the safety
///   deadline at the moment they are asked: a holder resuming from a pause is never told
///   it holds a lease it may have lost.
/// - [`events`](Self::events) for logs and dashboards (renewed, renewal failed, at risk,
///   lost, released); [`lost_reason`](Self::lost_reason) after the fact.
/// - [`state_changes`](Self::state_changes) for a view of recorded transitions.
#[must_use = "dropping a Lease releases it at once; bind it (`let lease = …`) for as long as you need it"]
pub struct Lease {
    shared: Arc<LeaseShared>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.shared.grant.name)
            .field("lease_id", &self.shared.grant.lease_id)
            .field("fencing_token", &self.shared.grant.fencing_token)
            .field("state", &self.state())
            .finish()
    }
}

impl Lease {
    pub(crate) fn new(shared: Arc<LeaseShared>) -> Self {
        Self { shared }
    }

    /// Lease name.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert_eq!(lease.name(), "nightly-report");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.grant.name
    }

    /// Lease id of this grant.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// let holder = manager.inspect("nightly-report").await?.expect("held");
    /// assert_eq!(holder.lease_id.as_deref(), Some(lease.lease_id()));
    /// # Ok(()) }
    /// ```
    pub fn lease_id(&self) -> &str {
        &self.shared.grant.lease_id
    }

    /// Fencing token: strictly greater than every earlier grant's for this name. Pass it to
    /// the resource you protect and have it reject smaller ones.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let first = manager.acquire("ledger").await?;
    /// let token = first.fencing_token();
    /// first.release().await?;
    /// let second = manager.acquire("ledger").await?;
    /// // The resource keeps the highest token seen and refuses writes with a smaller one.
    /// assert!(second.fencing_token() > token);
    /// # Ok(()) }
    /// ```
    pub fn fencing_token(&self) -> u64 {
        self.shared.grant.fencing_token
    }

    /// When the lease was acquired (wall clock).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// let holder = manager.inspect("nightly-report").await?.expect("held");
    /// assert_eq!(holder.acquired_at, lease.acquired_at());
    /// # Ok(()) }
    /// ```
    pub fn acquired_at(&self) -> SystemTime {
        self.shared.grant.acquired_at
    }

    /// Duration of the lease.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{AcquireOptions, InMemoryLeaseProvider, LeaseDuration, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?; // the manager's default: 30 s
    /// assert_eq!(lease.duration(), LeaseDuration::Finite(Duration::from_secs(30)));
    /// let options = AcquireOptions::new().duration(Duration::from_secs(5));
    /// let short = manager.acquire_with("cache-warmup", options).await?;
    /// assert_eq!(short.duration().as_finite(), Some(Duration::from_secs(5)));
    /// # Ok(()) }
    /// ```
    pub fn duration(&self) -> LeaseDuration {
        self.shared.grant.duration
    }

    /// When the lease stops being valid unless renewed, by this process's estimate
    /// (now + [`remaining_validity`](Self::remaining_validity)); `None` if infinite.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{AcquireOptions, InMemoryLeaseProvider, LeaseDuration, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::{Duration, SystemTime}};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert!(lease.expires_at().expect("finite") > SystemTime::now());
    /// let forever = AcquireOptions::new().duration(LeaseDuration::Infinite);
    /// let owner = manager.acquire_with("schema-owner", forever).await?;
    /// assert_eq!(owner.expires_at(), None);
    /// # Ok(()) }
    /// ```
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.remaining_validity()
            .map(|r| crate::options::system_after(SystemTime::now(), r))
    }

    /// Time left to act: until the safety deadline (`min(duration × threshold, duration −
    /// drift)` after the last successful renewal's send), the same instant at which
    /// [`lost`](Self::lost) fires; zero once lost or released; `None` if infinite.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> leasing_abstractions::Result<()> {
    /// let options = LeaseOptions::default().with_default_lease_duration(Duration::from_secs(10));
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), options)?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// // Trusted for 10 s × 0.9 (the safety threshold) after the acquisition.
    /// assert_eq!(lease.remaining_validity(), Some(Duration::from_secs(9)));
    /// tokio::time::advance(Duration::from_secs(4)).await;
    /// assert_eq!(lease.remaining_validity(), Some(Duration::from_secs(5)));
    /// # Ok(()) }
    /// ```
    pub fn remaining_validity(&self) -> Option<Duration> {
        self.shared.check_deadline();
        self.shared.remaining()
    }

    /// Metadata stored with the lease.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, environment_metadata};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// let options = LeaseOptions::default().with_metadata(environment_metadata(Some("1.4.2")));
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), options)?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert_eq!(lease.metadata()["version"], "1.4.2");
    /// # Ok(()) }
    /// ```
    pub fn metadata(&self) -> &Metadata {
        &self.shared.grant.metadata
    }

    /// Current state, answered from the safety deadline at the moment of asking: past
    /// it without a successful renewal the lease is [`Lost`](LeaseState::Lost) (and is
    /// declared lost then, if the renewal engine has not done so yet).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, LeaseState};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> leasing_abstractions::Result<()> {
    /// let options = LeaseOptions::default()
    ///     .with_default_lease_duration(Duration::from_secs(10))
    ///     .with_auto_renew(false);
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), options)?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert_eq!(lease.state(), LeaseState::Held);
    /// // Not renewed: lost at the safety deadline, 10 s × 0.9 after the acquisition.
    /// tokio::time::advance(Duration::from_secs(9)).await;
    /// assert_eq!(lease.state(), LeaseState::Lost);
    /// # Ok(()) }
    /// ```
    pub fn state(&self) -> LeaseState {
        self.shared.check_deadline();
        self.shared.state()
    }

    /// Whether the lease is held or at risk: whether the holder may still act on it.
    /// Answered from the safety deadline at the moment of asking, like
    /// [`state`](Self::state).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert!(lease.is_held()); // check right before the guarded action
    /// manager.break_lease("nightly-report").await?; // an operator takes it away
    /// let _ = lease.renew().await; // the next renewal finds out
    /// assert!(!lease.is_held());
    /// # Ok(()) }
    /// ```
    pub fn is_held(&self) -> bool {
        self.shared.check_deadline()
    }

    /// The provider's grant behind this lease.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// let grant = lease.grant();
    /// assert_eq!(grant.name, lease.name());
    /// assert_eq!(grant.fencing_token, lease.fencing_token());
    /// # Ok(()) }
    /// ```
    pub fn grant(&self) -> &LeaseGrant {
        &self.shared.grant
    }

    /// Events from now on. A slow subscriber misses old events (`Lagged`), never blocks the
    /// renewal.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseEvent, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// let mut events = lease.events();
    /// tokio::time::sleep(Duration::from_secs(21)).await; // renewed at 20 s (2/3 of 30 s)
    /// assert!(matches!(events.recv().await?, LeaseEvent::Renewed { .. }));
    /// lease.release().await?;
    /// assert!(matches!(events.recv().await?, LeaseEvent::Released));
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> broadcast::Receiver<LeaseEvent> {
        self.shared
            .events
            .get_or_init(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Recorded state transitions, as a watch channel. A loss at the safety deadline is
    /// recorded when the renewal engine or an accessor notices it, so while this process
    /// was stopped the channel may still show `Held`; ask [`state`](Self::state) or
    /// [`is_held`](Self::is_held) before acting.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, LeaseState};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// let mut changes = lease.state_changes();
    /// let watcher = tokio::spawn(async move {
    ///     changes.wait_for(|s| !s.is_active()).await.map(|state| *state)
    /// });
    /// manager.break_lease("nightly-report").await?;
    /// let _ = lease.renew().await; // the holder learns that it lost the lease
    /// assert_eq!(watcher.await??, LeaseState::Lost);
    /// # Ok(()) }
    /// ```
    pub fn state_changes(&self) -> watch::Receiver<LeaseState> {
        self.shared.state.subscribe()
    }

    /// Why the lease was lost, once it is.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, LostReason};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert!(lease.lost_reason().is_none());
    /// manager.break_lease("nightly-report").await?;
    /// let _ = lease.renew().await; // the backend answers that the lease is gone
    /// assert!(matches!(lease.lost_reason(), Some(LostReason::Revoked(_))));
    /// # Ok(()) }
    /// ```
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.shared
            .lost_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves when the lease is lost, with the reason. Never resolves if the lease is
    /// released instead.
    ///
    /// # Cancellation safety
    /// Cancel-safe: dropping the future changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, LostReason};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// manager.break_lease("nightly-report").await?; // an operator takes it away
    /// let outcome = tokio::select! {
    ///     reason = lease.lost() => Err(reason), // noticed at the next renewal
    ///     () = tokio::time::sleep(Duration::from_secs(3600)) => Ok(()), // the guarded work
    /// };
    /// assert!(matches!(outcome, Err(LostReason::Revoked(_))));
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> LostReason {
        match self.shared.wait_end().await {
            Some(reason) => reason,
            // Released: never lost.
            None => std::future::pending().await,
        }
    }

    /// The state shared with the renewal engine (for the recipes built on leases).
    pub(crate) fn shared(&self) -> &Arc<LeaseShared> {
        &self.shared
    }

    /// A token cancelled when the lease ends: lost, released or dropped. Tie work to it
    /// (`token.run_until_cancelled(work)`).
    ///
    /// Each call returns a new child of the lease's own token: cancelling it stops only
    /// the work tied to it, never the lease (use [`release`](Self::release) for that).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// let token = lease.cancellation_token();
    /// let work = tokio::spawn(async move {
    ///     token.run_until_cancelled(tokio::time::sleep(Duration::from_secs(3600))).await
    /// });
    /// lease.release().await?;
    /// assert_eq!(work.await?, None); // the work was cut short
    /// # Ok(()) }
    /// ```
    pub fn cancellation_token(&self) -> CancellationToken {
        self.shared.token.child_token()
    }

    /// Renews now, outside the background schedule.
    ///
    /// # Errors
    /// `Lost` if the backend says the lease is gone (the lease becomes
    /// [`Lost`](LeaseState::Lost)); other kinds for transient failures (the lease becomes
    /// [`AtRisk`](LeaseState::AtRisk)); `Lost` without a call if the lease already ended.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a renewal cut short leaves the lease as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{ErrorKind, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?; // 30 s, trusted for 27 s
    /// tokio::time::advance(Duration::from_secs(10)).await;
    /// assert_eq!(lease.remaining_validity(), Some(Duration::from_secs(17)));
    /// lease.renew().await?;
    /// assert_eq!(lease.remaining_validity(), Some(Duration::from_secs(27)));
    /// manager.break_lease("nightly-report").await?;
    /// assert_eq!(lease.renew().await.unwrap_err().kind(), ErrorKind::Lost);
    /// # Ok(()) }
    /// ```
    pub async fn renew(&self) -> Result<()> {
        let s = &self.shared;
        if !s.check_deadline() {
            return Err(LeaseError::lost(format!("the lease is {:?}", s.state()))
                .with_lease_name(&s.grant.name)
                .with_lease_id(&s.grant.lease_id)
                .with_operation(Operation::Renew));
        }
        let span = s.renewal_span(spans::Renewal::Manual);
        let sent = Instant::now();
        let deadline = s
            .safety_deadline()
            .unwrap_or_else(|| crate::options::after(sent, crate::options::INFINITE_CALL_BOUND));
        // A panicking provider is a failed renewal here too, as in the renewal engine.
        let call = std::panic::AssertUnwindSafe(async {
            crate::contract::bounded(deadline, s.ctx.provider().renew(&s.grant)).await
        })
        .catch_unwind();
        let result = match call.instrument(span.clone()).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(s.deadline_error()),
            Err(_) => Err(LeaseError::new(
                crate::ErrorKind::Unexpected,
                "the provider panicked while renewing",
            )),
        }
        .map_err(|e| e.or_lease(&s.grant.name, Some(&s.grant.lease_id)));
        let elapsed = sent.elapsed();
        spans::record_result(&span, &result, 0);
        if s.on_renew_result(&result, sent, elapsed, 1) == RenewOutcome::Lost && result.is_ok() {
            return Err(
                LeaseError::lost("the lease ended while the renewal was in flight")
                    .with_lease_name(&s.grant.name)
                    .with_lease_id(&s.grant.lease_id)
                    .with_operation(Operation::Renew),
            );
        }
        result.map_err(|e| e.with_operation(Operation::Renew))
    }

    /// Stops renewal and releases the lease.
    ///
    /// # Errors
    /// The provider's error if the release call failed; the lease counts as released
    /// either way and the backend expires it after its duration. Releasing a lease that
    /// was already lost is `Ok(())`.
    ///
    /// # Cancellation safety
    /// If the future is dropped before it completes, the release continues as if the
    /// lease had been dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, LeaseState};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// let state = lease.state_changes(); // `release` consumes the lease
    /// lease.release().await?;
    /// assert_eq!(*state.borrow(), LeaseState::Released);
    /// assert!(manager.inspect("nightly-report").await?.is_none()); // free for the next holder
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<()> {
        let s = Arc::clone(&self.shared);
        let timeout = s.release_timeout();
        if !s.mark_released() {
            return Ok(());
        }
        s.ctx.forget(s.key);
        // If this future is dropped before the release completes, finish it in the background.
        let mut guard = ReleaseGuard(Some(Arc::clone(&s)));
        let result = s.release_now(timeout).await;
        guard.0 = None;
        result.map_err(|e| e.with_operation(Operation::Release))
    }
}

struct ReleaseGuard(Option<Arc<LeaseShared>>);

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            Arc::clone(&s.ctx).release_in_background(s);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let s = &self.shared;
        s.ctx.forget(s.key);
        if s.mark_released() {
            s.ctx.release_in_background(Arc::clone(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::AcquireRequest;
    use crate::telemetry::TelemetryOptions;

    struct Host {
        provider: Arc<dyn LeaseProvider>,
        metrics: Metrics,
    }

    impl LeaseHost for Host {
        fn provider(&self) -> &Arc<dyn LeaseProvider> {
            &self.provider
        }
        fn metrics(&self) -> &Metrics {
            &self.metrics
        }
        fn forget(&self, _: u64) {}
        fn release_in_background(&self, _: Arc<LeaseShared>) {}
    }

    /// A lease of `duration` sent now, with the default threshold 0.9.
    fn shared(duration: Duration) -> LeaseShared {
        let provider: Arc<dyn LeaseProvider> = Arc::new(crate::InMemoryLeaseProvider::new());
        let meter = opentelemetry::global::meter("lease-unit-tests");
        let metrics = Metrics::new(&meter, "in-memory", &TelemetryOptions::default());
        let request = AcquireRequest::new("job", duration, Metadata::new());
        let grant = LeaseGrant::new(&request, "id", 1, SystemTime::now(), Instant::now());
        LeaseShared::new(
            grant,
            None,
            0.9,
            Arc::new(Host { provider, metrics }),
            opentelemetry::trace::SpanContext::empty_context(),
        )
    }

    /// `state()` answers from the clock by itself, also where nothing (no renewal
    /// engine, no `check_deadline`) has recorded the loss yet.
    #[tokio::test(start_paused = true)]
    async fn state_is_lost_past_the_safety_deadline_before_anything_records_it() {
        let s = shared(Duration::from_secs(10));
        // 10 s × 0.9 = 9 s (the drift allowance, 102 ms, leaves more).
        tokio::time::advance(Duration::from_millis(8_999)).await;
        assert_eq!(s.state(), LeaseState::Held);
        assert!(s.is_active());
        assert_eq!(s.remaining(), Some(Duration::from_millis(1)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(s.recorded_state(), LeaseState::Held, "nothing recorded it");
        assert_eq!(s.state(), LeaseState::Lost);
        assert!(!s.is_active());
        assert_eq!(s.remaining(), Some(Duration::ZERO));
        // At risk past the deadline is lost too; an ended lease stays what it ended as.
        s.state.send_replace(LeaseState::AtRisk);
        assert_eq!(s.state(), LeaseState::Lost);
        s.state.send_replace(LeaseState::Released);
        assert_eq!(s.state(), LeaseState::Released);
    }

    /// An ended lease has no validity left, although its safety deadline is still ahead.
    #[tokio::test(start_paused = true)]
    async fn an_ended_lease_has_no_time_left_before_its_deadline() {
        let s = shared(Duration::from_secs(10));
        assert_eq!(s.remaining(), Some(Duration::from_secs(9)));
        assert!(s.mark_lost(LostReason::SafetyDeadline));
        assert!(!s.mark_lost(LostReason::SafetyDeadline), "ends once");
        assert_eq!(s.state(), LeaseState::Lost);
        assert_eq!(s.remaining(), Some(Duration::ZERO));
        assert_eq!(s.release_timeout(), Duration::from_secs(1));
    }

    /// A renewal answered late never moves the validity backwards.
    #[tokio::test(start_paused = true)]
    async fn a_late_answer_of_an_older_renewal_keeps_the_newer_send() {
        let s = shared(Duration::from_secs(10));
        let first = Instant::now();
        tokio::time::advance(Duration::from_secs(2)).await;
        let newer = Instant::now();
        s.on_renewed(newer, Duration::ZERO);
        assert_eq!(s.last_sent(), newer);
        s.on_renewed(first, Duration::ZERO);
        assert_eq!(
            s.last_sent(),
            newer,
            "an older send must not shorten the lease"
        );
        assert_eq!(s.safety_deadline(), Some(newer + Duration::from_secs(9)));
    }

    #[test]
    fn loss_reasons_have_their_log_labels() {
        let e = LeaseError::lost("gone");
        assert_eq!(LostReason::Revoked(e.clone()).label(), "revoked");
        assert_eq!(LostReason::SafetyDeadline.label(), "safety_deadline");
        assert_eq!(LostReason::RetriesExhausted(e).label(), "retries_exhausted");
    }
}
