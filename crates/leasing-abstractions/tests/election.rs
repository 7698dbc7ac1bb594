#![allow(clippy::unwrap_used)]
//! Leader election on the in-memory provider under `tokio::time::pause()`: who leads,
//! when a leader that cannot renew is told (before anyone else can be elected), hand-over
//! on resignation, events only for terms won, observation, `run`, health and the timing
//! checks made when an election is built.

mod common;

use common::*;
use leasing_abstractions::election::{self, Election, ElectionEvent, IDENTITY_KEY};
use leasing_abstractions::fault::Fault;
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn options() -> LeaseOptions {
    LeaseOptions::default().with_default_lease_duration(secs(10.0))
}

fn candidate(manager: &LeaseManager, identity: &str) -> Election {
    Election::builder(manager, "leader")
        .identity(identity)
        .retry_period(secs(1.0))
        .build()
        .unwrap()
}

/// Events of an election, collected as they come.
fn collect(e: &Election) -> Arc<std::sync::Mutex<Vec<(Instant, ElectionEvent)>>> {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut rx = e.events();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
            sink.lock().unwrap().push((Instant::now(), ev));
        }
    });
    log
}

#[tokio::test(start_paused = true)]
async fn one_leader_among_three_candidates_and_everyone_sees_who() {
    let rig = rig(options());
    let [a, b, c] = ["a", "b", "c"].map(|id| candidate(&rig.manager, id));
    let lead = a.try_campaign().await.unwrap().expect("free: elected");
    assert!(lead.is_leader());
    assert_eq!(lead.identity(), "a");
    assert!(b.try_campaign().await.unwrap().is_none());
    assert!(c.try_campaign().await.unwrap().is_none());
    for e in [&a, &b, &c] {
        let leader = e.leader().await.unwrap().expect("a leads");
        assert_eq!(leader.identity.as_deref(), Some("a"));
        assert_eq!(leader.fencing_token, lead.fencing_token());
        assert_eq!(
            leader.metadata.get(IDENTITY_KEY).map(String::as_str),
            Some("a")
        );
    }
    // Still one leader a term later: the leader's renewals keep it.
    tokio::time::sleep(secs(30.0)).await;
    assert!(lead.is_leader());
    assert!(b.try_campaign().await.unwrap().is_none());
    lead.resign().await.unwrap();
    assert!(a.leader().await.unwrap().is_none());
}

/// A leader whose renewals hang is told at its safety deadline (9 s after its last
/// successful renewal's send, for a 10 s lease): `lost()` resolves, its token is cancelled,
/// `Lost` is sent — and a waiting candidate is elected only after that (here at the same
/// virtual instant: the lost term is released at once; against a backend that cannot be
/// reached the name frees at its expiry), never before.
#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_is_told_before_anyone_else_is_elected() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    let b = candidate(&rig.manager, "b");
    let events = collect(&a);
    let start = Instant::now();
    let lead = a.campaign().await.unwrap();
    let token = lead.cancellation_token();
    rig.faults.script(Operation::Renew, vec![Fault::Hang; 64]);
    let follower = {
        let b = b.clone();
        let old = lead.cancellation_token();
        tokio::spawn(async move {
            let l = b.campaign().await.unwrap();
            // The moment b is elected, a has already been told.
            (Instant::now(), old.is_cancelled(), l)
        })
    };
    let reason = lead.lost().await;
    let lost_at = Instant::now() - start;
    assert!(matches!(reason, LostReason::SafetyDeadline), "{reason}");
    assert_eq!(lost_at, secs(9.0), "told at the safety deadline");
    assert!(token.is_cancelled());
    assert!(!lead.is_leader());
    let (elected_at, old_told, second) = follower.await.unwrap();
    assert!(old_told, "b was elected before a was told");
    assert!(
        elected_at - start >= secs(9.0),
        "b elected at {:?}",
        elected_at - start
    );
    assert!(second.fencing_token() > lead.fencing_token());
    settle().await;
    let log = events.lock().unwrap();
    let lost: Vec<_> = log
        .iter()
        .filter_map(|(at, e)| match e {
            ElectionEvent::Lost { fencing_token, .. } => Some((*at - start, *fencing_token)),
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec![(secs(9.0), lead.fencing_token())]);
}

/// Against a backend that cannot be reached at all (renewals and the release hang), the
/// name frees only at the backend's expiry: the next leader is elected a whole lease
/// duration after the last successful renewal, a second after the old leader was told.
#[tokio::test(start_paused = true)]
async fn an_unreachable_leaders_term_passes_on_at_the_backends_expiry() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    let b = candidate(&rig.manager, "b");
    let start = Instant::now();
    let lead = a.campaign().await.unwrap();
    rig.faults.script(Operation::Renew, vec![Fault::Hang; 64]);
    rig.faults.script(Operation::Release, vec![Fault::Hang; 64]);
    let follower = tokio::spawn(async move { (b.campaign().await.unwrap(), Instant::now()) });
    let _ = lead.lost().await;
    assert_eq!(Instant::now() - start, secs(9.0));
    let (second, elected) = follower.await.unwrap();
    assert!(
        elected - start >= secs(10.0),
        "elected at {:?}",
        elected - start
    );
    assert!(second.fencing_token() > lead.fencing_token());
}

/// The event and the health check come at the deadline even when nobody looks at the
/// leadership handle (a watcher follows the term), and a dead term whose handle is kept
/// makes the election unhealthy.
#[tokio::test(start_paused = true)]
async fn health_follows_the_term_and_the_lost_event_needs_no_one_watching() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    assert_eq!(a.check_health().status, HealthStatus::Healthy);
    assert_eq!(a.check_health().description, "following");
    let events = collect(&a);
    let start = Instant::now();
    let lead = a.campaign().await.unwrap();
    let report = a.check_health();
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(report.description, "leading");
    assert_eq!(
        report.data.get("fencing_token"),
        Some(&lead.fencing_token().to_string())
    );
    rig.faults
        .script(Operation::Renew, vec![Fault::Unavailable; 1000]);
    // The first renewal (at 2/3 of 10 s) fails: at risk.
    tokio::time::sleep(secs(7.0)).await;
    assert_eq!(lead.lease().state(), LeaseState::AtRisk);
    assert_eq!(a.check_health().status, HealthStatus::Degraded);
    tokio::time::sleep(secs(2.5)).await;
    assert_eq!(a.check_health().status, HealthStatus::Unhealthy);
    let at = events
        .lock()
        .unwrap()
        .iter()
        .find_map(|(at, e)| matches!(e, ElectionEvent::Lost { .. }).then_some(*at - start));
    assert_eq!(at, Some(secs(9.0)));
    drop(lead);
    assert_eq!(a.check_health().status, HealthStatus::Healthy);
}

/// Resigning hands over at once: a waiting candidate is woken by the release
/// notification, not by its retry period.
#[tokio::test(start_paused = true)]
async fn resign_hands_over_at_once() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    let b = Election::builder(&rig.manager, "leader")
        .identity("b")
        .retry_period(secs(5.0))
        .build()
        .unwrap();
    let lead = a.campaign().await.unwrap();
    let follower = tokio::spawn(async move { (b.campaign().await.unwrap(), Instant::now()) });
    tokio::time::sleep(secs(2.0)).await;
    let resigned = Instant::now();
    lead.resign().await.unwrap();
    let (second, elected) = follower.await.unwrap();
    assert_eq!(
        elected, resigned,
        "woken by the release, not after a retry period"
    );
    assert_eq!(second.identity(), "b");
}

/// "Stopped leading" only for a candidate that led: a follower that never won hears
/// nothing, the leader hears Elected then Resigned.
#[tokio::test(start_paused = true)]
async fn only_a_candidate_that_led_hears_that_it_stopped_leading() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    let b = candidate(&rig.manager, "b");
    let (ea, eb) = (collect(&a), collect(&b));
    let lead = a.campaign().await.unwrap();
    assert!(b.try_campaign().await.unwrap().is_none());
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { tokio::time::timeout(secs(3.0), b.campaign()).await }
    });
    assert!(waiting.await.unwrap().is_err(), "b gave up waiting");
    let token = lead.fencing_token();
    drop(lead); // dropping the handle resigns too
    tokio::time::sleep(secs(1.0)).await;
    let kinds = |log: &std::sync::Mutex<Vec<(Instant, ElectionEvent)>>| {
        log.lock()
            .unwrap()
            .iter()
            .map(|(_, e)| match e {
                ElectionEvent::Elected { fencing_token } => ("elected", *fencing_token),
                ElectionEvent::Resigned { fencing_token } => ("resigned", *fencing_token),
                ElectionEvent::Lost { fencing_token, .. } => ("lost", *fencing_token),
                _ => ("other", 0),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&ea), vec![("elected", token), ("resigned", token)]);
    assert_eq!(kinds(&eb), vec![]);
}

#[tokio::test(start_paused = true)]
async fn observers_see_each_new_term() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    let b = candidate(&rig.manager, "b");
    let watcher = candidate(&rig.manager, "w");
    let mut watch = watcher.observe().await.unwrap();
    assert!(watch.current().is_none());
    let lead = a.campaign().await.unwrap();
    let seen = watch.changed().await.expect("a leads");
    assert_eq!(seen.identity.as_deref(), Some("a"));
    assert_eq!(seen.fencing_token, lead.fencing_token());
    // Renewals do not count as changes: nothing new for three terms' worth of renewals.
    assert!(tokio::time::timeout(secs(30.0), watch.changed())
        .await
        .is_err());
    let follower = tokio::spawn(async move { b.campaign().await.unwrap() });
    lead.resign().await.unwrap();
    let second = follower.await.unwrap();
    // Either "nobody" then "b", or "b" at once, depending on when the poller looked.
    let mut next = watch.changed().await;
    if next.is_none() {
        next = watch.changed().await;
    }
    let next = next.unwrap();
    assert_eq!(next.identity.as_deref(), Some("b"));
    assert_eq!(next.fencing_token, second.fencing_token());
    assert!(next.same_term(&watch.current().unwrap()));
}

/// `run` drops the leader's work at the loss and campaigns again; the next term's work
/// gets a larger token. When the work finishes, `run` resigns and returns.
#[tokio::test(start_paused = true)]
async fn run_drops_the_work_at_the_loss_and_campaigns_again() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    let terms = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU32::new(0));
    let faults = rig.faults.clone();
    let start = Instant::now();
    let result = a
        .run(|term| {
            let terms = terms.clone();
            let calls = calls.clone();
            let faults = faults.clone();
            async move {
                terms
                    .lock()
                    .unwrap()
                    .push((Instant::now() - start, term.fencing_token()));
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    // First term: renewals hang from now on, and the work never ends on
                    // its own.
                    faults.script(Operation::Renew, vec![Fault::Hang; 64]);
                    let cancel = term.cancellation_token();
                    cancel.cancelled().await;
                    unreachable!("the work future is dropped before its token is seen");
                }
                // Second term: finish at once.
            }
        })
        .await;
    result.unwrap();
    let terms = terms.lock().unwrap().clone();
    assert_eq!(terms.len(), 2, "{terms:?}");
    assert!(terms[1].1 > terms[0].1, "{terms:?}");
    assert!(
        terms[1].0 >= secs(9.0),
        "re-elected after the old term's deadline: {terms:?}"
    );
    assert!(
        a.leader().await.unwrap().is_none(),
        "resigned after the work finished"
    );
}

#[tokio::test(start_paused = true)]
async fn run_without_recampaign_returns_the_loss() {
    let rig = rig(options());
    let a = Election::builder(&rig.manager, "leader")
        .identity("a")
        .recampaign(false)
        .build()
        .unwrap();
    rig.faults.script(Operation::Renew, vec![Fault::Hang; 64]);
    let err = a.run(|_| std::future::pending()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lost);
    assert!(err.to_string().contains("leadership of leader"), "{err}");
}

#[tokio::test]
async fn the_timing_is_checked_when_built() {
    let rig = rig(options());
    let m = &rig.manager;
    let err = Election::builder(m, "leader")
        .retry_period(secs(7.0))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let msg = err.to_string();
    assert!(msg.contains("retry_period"), "{msg}");
    assert!(
        msg.contains("7s") && msg.contains("renewal interval 6"),
        "{msg}"
    );
    assert!(msg.contains("safety window 9s"), "{msg}");
    let zero = Election::builder(m, "leader")
        .retry_period(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(zero.to_string().contains("retry_period"), "{zero}");
    // The default retry period fits any duration: at most half the renewal interval.
    let short = Election::builder(m, "leader")
        .lease_duration(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(short.retry_period() < Duration::from_millis(200));
    assert_eq!(short.lease_duration(), Duration::from_millis(300));
    // Infinite leases never pass on; elections refuse them.
    let inf = rig_with(options().with_default_lease_duration(LeaseDuration::Infinite));
    let err = Election::builder(&inf, "leader").build().unwrap_err();
    assert!(err.to_string().contains("lease_duration"), "{err}");
    // Elections need auto-renewal.
    let manual = rig_with(options().with_auto_renew(false));
    let err = Election::builder(&manual, "leader").build().unwrap_err();
    assert!(err.to_string().contains("auto_renew"), "{err}");
    // Name, identity, metadata and the provider's bounds.
    for (built, field) in [
        (Election::builder(m, "bad name").build(), "name"),
        (
            Election::builder(m, "leader").identity("").build(),
            "identity",
        ),
        (
            Election::builder(m, "leader")
                .metadata([("Identity".to_owned(), "x".to_owned())].into())
                .build(),
            "metadata",
        ),
        (
            Election::builder(m, "leader")
                .lease_duration(Duration::from_secs(365 * 86_400 * 1000))
                .build(),
            "duration",
        ),
    ] {
        let err = built.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[tokio::test]
async fn a_default_identity_names_the_process() {
    let rig = rig(options());
    let e = Election::builder(&rig.manager, "leader").build().unwrap();
    assert!(
        e.identity().contains(&std::process::id().to_string()),
        "{}",
        e.identity()
    );
    assert_eq!(e.name(), "leader");
    let other = Election::builder(&rig.manager, "leader").build().unwrap();
    assert_ne!(e.identity(), other.identity(), "unique per candidate");
    assert!(format!("{e:?}").contains("leader"));
}

fn rig_with(options: LeaseOptions) -> LeaseManager {
    LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), options).unwrap()
}

#[tokio::test(start_paused = true)]
async fn without_notifications_followers_and_observers_poll() {
    let m = LeaseManager::new(Arc::new(Silent(InMemoryLeaseProvider::new())), options()).unwrap();
    let a = candidate(&m, "a");
    let b = candidate(&m, "b");
    let mut watch = candidate(&m, "w").observe().await.unwrap();
    let lead = a.campaign().await.unwrap();
    let follower = tokio::spawn(async move { (b.campaign().await.unwrap(), Instant::now()) });
    tokio::time::sleep(secs(2.0)).await;
    let resigned = Instant::now();
    lead.resign().await.unwrap();
    let (second, at) = follower.await.unwrap();
    // Polling every 1 s ± 50 %: within 1.5 s.
    assert!(at - resigned <= secs(1.5), "{:?}", at - resigned);
    let mut seen = watch.current();
    while seen.as_ref().map(|l| l.fencing_token) != Some(second.fencing_token()) {
        seen = watch.changed().await;
    }
    assert_eq!(seen.unwrap().identity.as_deref(), Some("b"));
}

/// An observer keeps the last known leader while the backend fails, and catches up when
/// it answers again; dropping every clone of the watch stops the poller.
#[tokio::test(start_paused = true)]
async fn an_observer_rides_out_backend_failures() {
    let rig = rig(options());
    let a = candidate(&rig.manager, "a");
    let lead = a.campaign().await.unwrap();
    let mut watch = a.observe().await.unwrap();
    let copy = watch.clone();
    assert_eq!(watch.current().unwrap().fencing_token, lead.fencing_token());
    rig.faults
        .script(Operation::Inspect, vec![Fault::Unavailable; 5]);
    tokio::time::sleep(secs(3.0)).await;
    assert_eq!(copy.current().unwrap().fencing_token, lead.fencing_token());
    drop(lead);
    assert!(watch.changed().await.is_none(), "the resignation is seen");
    // The first look fails: observe() says so.
    rig.faults
        .script(Operation::Inspect, vec![Fault::Unavailable]);
    let err = a.observe().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ProviderUnavailable);
    drop((watch, copy));
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn terms_and_handles_describe_themselves() {
    let rig = rig(options());
    let a = Election::builder(&rig.manager, "leader")
        .identity("a")
        .metadata([("zone".to_owned(), "west".to_owned())].into())
        .build()
        .unwrap();
    assert_eq!(a.retry_period(), Duration::from_millis(500));
    let dbg = format!("{a:?}");
    assert!(
        dbg.contains("leader") && dbg.contains("recampaign"),
        "{dbg}"
    );
    let builder = format!("{:?}", Election::builder(&rig.manager, "x"));
    assert!(builder.contains("ElectionBuilder"), "{builder}");
    let lead = a.try_campaign().await.unwrap().unwrap();
    assert!(format!("{lead:?}").contains("fencing_token"));
    assert_eq!(lead.lease().name(), "leader");
    let leader = a.leader().await.unwrap().unwrap();
    assert_eq!(
        leader.metadata.get("zone").map(String::as_str),
        Some("west")
    );
    let mut other = leader.clone();
    assert!(leader.same_term(&other));
    other.fencing_token += 1;
    assert!(!leader.same_term(&other));
    let mut other = leader.clone();
    other.lease_id = None;
    assert!(!leader.same_term(&other));
    let mut other = leader.clone();
    other.identity = Some("b".into());
    assert!(!leader.same_term(&other));
    // A leader without an identity (a lease taken outside an election).
    let plain: election::Leader = LeaseInfo::new(
        "n",
        None,
        3,
        std::time::SystemTime::now(),
        LeaseExpiry::Unknown,
        Metadata::new(),
    )
    .into();
    assert_eq!(plain.identity, None);
    // `run` hands the term to the work.
    lead.resign().await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s2 = seen.clone();
    a.run(|term| {
        let s2 = s2.clone();
        async move {
            assert!(!term.cancellation_token().is_cancelled());
            *s2.lock().unwrap() = Some((term.fencing_token(), term.lease_id().to_owned()));
        }
    })
    .await
    .unwrap();
    let (token, id) = seen.lock().unwrap().clone().unwrap();
    assert!(token > leader.fencing_token);
    assert!(!id.is_empty());
    assert_eq!(a.check_health().description, "following");
}

/// A campaign fails at once on an error that waiting cannot fix, and `run` returns it.
#[tokio::test(start_paused = true)]
async fn a_campaign_that_cannot_succeed_fails() {
    let m = LeaseManager::new(Arc::new(Refusing(InMemoryLeaseProvider::new())), options()).unwrap();
    let e = candidate(&m, "a");
    assert_eq!(
        e.campaign().await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        e.try_campaign().await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        e.run(|_| async {}).await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
}
