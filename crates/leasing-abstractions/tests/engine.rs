//! The renewal engine and the manager under `tokio::time::pause()`: deterministic,
//! no wall-clock sleeps.

mod common;

use common::*;
use leasing_abstractions::fault::Fault;
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::time::Duration;
use tokio::time::{advance, Instant};

fn opts(duration: f64) -> LeaseOptions {
    LeaseOptions::default().with_default_lease_duration(secs(duration))
}

#[tokio::test(start_paused = true)]
async fn renews_at_two_thirds_of_the_duration_and_keeps_the_lease() {
    let rig = rig(opts(30.0));
    let start = Instant::now();
    let lease = rig.manager.acquire("job").await.unwrap();
    let log = record(&lease);
    advance(secs(19.9)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Renew), 0, "renewed before 2/3");
    advance(secs(0.1)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Renew), 1, "not renewed at 2/3");
    let (at, ev) = log.lock().unwrap()[0].clone();
    assert!(matches!(ev, LeaseEvent::Renewed { .. }));
    assert_eq!(
        at - start,
        secs(20.0),
        "the renewal went out at 2/3 of 30 s"
    );
    // Ten durations later the lease is still held and was renewed every 20 s.
    for _ in 0..15 {
        advance(secs(20.0)).await;
        settle().await;
    }
    assert_eq!(rig.faults.calls(Operation::Renew), 16);
    assert_eq!(lease.state(), LeaseState::Held);
    assert!(lease.remaining_validity().unwrap() > secs(9.0));
    let info = rig
        .store
        .inspect("job")
        .await
        .unwrap()
        .expect("still held on the backend");
    assert_eq!(info.fencing_token, lease.fencing_token());
    lease.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_back_off_exponentially_then_recover() {
    let o = opts(60.0)
        .with_auto_renew_retry_interval(secs(1.0))
        .with_auto_renew_max_retries(3u32);
    let rig = rig(o);
    let lease = rig.manager.acquire("job").await.unwrap();
    let log = record(&lease);
    rig.faults.script(
        Operation::Renew,
        [Fault::Unavailable, Fault::Unavailable, Fault::Unavailable],
    );
    for _ in 0..600 {
        advance(secs(0.1)).await;
        settle().await;
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(
        kinds(&log),
        ["failed", "at_risk", "failed", "failed", "renewed"],
        "{log:?}"
    );
    // Attempts at 40 s, then after [0.5, 1] s, [1, 2] s, [2, 4] s (equal jitter of 1, 2, 4 s).
    let t: Vec<Instant> = log
        .iter()
        .filter(|(_, e)| !matches!(e, LeaseEvent::AtRisk { .. }))
        .map(|(t, _)| *t)
        .collect();
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, full) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        // 0.1 s of slack for the test's own 0.1 s steps.
        assert!(
            *gap >= secs(full / 2.0) && *gap <= secs(full + 0.1),
            "gap {gap:?} outside [{}, {full}]",
            full / 2.0
        );
    }
    match &log[2].1 {
        LeaseEvent::RenewalFailed {
            attempt,
            error,
            remaining,
        } => {
            assert_eq!(*attempt, 2);
            assert_eq!(error.kind(), ErrorKind::ProviderUnavailable);
            assert_eq!(error.lease_name(), Some("job"));
            assert!(*remaining < secs(20.0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lease.state(), LeaseState::Held, "recovered");
}

#[tokio::test(start_paused = true)]
async fn at_risk_then_back_to_held_on_success() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let mut states = lease.state_changes();
    rig.faults.script(Operation::Renew, [Fault::Unavailable]);
    advance(secs(20.0)).await;
    settle().await;
    assert_eq!(lease.state(), LeaseState::AtRisk);
    assert!(lease.is_held());
    assert!(states.has_changed().unwrap());
    assert_eq!(*states.borrow_and_update(), LeaseState::AtRisk);
    advance(secs(1.0)).await;
    settle().await;
    assert_eq!(lease.state(), LeaseState::Held);
    assert!(!lease.cancellation_token().is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn hung_renewals_declare_the_lease_lost_at_the_safety_deadline_before_backend_expiry() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let sent = lease.grant().sent_at;
    let log = record(&lease);
    rig.faults
        .script(Operation::Renew, std::iter::repeat_n(Fault::Hang, 100));
    rig.faults.script(Operation::Release, [Fault::Hang]);
    let token = lease.cancellation_token();
    let lost_at = tokio::select! {
        reason = lease.lost() => { assert!(matches!(reason, LostReason::SafetyDeadline), "{reason:?}"); Instant::now() }
        () = tokio::time::sleep(secs(60.0)) => panic!("never declared lost"),
    };
    assert_eq!(lost_at - sent, secs(27.0), "lost exactly at duration × 0.9");
    // The backend would only have expired it at 30 s: it still shows us as the holder.
    let info = rig
        .store
        .inspect("job")
        .await
        .unwrap()
        .expect("backend still holds it");
    assert_eq!(info.fencing_token, lease.fencing_token());
    assert!(token.is_cancelled());
    assert_eq!(lease.state(), LeaseState::Lost);
    assert_eq!(lease.remaining_validity(), Some(Duration::ZERO));
    assert!(matches!(
        lease.lost_reason(),
        Some(LostReason::SafetyDeadline)
    ));
    settle().await;
    // Each hung call is cut off while there is time to retry (3/4 of the time left, then
    // half), so the holder hears of the trouble early and retries, then loses the lease
    // at the deadline.
    let k = kinds(&log.lock().unwrap());
    assert_eq!(k[..3], ["failed", "at_risk", "failed"], "{k:?}");
    assert_eq!(k.last(), Some(&"lost"));
    assert!(k.iter().filter(|e| **e == "failed").count() >= 4, "{k:?}");
    // Releasing a lost lease is not an error.
    lease.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn definitive_loss_is_reported_at_once_without_retries() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let start = Instant::now();
    // An operator breaks it and someone else takes it.
    assert!(rig.store.break_lease("job").await.unwrap());
    let other = LeaseManager::new(std::sync::Arc::new(rig.store.clone()), opts(30.0)).unwrap();
    let thief = other.acquire("job").await.unwrap();
    let reason = lease.lost().await;
    assert_eq!(
        Instant::now() - start,
        secs(20.0),
        "lost at the first renewal"
    );
    match reason {
        LostReason::Revoked(e) => assert_eq!(e.kind(), ErrorKind::Lost),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rig.faults.calls(Operation::Renew),
        1,
        "no retry after a definitive loss"
    );
    settle().await;
    assert_eq!(
        rig.faults.calls(Operation::Release),
        1,
        "the lost grant is released, harmlessly"
    );
    assert_eq!(
        thief.state(),
        LeaseState::Held,
        "the loser's cleanup must not disturb the thief"
    );
    assert_eq!(
        rig.store
            .inspect("job")
            .await
            .unwrap()
            .unwrap()
            .fencing_token,
        thief.fencing_token()
    );
    assert!(thief.fencing_token() > lease.fencing_token());
    let e = lease.renew().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Lost);
}

#[tokio::test(start_paused = true)]
async fn injected_lost_fault_and_exhausted_retries_both_end_the_lease() {
    let rig = rig(opts(30.0));
    let a = rig.manager.acquire("a").await.unwrap();
    rig.faults.script(Operation::Renew, [Fault::Lost]);
    assert!(matches!(a.lost().await, LostReason::Revoked(_)));

    let o = opts(60.0)
        .with_auto_renew_retry_interval(secs(1.0))
        .with_auto_renew_max_retries(2u32);
    let rig = rig_with(o);
    let b = rig.manager.acquire("b").await.unwrap();
    rig.faults.script(
        Operation::Renew,
        [Fault::Unavailable, Fault::Unavailable, Fault::Unavailable],
    );
    let started = Instant::now();
    match b.lost().await {
        LostReason::RetriesExhausted(e) => assert_eq!(e.kind(), ErrorKind::ProviderUnavailable),
        other => panic!("{other:?}"),
    }
    assert!(
        Instant::now() - started < secs(54.0),
        "gave up before the safety deadline"
    );
    settle().await;
    assert!(
        rig.store.inspect("b").await.unwrap().is_none(),
        "a lease given up on is released for the next holder"
    );
}

fn rig_with(o: LeaseOptions) -> Rig {
    rig(o)
}

#[tokio::test(start_paused = true)]
async fn release_stops_renewal_and_frees_the_name() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let token = lease.cancellation_token();
    let log = record(&lease);
    lease.release().await.unwrap();
    assert!(token.is_cancelled());
    assert!(rig.store.inspect("job").await.unwrap().is_none());
    advance(secs(300.0)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Renew), 0);
    assert_eq!(kinds(&log.lock().unwrap()), ["released"]);
    assert!(rig.manager.held_leases().is_empty());
}

#[tokio::test(start_paused = true)]
async fn release_errors_are_returned_and_the_lease_still_ends() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.faults.script(Operation::Release, [Fault::Unavailable]);
    let e = lease.release().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
    assert_eq!(e.lease_name(), Some("job"));
    advance(secs(40.0)).await;
    assert!(
        rig.store.inspect("job").await.unwrap().is_none(),
        "the backend expires it"
    );
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.faults.script(Operation::Release, [Fault::Hang]);
    let e = lease.release().await.unwrap_err();
    // The core's one error for a call that outlived its deadline.
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
    assert!(
        e.to_string().contains("release call within its deadline"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_lease_releases_it_in_the_background() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    let token = lease.cancellation_token();
    assert_eq!(
        rig.manager.held_leases(),
        vec![("job".to_owned(), LeaseState::Held)]
    );
    drop(lease);
    assert!(token.is_cancelled());
    settle().await;
    assert!(rig.store.inspect("job").await.unwrap().is_none());
    assert!(rig.manager.held_leases().is_empty());
    advance(secs(60.0)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Renew), 0);
    assert_eq!(rig.faults.calls(Operation::Release), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_an_unfinished_release_finishes_it_in_the_background() {
    let rig = rig(opts(30.0));
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.faults
        .script(Operation::Release, [Fault::Delay(secs(5.0))]);
    let r = tokio::time::timeout(secs(1.0), lease.release()).await;
    assert!(r.is_err(), "the release was cut short");
    settle().await;
    advance(secs(6.0)).await;
    settle().await;
    assert!(rig.store.inspect("job").await.unwrap().is_none());
}

#[test]
fn drop_outside_a_runtime_and_after_shutdown_never_panics() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = InMemoryLeaseProvider::new();
    let manager = LeaseManager::new(std::sync::Arc::new(store.clone()), opts(30.0)).unwrap();
    let (a, b) = rt.block_on(async {
        (
            manager.acquire("a").await.unwrap(),
            manager.acquire("b").await.unwrap(),
        )
    });
    // Dropped on a thread with no runtime: queued for the scheduler, which releases it.
    std::thread::spawn(move || drop(a)).join().unwrap();
    rt.block_on(async {
        settle().await;
        assert!(store.inspect("a").await.unwrap().is_none());
    });
    // Dropped after the runtime is gone: nothing to release with; the backend expires it.
    drop(rt);
    drop(b);
    drop(manager);
}

#[tokio::test(start_paused = true)]
async fn acquire_times_out_while_held_and_succeeds_after_release() {
    let rig = rig(opts(30.0).with_acquire_timeout(secs(5.0)));
    let held = rig.manager.acquire("job").await.unwrap();
    let start = Instant::now();
    let e = rig.manager.acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.lease_name(), Some("job"));
    assert_eq!(Instant::now() - start, secs(5.0));
    assert!(rig.manager.try_acquire("job").await.unwrap().is_none());
    held.release().await.unwrap();
    let again = rig
        .manager
        .try_acquire("job")
        .await
        .unwrap()
        .expect("free after release");
    assert!(again.fencing_token() > 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_woken_by_the_release_not_by_polling() {
    let rig = rig(opts(30.0)
        .with_acquire_retry_interval(secs(10.0))
        .with_acquire_timeout(secs(60.0)));
    let held = rig.manager.acquire("job").await.unwrap();
    let m = rig.manager.clone();
    let waiter = tokio::spawn(async move {
        let lease = m.acquire("job").await.unwrap();
        (Instant::now(), lease)
    });
    advance(secs(3.0)).await;
    settle().await;
    let released_at = Instant::now();
    held.release().await.unwrap();
    let (got_at, lease) = waiter.await.unwrap();
    assert_eq!(
        got_at, released_at,
        "woken at the release instant, not at the next poll (≥ 5 s later)"
    );
    assert_eq!(lease.fencing_token(), 2);
}

#[tokio::test(start_paused = true)]
async fn transient_acquire_failures_are_retried_and_fatal_ones_are_not() {
    let rig = rig(opts(30.0));
    rig.faults
        .script(Operation::Acquire, [Fault::Unavailable, Fault::Unavailable]);
    let lease = rig.manager.acquire("job").await.unwrap();
    assert_eq!(rig.faults.calls(Operation::Acquire), 3);
    drop(lease);
    rig.faults.set_partitioned(true);
    let e = rig
        .manager
        .acquire_with("job", AcquireOptions::new().timeout(Some(secs(2.0))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let e = rig.manager.try_acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
    rig.faults.clear();
    let unauthorized = LeaseManager::new(std::sync::Arc::new(Refusing), opts(30.0)).unwrap();
    let e = unauthorized.acquire("job").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert_eq!(e.lease_name(), Some("job"));
}

#[derive(Debug)]
struct Refusing;
impl LeaseProvider for Refusing {
    fn provider_name(&self) -> &'static str {
        "refusing"
    }
    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(secs(0.001), secs(3600.0))
    }
    fn try_acquire<'a>(
        &'a self,
        _: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move { Err(LeaseError::new(ErrorKind::Unauthorized, "bad credentials")) })
    }
    fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(LeaseError::new(ErrorKind::Unauthorized, "bad credentials")) })
    }
    fn release<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Ok(()) })
    }
    fn inspect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move { Err(LeaseError::new(ErrorKind::Unexpected, "weird")) })
    }
    fn break_lease<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(false) })
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_an_acquire_in_flight_leaves_nothing_held() {
    let rig = rig(opts(30.0));
    rig.faults
        .script(Operation::Acquire, [Fault::Delay(secs(5.0))]);
    let cut = tokio::time::timeout(secs(1.0), rig.manager.acquire("job")).await;
    assert!(cut.is_err(), "the acquire was cut short");
    advance(secs(5.0)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Acquire), 1);
    assert!(
        rig.store.inspect("job").await.unwrap().is_none(),
        "the late grant was released"
    );
    // The same through the acquire timeout.
    rig.faults
        .script(Operation::Acquire, [Fault::Delay(secs(5.0))]);
    let e = rig
        .manager
        .acquire_with("job", AcquireOptions::new().timeout(Some(secs(1.0))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    advance(secs(5.0)).await;
    settle().await;
    assert!(rig.store.inspect("job").await.unwrap().is_none());
    assert_eq!(
        rig.store
            .try_acquire(&AcquireRequest::new("job", secs(1.0), Metadata::new()))
            .await
            .unwrap()
            .unwrap()
            .fencing_token,
        3
    );
}

#[tokio::test(start_paused = true)]
async fn an_infinite_timeout_waits_without_limit() {
    let rig = rig(opts(30.0)
        .with_no_acquire_timeout()
        .with_acquire_retry_interval(secs(0.001)));
    let _held = rig
        .store
        .try_acquire(&AcquireRequest::new(
            "job",
            LeaseDuration::Infinite,
            Metadata::new(),
        ))
        .await
        .unwrap()
        .unwrap();
    let manager = rig.manager.clone();
    let waiter = tokio::spawn(async move { manager.acquire("job").await });
    // Far more attempts than any cap would allow (about 20 000 in 20 s of 1 ms ± 50 %).
    tokio::time::sleep(secs(20.0)).await;
    assert!(!waiter.is_finished(), "an infinite timeout gave up");
    assert!(rig.faults.calls(Operation::Acquire) > 10_000);
    rig.store.break_lease("job").await.unwrap();
    let lease = waiter.await.unwrap().unwrap();
    assert_eq!(lease.name(), "job");
}

fn rig_with_retry_interval() -> Rig {
    rig(opts(30.0).with_auto_renew_retry_interval(secs(0.5)))
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_rejected_before_any_call() {
    let rig = rig(opts(30.0));
    for (name, field) in [("", "name"), ("bad name", "name")] {
        let e = rig.manager.acquire(name).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.field()),
            (ErrorKind::InvalidArgument, Some(field))
        );
        let e = rig.manager.try_acquire(name).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            rig.manager.inspect(name).await.unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            rig.manager.break_lease(name).await.unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    // A retry interval the user set is checked against each duration (a derived one
    // always fits).
    let fixed = rig_with_retry_interval();
    let e = fixed
        .manager
        .acquire_with("job", AcquireOptions::new().duration(secs(1.0)))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("auto_renew_retry_interval"), "{e}");
    assert_eq!(
        e.operation(),
        Some(leasing_abstractions::Operation::Acquire)
    );
    let mut md = Metadata::new();
    md.insert("1x".into(), "v".into());
    let e = rig
        .manager
        .acquire_with("job", AcquireOptions::new().metadata(md))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("metadata"));
    assert_eq!(
        rig.faults.calls(Operation::Acquire),
        0,
        "nothing reached the provider"
    );
    let short = rig
        .manager
        .acquire_with("short", AcquireOptions::new().duration(secs(1.0)))
        .await
        .expect("defaults fit a 1 s lease");
    short.release().await.unwrap();
    // Options are validated against the provider at build time too.
    let blob_like = LeaseManager::new(
        std::sync::Arc::new(Refusing),
        opts(30.0).with_default_lease_duration(LeaseDuration::Infinite),
    );
    assert_eq!(blob_like.unwrap_err().field(), Some("lease_duration"));
    assert_eq!(
        LeaseManager::new(std::sync::Arc::new(Refusing), opts(0.0))
            .unwrap_err()
            .field(),
        Some("lease_duration")
    );
}

#[tokio::test(start_paused = true)]
async fn per_call_overrides_apply() {
    let rig = rig(opts(30.0));
    let mut md = Metadata::new();
    md.insert("pod".into(), "p-1".into());
    let lease = rig
        .manager
        .acquire_with(
            "job",
            AcquireOptions::new()
                .duration(secs(60.0))
                .metadata(md.clone()),
        )
        .await
        .unwrap();
    assert_eq!(lease.duration(), LeaseDuration::Finite(secs(60.0)));
    assert_eq!(lease.metadata(), &md);
    assert_eq!(
        rig.manager.inspect("job").await.unwrap().unwrap().metadata,
        md
    );
    advance(secs(39.0)).await;
    settle().await;
    assert_eq!(
        rig.faults.calls(Operation::Renew),
        0,
        "renews at 2/3 of the per-call duration"
    );
    advance(secs(1.5)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Renew), 1);
    let t = rig
        .manager
        .try_acquire_with("other", AcquireOptions::new().duration(secs(15.0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.duration(), LeaseDuration::Finite(secs(15.0)));
    assert!(format!("{t:?}").contains("other"));
}

#[tokio::test(start_paused = true)]
async fn leases_due_together_are_renewed_in_one_batch() {
    let rig = rig(opts(30.0));
    let mut leases = Vec::new();
    for i in 0..1500 {
        leases.push(rig.manager.acquire(&format!("job-{i}")).await.unwrap());
        if i % 100 == 0 {
            advance(secs(0.01)).await; // spread over 150 ms, well inside the 1 s early window
        }
    }
    advance(secs(21.0)).await;
    settle().await;
    let sizes = rig.counting.sizes.lock().unwrap().clone();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        1500,
        "every lease renewed once: {sizes:?}"
    );
    assert_eq!(
        sizes,
        [1024, 476],
        "one round, split only at the provider's batch limit"
    );
    assert!(leases.iter().all(Lease::is_held));
}

#[tokio::test(start_paused = true)]
async fn manual_leases_are_not_renewed_but_lost_at_their_safety_deadline() {
    let rig = rig(opts(30.0).with_auto_renew(false));
    let lease = rig.manager.acquire("job").await.unwrap();
    advance(secs(20.0)).await;
    lease.renew().await.unwrap();
    advance(secs(26.9)).await;
    settle().await;
    assert_eq!(
        lease.state(),
        LeaseState::Held,
        "the manual renewal moved the deadline"
    );
    assert_eq!(rig.faults.calls(Operation::Renew), 1);
    rig.faults.script(Operation::Renew, [Fault::Unavailable]);
    assert_eq!(
        lease.renew().await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable
    );
    assert_eq!(lease.state(), LeaseState::AtRisk);
    advance(secs(0.2)).await;
    settle().await;
    assert_eq!(lease.state(), LeaseState::Lost);
    assert_eq!(lease.renew().await.unwrap_err().kind(), ErrorKind::Lost);
}

#[tokio::test(start_paused = true)]
async fn manual_renew_reports_loss() {
    let rig = rig(opts(30.0).with_auto_renew(false));
    let lease = rig.manager.acquire("job").await.unwrap();
    rig.store.break_lease("job").await.unwrap();
    assert_eq!(lease.renew().await.unwrap_err().kind(), ErrorKind::Lost);
    assert_eq!(lease.state(), LeaseState::Lost);
    rig.faults.script(Operation::Renew, [Fault::Hang]);
    let lease = rig.manager.acquire("job2").await.unwrap();
    let e = lease.renew().await.unwrap_err();
    assert!(e.to_string().contains("safety deadline"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn infinite_leases_are_never_renewed() {
    let rig = rig(opts(30.0).with_default_lease_duration(LeaseDuration::Infinite));
    let lease = rig.manager.acquire("forever").await.unwrap();
    assert_eq!(lease.remaining_validity(), None);
    assert_eq!(lease.expires_at(), None);
    advance(secs(3600.0 * 24.0)).await;
    settle().await;
    assert_eq!(rig.faults.calls(Operation::Renew), 0);
    assert_eq!(lease.state(), LeaseState::Held);
    assert_eq!(
        rig.store
            .inspect("forever")
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        leasing_abstractions::LeaseExpiry::Never
    );
    lease.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn accessors_describe_the_lease() {
    let rig = rig(opts(30.0));
    let before = std::time::SystemTime::now();
    let lease = rig.manager.acquire("job").await.unwrap();
    assert_eq!(lease.name(), "job");
    assert_eq!(lease.fencing_token(), 1);
    assert!(!lease.lease_id().is_empty());
    assert!(lease.acquired_at() >= before);
    // Time to act: until the safety deadline, 30 s × 0.9 (inside 30 s − drift).
    let expected = secs(27.0);
    assert!(expected < secs(30.0) - clock_drift(secs(30.0)));
    assert_eq!(lease.remaining_validity(), Some(expected));
    advance(secs(5.0)).await;
    assert_eq!(lease.remaining_validity(), Some(expected - secs(5.0)));
    assert!(lease.expires_at().unwrap() > std::time::SystemTime::now());
    assert!(lease.lost_reason().is_none());
    assert!(format!("{lease:?}").contains("fencing_token: 1"));
    assert!(format!("{:?}", rig.manager).contains("LeaseManager"));
    assert!(rig.manager.options().auto_renew);
    assert_eq!(rig.manager.provider().provider_name(), "in-memory");
}

/// The manager hands back the options it was built with.
#[tokio::test(start_paused = true)]
async fn the_manager_reports_its_options() {
    let o = opts(12.0).with_acquire_retry_interval(secs(0.25));
    let rig = rig(o.clone());
    assert_eq!(rig.manager.options(), &o);
    assert_ne!(rig.manager.options(), &LeaseOptions::default());
}
