//! Five competing instances, flaky renewals, 30 virtual minutes: never two holders at
//! once, and fencing tokens rise with every new holder.
//!
//! Each instance has its own fault-injecting client onto one shared in-memory backend;
//! a third of its renewals fail at random. A holder works until it releases or learns it
//! lost the lease. The test records, for every tenure, the instant it began and the instant
//! the holder stopped trusting it, and checks that tenures never overlap.

use distributed_leasing::fault::{Fault, FaultInjectingProvider};
use distributed_leasing::Operation;
use distributed_leasing::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, LeaseState};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Tenure {
    worker: usize,
    token: u64,
    start: Instant,
    end: Instant,
    lost: bool,
}

#[tokio::test(start_paused = true)]
async fn competing_instances_never_overlap() {
    let backend = InMemoryLeaseProvider::new();
    let tenures = Arc::new(Mutex::new(Vec::<Tenure>::new()));
    let end_at = Instant::now() + Duration::from_secs(1800);
    let mut workers = Vec::new();
    for worker in 0..5 {
        let client = FaultInjectingProvider::new(Arc::new(backend.clone()));
        client.control().fail_randomly(
            Operation::Renew,
            0.33,
            Fault::Unavailable,
            worker as u64 + 1,
        );
        let manager = LeaseManager::new(
            Arc::new(client),
            LeaseOptions::default()
                .with_default_lease_duration(Duration::from_secs(10))
                .with_auto_renew_retry_interval(Duration::from_millis(200))
                .with_auto_renew_max_retries(2u32)
                .with_acquire_timeout(Duration::from_secs(120)),
        )
        .unwrap();
        let tenures = tenures.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(worker as u64 + 100);
            while Instant::now() < end_at {
                let Ok(lease) = manager.acquire("the-job").await else {
                    continue;
                };
                let start = Instant::now();
                let work = Duration::from_millis(rng.u64(1_000..60_000));
                let lost = tokio::select! {
                    _ = lease.lost() => true,
                    () = tokio::time::sleep(work) => false,
                };
                let end = Instant::now();
                let token = lease.fencing_token();
                if lost {
                    assert_eq!(lease.state(), LeaseState::Lost);
                } else {
                    let _ = lease.release().await;
                }
                tenures.lock().unwrap().push(Tenure {
                    worker,
                    token,
                    start,
                    end,
                    lost,
                });
                tokio::time::sleep(Duration::from_millis(rng.u64(0..2_000))).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let mut t = tenures.lock().unwrap().clone();
    t.sort_by_key(|t| (t.start, t.token));
    assert!(
        t.len() > 30,
        "enough hand-overs to mean something: {}",
        t.len()
    );
    for pair in t.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.start >= a.end,
            "worker {} began at {:?} while worker {} still trusted its lease until {:?}",
            b.worker,
            b.start,
            a.worker,
            a.end
        );
        assert!(
            b.token > a.token,
            "fencing token did not rise: {a:?} then {b:?}"
        );
    }
    assert!(
        t.iter().any(|t| t.lost),
        "some leases were lost to failed renewals"
    );
    assert!(t.iter().any(|t| !t.lost), "some were released");
}
