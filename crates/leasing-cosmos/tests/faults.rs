//! The SDK's fault injection (feature `fault_injection`): throttling (429) and timeouts
//! (408) on renewals, shorter than duration − renewal interval, keep the lease.

mod common;

use leasing_abstractions::{LeaseEvent, LeaseManager, LeaseOptions, LeaseState};
use leasing_cosmos::fault_injection::{
    FaultInjectionConditionBuilder, FaultInjectionErrorType, FaultInjectionResultBuilder,
    FaultInjectionRuleBuilder, FaultOperationType,
};
use std::sync::Arc;
use std::time::Duration;

async fn outage_keeps_lease(kind: FaultInjectionErrorType, label: &str) {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let rule = Arc::new(
        FaultInjectionRuleBuilder::new(
            label,
            FaultInjectionResultBuilder::new()
                .with_error(kind)
                .with_probability(1.0)
                .build(),
        )
        .with_condition(
            FaultInjectionConditionBuilder::new()
                .with_operation_type(FaultOperationType::ReplaceItem)
                .build(),
        )
        .build(),
    );
    rule.disable();
    let p = common::builder(&cs, &common::unique("fault"))
        .call_timeout(Duration::from_millis(800))
        .fault_injection_rules(vec![Arc::clone(&rule)])
        .build()
        .await
        .expect("connect");
    let m = LeaseManager::new(
        Arc::new(p),
        LeaseOptions::default()
            .with_default_lease_duration(Duration::from_secs(6))
            .with_auto_renew_retry_interval(Duration::from_millis(100)),
    )
    .expect("manager");
    let lease = m.acquire(&common::unique(label)).await.expect("acquire");
    let mut events = lease.events();
    tokio::time::sleep(Duration::from_millis(3500)).await; // first renewal at 4 s
    rule.enable();
    tokio::time::sleep(Duration::from_secs(1)).await; // shorter than duration − renewal interval
    rule.disable();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lease.state(),
        LeaseState::Held,
        "{label}: the lease was not kept"
    );
    let (mut failed, mut renewed) = (false, false);
    while let Ok(e) = events.try_recv() {
        match e {
            LeaseEvent::RenewalFailed { error, .. } => {
                assert!(error.is_retryable(), "{label}: {error}");
                failed = true;
            }
            LeaseEvent::Renewed { .. } => renewed = failed || renewed,
            LeaseEvent::Lost { reason } => panic!("{label}: lost: {reason:?}"),
            _ => {}
        }
    }
    assert!(failed, "{label}: the injected fault was never seen");
    assert!(rule.hit_count() > 0);
    assert!(renewed, "{label}: no renewal succeeded after the outage");
    lease.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_429_shorter_than_the_slack_keeps_the_lease() {
    outage_keeps_lease(FaultInjectionErrorType::TooManyRequests, "throttled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_408_shorter_than_the_slack_keep_the_lease() {
    outage_keeps_lease(FaultInjectionErrorType::Timeout, "timeout").await;
}
