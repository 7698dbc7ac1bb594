//! Health checks: the provider probe and the held-leases check.

mod common;

use common::*;
use leasing_abstractions::fault::Fault;
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::sync::Arc;
use tokio::time::advance;

#[tokio::test(start_paused = true)]
async fn probe_is_healthy_when_the_probe_lease_cycles() {
    let rig = rig(LeaseOptions::default());
    let r = rig.manager.probe(secs(5.0)).await;
    assert_eq!(r.status, HealthStatus::Healthy, "{r:?}");
    assert_eq!(r.data["provider"], "in-memory");
    assert!(r.data["probe_lease"].starts_with("_health_check_"));
    assert!(r.data.contains_key("elapsed_ms"));
    assert_eq!(
        rig.faults.calls(Operation::Release),
        1,
        "the probe lease was released"
    );
    assert!(rig
        .store
        .inspect(&r.data["probe_lease"])
        .await
        .unwrap()
        .is_none());
    assert_eq!(r.status.to_string(), "Healthy");
}

#[tokio::test(start_paused = true)]
async fn probe_is_unhealthy_when_the_backend_is_unreachable_or_hangs() {
    let rig = rig(LeaseOptions::default());
    rig.faults.set_partitioned(true);
    let r = rig.manager.probe(secs(5.0)).await;
    assert_eq!(r.status, HealthStatus::Unhealthy);
    assert!(r.data["error"].contains("unavailable"), "{r:?}");
    rig.faults.clear();
    rig.faults.script(Operation::Acquire, [Fault::Hang]);
    let r = rig.manager.probe(secs(5.0)).await;
    assert_eq!(r.status, HealthStatus::Unhealthy);
    assert!(r.description.contains("did not finish"), "{r:?}");
    assert_eq!(HealthStatus::Unhealthy.to_string(), "Unhealthy");
}

#[tokio::test(start_paused = true)]
async fn probe_is_healthy_under_contention_and_degraded_on_other_errors() {
    /// Answers every acquisition with its result; everything else goes to an empty store.
    #[derive(Debug)]
    struct Odd(Result<Option<LeaseGrant>>, InMemoryLeaseProvider);
    impl leasing_abstractions::provider::ProviderLayer for Odd {
        fn inner(&self) -> &dyn LeaseProvider {
            &self.1
        }
        fn provider_name(&self) -> &'static str {
            "odd"
        }
        fn capabilities(&self) -> ProviderCapabilities {
            ProviderCapabilities::new(secs(15.0), secs(60.0))
        }
        fn try_acquire<'a>(
            &'a self,
            _: &'a AcquireRequest,
        ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
            Box::pin(async move { self.0.clone() })
        }
    }
    leasing_abstractions::provider_layer!(Odd);
    let odd = |answer| Odd(answer, InMemoryLeaseProvider::new());
    let r = probe_provider(&odd(Ok(None)), secs(1.0)).await;
    assert_eq!(r.status, HealthStatus::Healthy);
    assert!(r.description.contains("contention"));
    let r = probe_provider(
        &odd(Err(LeaseError::new(
            ErrorKind::Unexpected,
            "corrupt record",
        ))),
        secs(1.0),
    )
    .await;
    assert_eq!(r.status, HealthStatus::Degraded);
    assert_eq!(HealthStatus::Degraded.to_string(), "Degraded");
    let r = probe_provider(
        &odd(Err(LeaseError::new(ErrorKind::Unauthorized, "no"))),
        secs(1.0),
    )
    .await;
    assert_eq!(r.status, HealthStatus::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn held_leases_check_follows_the_worst_lease() {
    let rig = rig(LeaseOptions::default().with_default_lease_duration(secs(30.0)));
    let empty = rig.manager.check_held_leases();
    assert_eq!(empty.status, HealthStatus::Healthy);
    assert_eq!(empty.data["held"], "0");
    let a = rig.manager.acquire("a").await.unwrap();
    let b = rig.manager.acquire("b").await.unwrap();
    assert_eq!(
        rig.manager.check_held_leases().status,
        HealthStatus::Healthy
    );
    // a's renewal fails: at risk → Degraded.
    rig.faults.script(Operation::Renew, [Fault::Unavailable]);
    advance(secs(20.0)).await;
    settle().await;
    let r = rig.manager.check_held_leases();
    assert_eq!(r.status, HealthStatus::Degraded, "{r:?}");
    assert_eq!(r.data["at_risk"], "1");
    assert!(r.data["at_risk_names"] == "a" || r.data["at_risk_names"] == "b");
    advance(secs(1.0)).await;
    settle().await;
    assert_eq!(
        rig.manager.check_held_leases().status,
        HealthStatus::Healthy
    );
    // b is broken: lost → Unhealthy until its handle is dropped.
    rig.store.break_lease("b").await.unwrap();
    advance(secs(20.0)).await;
    settle().await;
    let r = rig.manager.check_held_leases();
    assert_eq!(r.status, HealthStatus::Unhealthy, "{r:?}");
    assert_eq!(r.data["lost_names"], "b");
    drop(b);
    assert_eq!(
        rig.manager.check_held_leases().status,
        HealthStatus::Healthy
    );
    drop(a);
    let _ = Arc::clone(rig.manager.provider());
}
