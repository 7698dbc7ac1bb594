#![allow(clippy::unwrap_used)]
//! The timing arithmetic of the renewal engine and the manager, pinned to exact virtual
//! instants under `tokio::time::pause()`: when an attempt is cut off, which leases go in a
//! batch, how long a manual renewal of an infinite lease may take, how often a waiter
//! polls, and what a timed-out acquisition says.

mod common;

use common::*;
use leasing_abstractions::fault::Fault;
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::time::Duration;
use tokio::time::Instant;

/// The instants (since `start`) of the events of one kind in a [`record`] log.
fn at_of(
    log: &std::sync::Mutex<Vec<(Instant, LeaseEvent)>>,
    start: Instant,
    kind: &str,
) -> Vec<Duration> {
    let log = log.lock().unwrap();
    let kinds = kinds(&log);
    log.iter()
        .zip(kinds)
        .filter(|(_, k)| *k == kind)
        .map(|((at, _), _)| *at - start)
        .collect()
}

/// A renewal call that hangs is cut off at 3/4 of the time left before the safety
/// deadline on the first attempt of an episode, at 1/2 on each retry, and the lease is
/// lost at the deadline itself.
#[tokio::test(start_paused = true)]
async fn a_hung_attempt_is_cut_off_at_three_quarters_then_half_of_the_time_left() {
    // 10 s lease: safety window 9 s; renewal at 6 s leaves 3 s.
    let rig = rig(LeaseOptions::default()
        .with_default_lease_duration(secs(10.0))
        .with_auto_renew_interval(secs(6.0))
        .with_auto_renew_retry_interval(secs(1.0)));
    let start = Instant::now();
    let lease = rig.manager.acquire("job").await.unwrap();
    let log = record(&lease);
    rig.faults.script(Operation::Renew, vec![Fault::Hang; 64]);
    let reason = lease.lost().await;
    assert!(matches!(reason, LostReason::SafetyDeadline), "{reason}");
    assert_eq!(
        Instant::now() - start,
        secs(9.0),
        "lost at the safety deadline"
    );
    let failed = at_of(&log, start, "failed");
    // 6 + 3 × 3/4 = 8.25. Then the pause is half of the 0.75 s left (the backoff, at
    // least 0.5 s, is longer): retry at 8.625, cut off after half of the 0.375 s left.
    assert_eq!(failed[0], secs(8.25), "{failed:?}");
    // (8.8125 s: tokio's timers fire on whole milliseconds, rounding up.)
    assert_eq!(failed[1], secs(8.813), "{failed:?}");
    assert!(failed.len() >= 3, "{failed:?}");
    assert!(failed.iter().all(|&t| t < secs(9.0)), "{failed:?}");
    assert_eq!(at_of(&log, start, "at_risk"), vec![secs(8.25)]);
}

/// A very long lease's renewal call is bounded by its own attempt deadline (3/4 of the
/// time left), not by some fixed cap.
#[tokio::test(start_paused = true)]
async fn a_year_long_lease_waits_for_its_renewal_as_long_as_its_deadline_allows() {
    const DAY: f64 = 86_400.0;
    let rig = rig(LeaseOptions::default()
        .with_default_lease_duration(secs(365.0 * DAY))
        .with_auto_renew_interval(secs(240.0 * DAY)));
    let start = Instant::now();
    let lease = rig.manager.acquire("job").await.unwrap();
    let log = record(&lease);
    rig.faults.script(Operation::Renew, [Fault::Hang]);
    // Window 0.9 × 365 d = 328.5 d; at 240 d, 88.5 d are left, 3/4 of it 66.375 d.
    tokio::time::sleep(secs(330.0 * DAY)).await;
    let failed = at_of(&log, start, "failed");
    assert_eq!(failed.first(), Some(&secs(306.375 * DAY)), "{failed:?}");
    // The retry succeeded: the lease is still held.
    assert_eq!(lease.state(), LeaseState::Held);
    assert_eq!(at_of(&log, start, "renewed").len(), 1);
}

/// A lease goes out with an earlier lease's batch only within its early slack; a lease due
/// later stays queued until its own time.
#[tokio::test(start_paused = true)]
async fn only_leases_eligible_by_now_share_a_batch() {
    let rig = rig(LeaseOptions::default()
        .with_default_lease_duration(secs(10.0))
        .with_auto_renew_interval(secs(6.0)));
    let start = Instant::now();
    let a = rig.manager.acquire("a").await.unwrap();
    let a_log = record(&a);
    tokio::time::sleep(secs(3.0)).await;
    let b = rig.manager.acquire("b").await.unwrap();
    let b_log = record(&b);
    tokio::time::sleep(secs(9.3)).await; // to 12.3 s
                                         // a: due at 6 and 12; b: due at 9 (eligible from 8.5 only), not at 6 with a.
    assert_eq!(at_of(&a_log, start, "renewed"), vec![secs(6.0), secs(12.0)]);
    assert_eq!(at_of(&b_log, start, "renewed"), vec![secs(9.0)]);
    assert_eq!(*rig.counting.sizes.lock().unwrap(), vec![1, 1, 1]);
    // c, due at 18.3 s, 0.3 s after a (inside its 0.5 s early slack), goes with a's batch.
    let c = rig.manager.acquire("c").await.unwrap();
    let c_log = record(&c);
    tokio::time::sleep(secs(6.0)).await; // to 18.3 s
    assert_eq!(at_of(&c_log, start, "renewed"), vec![secs(18.0)]);
    assert_eq!(at_of(&a_log, start, "renewed").last(), Some(&secs(18.0)));
    assert_eq!(at_of(&b_log, start, "renewed"), vec![secs(9.0), secs(15.0)]);
    assert_eq!(*rig.counting.sizes.lock().unwrap(), vec![1, 1, 1, 1, 2]);
    drop((a, b, c));
}

/// A retrying lease goes in a batch of its own, sent before the healthy leases due with it
/// (its deadline is the nearest).
#[tokio::test(start_paused = true)]
async fn a_retry_goes_out_before_the_healthy_leases_due_with_it() {
    let rig = rig(LeaseOptions::default()
        .with_default_lease_duration(secs(10.0))
        .with_auto_renew_interval(secs(6.0))
        .with_auto_renew_retry_interval(secs(0.2)));
    let a = rig.manager.acquire("a").await.unwrap();
    tokio::time::sleep(secs(0.6)).await;
    let b = rig.manager.acquire("b").await.unwrap();
    let c = rig.manager.acquire("c").await.unwrap();
    // a's renewal at 6 s fails (before reaching the store); its retry, 0.1–0.2 s later,
    // finds b and c eligible (due at 6.6 s, eligible from 6.1 s).
    rig.faults.script(Operation::Renew, [Fault::Unavailable]);
    tokio::time::sleep(secs(6.0)).await;
    assert_eq!(*rig.counting.sizes.lock().unwrap(), vec![1, 2]);
    assert_eq!(a.state(), LeaseState::Held);
    drop((a, b, c));
}

/// A manual renewal of an infinite lease (no safety deadline) waits 30 s for the backend.
#[tokio::test(start_paused = true)]
async fn a_manual_renewal_of_an_infinite_lease_waits_thirty_seconds() {
    let rig = rig(LeaseOptions::default());
    let lease = rig
        .manager
        .acquire_with(
            "job",
            AcquireOptions::new().duration(LeaseDuration::Infinite),
        )
        .await
        .unwrap();
    rig.faults
        .script(Operation::Renew, [Fault::Delay(secs(29.0))]);
    lease.renew().await.unwrap();
    rig.faults.script(Operation::Renew, [Fault::Hang]);
    let started = Instant::now();
    let e = lease.renew().await.unwrap_err();
    assert_eq!(Instant::now() - started, secs(30.0));
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert_eq!(lease.state(), LeaseState::AtRisk);
    lease.renew().await.unwrap();
    assert_eq!(lease.state(), LeaseState::Held);
    assert_eq!(lease.remaining_validity(), None);
    assert_eq!(lease.expires_at(), None);
}

/// Once lost, a lease has no validity left, although its safety deadline is still ahead.
#[tokio::test(start_paused = true)]
async fn a_revoked_lease_has_no_time_left() {
    let rig = rig(LeaseOptions::default().with_default_lease_duration(secs(30.0)));
    let lease = rig.manager.acquire("job").await.unwrap();
    assert_eq!(lease.remaining_validity(), Some(secs(27.0)));
    rig.store.break_lease("job").await.unwrap();
    assert_eq!(lease.renew().await.unwrap_err().kind(), ErrorKind::Lost);
    assert_eq!(lease.state(), LeaseState::Lost);
    assert!(!lease.is_held());
    assert_eq!(lease.remaining_validity(), Some(Duration::ZERO));
    let now = std::time::SystemTime::now();
    let expires = lease.expires_at().unwrap();
    assert!(expires >= now && expires <= std::time::SystemTime::now());
}

/// While held, `expires_at` is now + the time left, on the wall clock.
#[tokio::test(start_paused = true)]
async fn expires_at_is_now_plus_the_time_left() {
    let rig = rig(LeaseOptions::default().with_default_lease_duration(secs(30.0)));
    let lease = rig.manager.acquire("job").await.unwrap();
    let before = std::time::SystemTime::now();
    let expires = lease.expires_at().unwrap();
    let after = std::time::SystemTime::now();
    assert!(expires >= before + secs(27.0) && expires <= after + secs(27.0));
}

/// An acquisition whose one attempt hangs past the acquire timeout says the timeout and
/// the attempt count, and keeps what the attempt met as its source.
#[tokio::test(start_paused = true)]
async fn an_attempt_hanging_past_the_timeout_is_a_timeout_that_says_so() {
    use std::error::Error as _;
    let rig = rig(LeaseOptions::default().with_acquire_timeout(secs(1.0)));
    for via_try in [false, true] {
        rig.faults.script(Operation::Acquire, [Fault::Hang]);
        let started = Instant::now();
        let e = if via_try {
            rig.manager
                .try_acquire_with("job", AcquireOptions::new().timeout(Some(secs(1.0))))
                .await
                .unwrap_err()
        } else {
            rig.manager.acquire("job").await.unwrap_err()
        };
        assert_eq!(Instant::now() - started, secs(1.0));
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(
            e.message().starts_with(
                "not acquired within 1s (1 attempt); last attempt: the attempt was still waiting"
            ),
            "{via_try}: {e}"
        );
        assert_eq!(
            e.operation(),
            Some(leasing_abstractions::Operation::Acquire)
        );
        let cause = e.source().unwrap().downcast_ref::<LeaseError>().unwrap();
        assert_eq!(cause.kind(), ErrorKind::Timeout);
    }
}

/// A waiter without release notices polls at the retry interval jittered to
/// [0.5, 1.5] × the interval.
#[tokio::test(start_paused = true)]
async fn polling_pauses_are_jittered_around_the_retry_interval() {
    let store = InMemoryLeaseProvider::new();
    // A provider without release notifications: the waiter can only poll.
    let quiet = leasing_abstractions::fault::FaultInjectingProvider::new(std::sync::Arc::new(
        NoNotices(store.clone()),
    ));
    let control = quiet.control();
    let manager = LeaseManager::new(
        std::sync::Arc::new(quiet),
        LeaseOptions::default()
            .with_acquire_timeout(secs(30.0))
            .with_acquire_retry_interval(secs(1.0)),
    )
    .unwrap();
    let holder = manager.acquire("job").await.unwrap();
    let before = control.calls(Operation::Acquire);
    let e = manager.acquire("job").await.unwrap_err();
    let attempts = control.calls(Operation::Acquire) - before;
    // 30 s of pauses in [0.5, 1.5] s: between 21 and 61 attempts (the first is at once).
    assert!((21..=61).contains(&attempts), "{attempts} attempts: {e}");
    assert!(
        e.message().contains(&format!("({attempts} attempts)")),
        "{attempts}: {e}"
    );
    drop(holder);
}

/// An in-memory store that never sends release notifications.
#[derive(Debug)]
struct NoNotices(InMemoryLeaseProvider);

impl leasing_abstractions::provider::ProviderLayer for NoNotices {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.0
    }
    fn release_notifications(&self, _: &str) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
    fn renew_now_signals(&self) -> Option<tokio::sync::broadcast::Receiver<()>> {
        None
    }
}
leasing_abstractions::provider_layer!(NoNotices);
