//! Edge cases of the manager and the renewal engine.

mod common;

use common::*;
use leasing_abstractions::fault::Fault;
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::time::{advance, Instant};

fn opts(d: f64) -> LeaseOptions {
    LeaseOptions::default().with_default_lease_duration(secs(d))
}

/// Inside an `impl LeaseProvider`: the named methods, handed to `self.$inner` as they are.
macro_rules! forward {
    ($inner:tt: $($method:ident),+) => {
        $(forward!(@ $inner $method);)+
    };
    (@ $inner:tt try_acquire) => {
        fn try_acquire<'a>(
            &'a self,
            r: &'a AcquireRequest,
        ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
            self.$inner.try_acquire(r)
        }
    };
    (@ $inner:tt renew) => {
        fn renew<'a>(&'a self, g: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
            self.$inner.renew(g)
        }
    };
    (@ $inner:tt release) => {
        fn release<'a>(&'a self, g: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
            self.$inner.release(g)
        }
    };
    (@ $inner:tt inspect) => {
        fn inspect<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
            self.$inner.inspect(n)
        }
    };
    (@ $inner:tt break_lease) => {
        fn break_lease<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<bool>> {
            self.$inner.break_lease(n)
        }
    };
}

/// Delegates to the in-memory store but has no release notifications and no batch
/// `renew_many` of its own (the trait's default), like a simple polling backend. It can
/// also be told to answer renewals with the wrong number of results, or to panic.
#[derive(Debug)]
struct Plain {
    inner: InMemoryLeaseProvider,
    short_results: AtomicBool,
    panic_on_acquire: AtomicBool,
    panic_on_renew: AtomicBool,
}

impl Plain {
    fn new(inner: InMemoryLeaseProvider) -> Self {
        Self {
            inner,
            short_results: AtomicBool::new(false),
            panic_on_acquire: AtomicBool::new(false),
            panic_on_renew: AtomicBool::new(false),
        }
    }
}

impl LeaseProvider for Plain {
    fn provider_name(&self) -> &'static str {
        "plain"
    }
    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(secs(0.001), secs(3600.0)).with_max_renew_batch(2)
    }
    fn try_acquire<'a>(
        &'a self,
        r: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            assert!(
                !self.panic_on_acquire.load(Ordering::SeqCst),
                "provider bug"
            );
            self.inner.try_acquire(r).await
        })
    }
    fn renew<'a>(&'a self, g: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.inner.renew(g).await })
    }
    fn renew_many<'a>(&'a self, g: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        assert!(
            !self.panic_on_renew.swap(false, Ordering::SeqCst),
            "provider bug in renew_many"
        );
        if self.short_results.load(Ordering::SeqCst) {
            return Box::pin(async move { Vec::new() });
        }
        // The trait's default: one renew per grant, concurrently.
        Box::pin(futures::future::join_all(g.iter().map(|g| self.renew(g))))
    }
    forward!(inner: release, inspect, break_lease);
}

/// Only `renew` is implemented beyond the required methods: exercises the trait's
/// default `renew_many` and `release_notifications`.
#[derive(Debug)]
struct Minimal(InMemoryLeaseProvider);

impl LeaseProvider for Minimal {
    fn provider_name(&self) -> &'static str {
        "minimal"
    }
    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(secs(0.001), secs(3600.0)).with_max_renew_batch(8)
    }
    forward!(0: try_acquire, renew, release, inspect, break_lease);
}

#[tokio::test(start_paused = true)]
async fn providers_without_notifications_are_polled_and_default_renew_many_works() {
    let store = InMemoryLeaseProvider::new();
    let m = LeaseManager::new(
        Arc::new(Minimal(store.clone())),
        opts(30.0).with_acquire_retry_interval(secs(2.0)),
    )
    .unwrap();
    assert!(m.provider().release_notifications("job").is_none());
    let held = m.acquire("job").await.unwrap();
    let other = m.acquire("other").await.unwrap();
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { (m2.acquire("job").await.unwrap(), Instant::now()) });
    advance(secs(0.5)).await;
    settle().await;
    let released = Instant::now();
    held.release().await.unwrap();
    let (lease, at) = waiter.await.unwrap();
    let waited = at - released;
    assert!(
        waited > secs(0.0) && waited <= secs(3.0),
        "found by the next poll (jittered 1–3 s): {waited:?}"
    );
    // Default renew_many renews both leases.
    advance(secs(21.0)).await;
    settle().await;
    assert_eq!(lease.state(), LeaseState::Held);
    assert_eq!(other.state(), LeaseState::Held);
    assert!(lease.remaining_validity().unwrap() > secs(20.0));
}

#[tokio::test(start_paused = true)]
async fn waiters_ignore_other_names_and_retry_after_missed_notifications() {
    let store = InMemoryLeaseProvider::new();
    let m = LeaseManager::new(
        Arc::new(store.clone()),
        opts(30.0)
            .with_acquire_retry_interval(secs(100.0))
            .with_no_acquire_timeout(),
    )
    .unwrap();
    let held = m.acquire("job").await.unwrap();
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire("job").await.unwrap() });
    settle().await;
    // Releases of other names do not wake it into a wasted attempt.
    for i in 0..3 {
        let l = m.acquire(&format!("noise-{i}")).await.unwrap();
        l.release().await.unwrap();
    }
    settle().await;
    assert!(!waiter.is_finished());
    // Overflow the notification channel: the waiter lags, tries again, and waits on.
    let mut noise = Vec::new();
    for i in 0..1100 {
        noise.push(
            store
                .try_acquire(&AcquireRequest::new(
                    format!("n{i}"),
                    secs(30.0),
                    Metadata::new(),
                ))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for g in &noise {
        store.release(g).await.unwrap();
    }
    settle().await;
    assert!(!waiter.is_finished());
    held.release().await.unwrap();
    let lease = waiter.await.unwrap();
    assert_eq!(lease.fencing_token(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_provider_is_an_unexpected_error_not_a_crash() {
    let plain = Arc::new(Plain::new(InMemoryLeaseProvider::new()));
    plain.panic_on_acquire.store(true, Ordering::SeqCst);
    let m = LeaseManager::new(plain.clone(), opts(30.0)).unwrap();
    let e = m.acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unexpected);
    assert_eq!(e.lease_name(), Some("job"));
}

/// A lease `name` (30 s) on a [`Plain`] provider, whose renewals `fault` then breaks: 20 s
/// on, the renewal failed and the lease is at risk. The provider, the manager, the lease
/// and the error its first event (a failed renewal) carried.
async fn renewal_failing(
    name: &str,
    fault: impl FnOnce(&Plain),
) -> (Arc<Plain>, LeaseManager, Lease, LeaseError) {
    let plain = Arc::new(Plain::new(InMemoryLeaseProvider::new()));
    let m = LeaseManager::new(plain.clone(), opts(30.0)).expect("manager");
    let lease = m.acquire(name).await.expect("acquire");
    let mut ev = lease.events();
    fault(&plain);
    advance(secs(20.0)).await;
    settle().await;
    assert_eq!(lease.state(), LeaseState::AtRisk);
    match ev.recv().await.expect("an event") {
        LeaseEvent::RenewalFailed { error, .. } => (plain, m, lease, error),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_provider_answering_too_few_renewals_puts_leases_at_risk() {
    let (plain, _m, a, error) =
        renewal_failing("a", |p| p.short_results.store(true, Ordering::SeqCst)).await;
    assert_eq!(error.kind(), ErrorKind::Unexpected);
    assert!(error.to_string().contains("0 results for 1"), "{error}");
    plain.short_results.store(false, Ordering::SeqCst);
    advance(secs(1.0)).await;
    settle().await;
    assert_eq!(a.state(), LeaseState::Held);
}

#[tokio::test(start_paused = true)]
async fn releasing_during_an_inflight_renewal_ignores_its_result() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let mut ev = lease.events();
    rig.faults
        .script(Operation::Renew, [Fault::Delay(secs(2.0))]);
    advance(secs(20.5)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Renew), 1, "renewal in flight");
    lease.release().await.unwrap();
    advance(secs(3.0)).await;
    settle().await;
    assert!(matches!(ev.recv().await.unwrap(), LeaseEvent::Released));
    assert!(ev.try_recv().is_err(), "no Renewed after Released");
}

#[tokio::test(start_paused = true)]
async fn failed_background_release_is_logged_and_the_backend_expires_the_lease() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.faults.script(Operation::Release, [Fault::Unavailable]);
    drop(lease);
    settle().await;
    assert!(
        rig.store.inspect("job").await.unwrap().is_some(),
        "release failed"
    );
    advance(secs(31.0)).await;
    assert!(rig.store.inspect("job").await.unwrap().is_none(), "expired");
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_stops_when_the_manager_and_its_leases_are_gone() {
    let store = InMemoryLeaseProvider::new();
    let counting = Arc::new(Counting::new(Arc::new(store.clone())));
    let weak = Arc::downgrade(&counting);
    let m = LeaseManager::new(counting, opts(30.0)).unwrap();
    let lease = m.acquire("job").await.unwrap();
    lease.release().await.unwrap();
    drop(m);
    settle().await;
    assert!(
        weak.upgrade().is_none(),
        "the scheduler task ended and dropped the provider"
    );
}

#[tokio::test(start_paused = true)]
async fn manager_operator_calls_and_debug() {
    let rig = rig(opts(30.0));
    let lease = rig
        .manager
        .try_acquire_with("job", AcquireOptions::new().timeout(Some(secs(1.0))))
        .await
        .unwrap()
        .unwrap();
    assert!(rig.manager.break_lease("job").await.unwrap());
    assert!(!rig.manager.break_lease("job").await.unwrap());
    let reason = lease.lost().await;
    assert!(reason.to_string().contains("revoked"), "{reason}");
    let b = LeaseManager::builder(Arc::new(InMemoryLeaseProvider::new()));
    assert!(format!("{b:?}").contains("LeaseManagerBuilder"));
    for r in [
        LostReason::SafetyDeadline,
        LostReason::RetriesExhausted(LeaseError::unavailable("x")),
    ] {
        assert!(!r.to_string().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn retrying_leases_do_not_share_a_batch_with_healthy_ones() {
    let rig = rig(opts(30.0).with_auto_renew_retry_interval(secs(0.5)));
    let sick = rig.manager.acquire("sick").await.unwrap();
    // healthy is due at 21.1 s and may go up to 1 s early, from 20.1 s: after sick's
    // first renewal (20 s), before sick's retry (20.25–20.5 s).
    advance(secs(1.1)).await;
    let healthy = rig.manager.acquire("healthy").await.unwrap();
    // The first round renews "sick" alone (healthy is not yet eligible) and fails.
    rig.faults.script(Operation::Renew, [Fault::Unavailable]);
    advance(secs(18.8)).await;
    settle().await;
    advance(secs(0.1)).await;
    settle().await;
    assert_eq!(sick.state(), LeaseState::AtRisk);
    assert!(
        rig.counting.sizes.lock().unwrap().is_empty(),
        "healthy was not eligible yet"
    );
    // Its retry (0.25–0.5 s later) and healthy's renewal fall in one wake-up window but
    // go out as two calls.
    for _ in 0..10 {
        advance(secs(0.1)).await;
        settle().await;
    }
    assert_eq!(sick.state(), LeaseState::Held);
    assert_eq!(healthy.state(), LeaseState::Held);
    let sizes = rig.counting.sizes.lock().unwrap().clone();
    assert!(sizes.iter().all(|&n| n == 1), "{sizes:?}");
    assert_eq!(
        sizes.len(),
        2,
        "sick's retry and healthy's renewal: {sizes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn only_waiters_subscribe_to_release_notifications() {
    let rig = rig(opts(30.0));
    let held = rig.manager.acquire("job").await.unwrap();
    assert_eq!(
        rig.counting.subscriptions.load(Ordering::SeqCst),
        0,
        "an uncontended acquire does not subscribe"
    );
    let m = rig.manager.clone();
    let waiter = tokio::spawn(async move { m.acquire("job").await.unwrap() });
    settle().await;
    assert_eq!(rig.counting.subscriptions.load(Ordering::SeqCst), 1);
    assert_eq!(
        rig.faults.calls(Operation::Acquire),
        3,
        "held, then once more right after subscribing"
    );
    held.release().await.unwrap();
    assert_eq!(waiter.await.unwrap().fencing_token(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_renewal_is_a_failed_renewal_not_an_unwatched_lease() {
    let (_plain, _m, lease, error) =
        renewal_failing("job", |p| p.panic_on_renew.store(true, Ordering::SeqCst)).await;
    assert!(error.to_string().contains("panicked"), "{error}");
    advance(secs(1.0)).await;
    settle().await;
    assert_eq!(lease.state(), LeaseState::Held, "the retry renewed it");
}

/// The next answer to an acquisition takes 28 s: past 30 s × 0.9.
fn answer_next_acquire_in_28s(rig: &Rig) {
    rig.faults
        .script(Operation::Acquire, [Fault::Delay(secs(28.0))]);
}

/// Once spawned tasks ran, "job" is free in the store: the late grant was released.
async fn assert_late_grant_released(rig: &Rig) {
    settle().await;
    assert!(
        rig.store.inspect("job").await.expect("inspect").is_none(),
        "the late grant was released"
    );
}

#[tokio::test(start_paused = true)]
async fn a_grant_that_arrives_after_its_safety_deadline_is_released_not_handed_out() {
    let rig = rig(opts(30.0).with_acquire_timeout(secs(120.0)));
    // The answer takes 28 s: past 30 s × 0.9, the lease may have expired meanwhile.
    // With a caller's timeout past the window, the late answer arrives and is refused.
    answer_next_acquire_in_28s(&rig);
    let e = rig
        .manager
        .try_acquire_with("job", AcquireOptions::new().timeout(Some(secs(60.0))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
    assert!(e.to_string().contains("safety deadline"), "{e}");
    assert_late_grant_released(&rig).await;
    // Without one, the core stops waiting at the safety window (27 s) and releases the
    // grant when it comes.
    answer_next_acquire_in_28s(&rig);
    let asked = Instant::now();
    let e = rig.manager.try_acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(Instant::now() - asked, secs(27.0), "bounded by the window");
    tokio::time::sleep(secs(2.0)).await;
    assert_late_grant_released(&rig).await;
    // acquire() treats it as a transient failure and tries again.
    answer_next_acquire_in_28s(&rig);
    let lease = rig.manager.acquire("job").await.unwrap();
    assert_eq!(lease.fencing_token(), 4);
    assert_eq!(rig.faults.calls(Operation::Acquire), 4);
}

#[tokio::test(start_paused = true)]
async fn dropping_acquire_right_after_the_grant_arrived_releases_it() {
    let rig = rig(opts(30.0));
    let mut fut = Box::pin(rig.manager.acquire("job"));
    // First poll: the attempt is spawned and the future waits for its answer.
    assert!(futures::poll!(&mut fut).is_pending());
    // The attempt runs and puts the grant in the channel; the future is never polled again.
    settle().await;
    assert!(
        rig.store.inspect("job").await.unwrap().is_some(),
        "granted, not yet taken"
    );
    drop(fut);
    settle().await;
    assert!(
        rig.store.inspect("job").await.unwrap().is_none(),
        "a grant nobody took is released"
    );
}

#[tokio::test(start_paused = true)]
async fn a_manual_renewal_that_succeeds_after_the_lease_was_lost_reports_lost() {
    let rig = rig(opts(30.0).with_auto_renew_max_retries(0u32));
    let lease = rig.manager.acquire("job").await.unwrap();
    // Manual renewal at 19.8 s, delayed to reach the backend at 20.5 s; the scheduled renewal
    // at 20 s fails, and with no retries the lease is lost at once. Its background release
    // fails, so the backend still holds it when the manual renewal arrives and succeeds.
    rig.faults.script(
        Operation::Renew,
        [Fault::Delay(secs(0.7)), Fault::Unavailable],
    );
    rig.faults.script(Operation::Release, [Fault::Unavailable]);
    advance(secs(19.8)).await;
    let manual = lease.renew();
    let (r, ()) = tokio::join!(manual, async {
        advance(secs(0.3)).await;
        settle().await;
        assert_eq!(lease.state(), LeaseState::Lost);
        advance(secs(0.5)).await;
    });
    assert_eq!(
        r.unwrap_err().kind(),
        ErrorKind::Lost,
        "a renewal after the loss must not report success"
    );
    assert_eq!(lease.state(), LeaseState::Lost);
    assert!(matches!(
        lease.lost_reason(),
        Some(LostReason::RetriesExhausted(_))
    ));
}

#[test]
fn the_scheduler_restarts_when_its_runtime_is_gone() {
    let store = InMemoryLeaseProvider::new();
    let m = LeaseManager::new(Arc::new(store.clone()), opts(30.0)).unwrap();
    // The first lease starts the scheduler on a runtime that then shuts down.
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = first.block_on(m.acquire("a")).unwrap();
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    second.block_on(async {
        let b = m.acquire("b").await.unwrap();
        for _ in 0..10 {
            advance(secs(20.0)).await;
            settle().await;
        }
        assert_eq!(
            a.state(),
            LeaseState::Held,
            "the lease from the dead runtime is renewed again"
        );
        assert_eq!(b.state(), LeaseState::Held);
        assert_eq!(
            store.inspect("a").await.unwrap().unwrap().fencing_token,
            a.fencing_token()
        );
    });
}

/// An infinite lease whose grant arrives after the caller stopped waiting is released too
/// (it would otherwise hold the name for ever), within the 30 s bound of a late release.
#[tokio::test(start_paused = true)]
async fn a_late_grant_of_an_infinite_lease_is_released() {
    let rig = rig(opts(30.0));
    rig.faults
        .script(Operation::Acquire, [Fault::Delay(secs(5.0))]);
    let e = rig
        .manager
        .try_acquire_with(
            "forever",
            AcquireOptions::new()
                .duration(LeaseDuration::Infinite)
                .timeout(Some(secs(1.0))),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // The grant lands at 5 s and is released in the background.
    tokio::time::sleep(secs(6.0)).await;
    settle().await;
    assert!(
        rig.store
            .inspect("forever")
            .await
            .expect("inspect")
            .is_none(),
        "the late infinite grant was released"
    );
}

#[test]
fn the_backoff_doubles_caps_and_never_drops_below_its_first_pause() {
    let b = Backoff::new(secs(0.1), secs(0.35));
    assert_eq!(
        (1..=4).map(|k| b.pause(k)).collect::<Vec<_>>(),
        [0.1, 0.2, 0.35, 0.35].map(secs)
    );
    for k in 1..10 {
        let j = b.random(k);
        assert!(j >= b.pause(k) / 2 && j <= b.pause(k), "{k}: {j:?}");
    }
    let flat = Backoff::new(secs(1.0), secs(0.5));
    assert_eq!((flat.first(), flat.max()), (secs(1.0), secs(1.0)));
    assert_eq!(flat.jittered(3, 1.0), secs(1.0));
}

#[tokio::test(start_paused = true)]
async fn a_zero_retry_interval_override_is_refused_before_any_call() {
    let rig = rig(opts(30.0));
    let e = rig
        .manager
        .acquire_with("job", AcquireOptions::new().retry_interval(secs(0.0)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(e.field(), Some("retry_interval"));
    assert_eq!(e.operation(), Some(Operation::Acquire));
    assert_eq!(e.lease_name(), Some("job"));
    assert_eq!(rig.faults.calls(Operation::Acquire), 0, "no call was made");
}
