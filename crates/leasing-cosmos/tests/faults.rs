//! The SDK's fault injection (feature `fault_injection`): throttling (429) and timeouts
//! (408) on renewals, shorter than duration − renewal interval, keep the lease; and every
//! failure answer (404, 412, 503, a slow answer) on every path is handled.

mod common;

use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseError, LeaseEvent, LeaseManager, LeaseOptions, LeaseProvider,
    LeaseState, ListRequest, Metadata,
};
use leasing_cosmos::fault_injection::{
    CustomResponseBuilder, FaultInjectionConditionBuilder, FaultInjectionErrorType,
    FaultInjectionResultBuilder, FaultInjectionRule, FaultInjectionRuleBuilder, FaultOperationType,
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

fn rule(
    id: &str,
    op: FaultOperationType,
    result: FaultInjectionResultBuilder,
) -> Arc<FaultInjectionRule> {
    let r = Arc::new(
        FaultInjectionRuleBuilder::new(id, result.with_probability(1.0).build())
            .with_condition(
                FaultInjectionConditionBuilder::new()
                    .with_operation_type(op)
                    .build(),
            )
            .build(),
    );
    r.disable();
    r
}

fn status(code: u16) -> FaultInjectionResultBuilder {
    FaultInjectionResultBuilder::new().with_custom_response(
        CustomResponseBuilder::new(azure_core::http::StatusCode::from(code)).build(),
    )
}

fn error(kind: FaultInjectionErrorType) -> FaultInjectionResultBuilder {
    FaultInjectionResultBuilder::new().with_error(kind)
}

/// While `rule` is on, `f` runs.
async fn with<T>(rule: &FaultInjectionRule, f: impl std::future::Future<Output = T>) -> T {
    rule.enable();
    let out = f.await;
    rule.disable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_answer_of_every_path_is_handled() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let create_503 = rule(
        "create-503",
        FaultOperationType::CreateItem,
        error(FaultInjectionErrorType::ServiceUnavailable),
    );
    let replace_503 = rule(
        "replace-503",
        FaultOperationType::ReplaceItem,
        error(FaultInjectionErrorType::ServiceUnavailable),
    );
    let replace_404 = rule("replace-404", FaultOperationType::ReplaceItem, status(404));
    let replace_412 = rule("replace-412", FaultOperationType::ReplaceItem, status(412));
    let query_503 = rule(
        "query-503",
        FaultOperationType::QueryItem,
        error(FaultInjectionErrorType::ServiceUnavailable),
    );
    let read_503 = rule(
        "read-503",
        FaultOperationType::ReadItem,
        error(FaultInjectionErrorType::ServiceUnavailable),
    );
    let read_slow = rule(
        "read-slow",
        FaultOperationType::ReadItem,
        FaultInjectionResultBuilder::new().with_delay(Duration::from_secs(3)),
    );
    let all = [
        &create_503,
        &replace_503,
        &replace_404,
        &replace_412,
        &query_503,
        &read_503,
        &read_slow,
    ];
    let p = common::builder(&cs, &common::unique("paths"))
        .call_timeout(Duration::from_secs(1))
        .fault_injection_rules(all.iter().map(|r| Arc::clone(r)).collect())
        .build()
        .await
        .expect("connect");
    let name = common::unique("paths");
    let req = AcquireRequest::new(&name, Duration::from_secs(30), Metadata::new());
    let unavailable = |r: Result<(), LeaseError>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{what}: {e}");
    };

    // Acquire: a failed create; then a takeover whose replace fails three ways.
    let r = with(&create_503, p.try_acquire(&req)).await;
    unavailable(r.map(|_| ()), "create 503");
    let g = p.try_acquire(&req).await.expect("acquire").expect("free");
    p.release(&g).await.expect("release");
    let r = with(&replace_404, p.try_acquire(&req))
        .await
        .expect("404s only");
    assert!(
        r.is_none(),
        "a document that keeps vanishing is not granted"
    );
    let r = with(&replace_503, p.try_acquire(&req)).await;
    unavailable(r.map(|_| ()), "takeover 503");
    let g = p.try_acquire(&req).await.expect("acquire").expect("free");

    // Renew: gone, unavailable, keeps changing, the re-read failing or timing out.
    let e = with(&replace_404, p.renew(&g)).await.expect_err("gone");
    assert_eq!(e.kind(), ErrorKind::Lost);
    // Still ours, but every write answers 412: transient, not a loss.
    unavailable(
        with(&replace_412, p.renew(&g)).await,
        "renew keeps changing",
    );
    let current = g.version.get().expect("version");
    g.version.set("\"stale\"");
    unavailable(with(&read_503, p.renew(&g)).await, "re-read 503");
    // As the core calls it: within a deadline (here 1 s), which ends the slow re-read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let e = with(
        &read_slow,
        leasing_abstractions::provider::within(
            deadline,
            leasing_abstractions::Operation::Renew,
            p.renew(&g),
        ),
    )
    .await
    .expect_err("re-read too slow");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("within its deadline"), "{e}");
    g.version.set(current);

    // Release: gone (fine), unavailable, keeps changing.
    with(&replace_404, p.release(&g))
        .await
        .expect("a vanished document is released");
    unavailable(with(&replace_503, p.release(&g)).await, "release 503");
    unavailable(
        with(&replace_412, p.release(&g)).await,
        "release keeps changing",
    );

    // Break: gone, keeps changing, unavailable; inspect and list unavailable.
    let r = with(&replace_404, p.break_lease(&name))
        .await
        .expect("gone");
    assert!(!r, "nothing was broken");
    let r = with(&replace_412, p.break_lease(&name)).await;
    unavailable(r.map(|_| ()), "break keeps changing");
    let r = with(&replace_503, p.break_lease(&name)).await;
    unavailable(r.map(|_| ()), "break 503");
    unavailable(
        with(&query_503, p.inspect(&name)).await.map(|_| ()),
        "inspect 503",
    );
    unavailable(
        with(&query_503, p.list(&ListRequest::new("")))
            .await
            .map(|_| ()),
        "list 503",
    );
    p.release(&g).await.expect("release");
    assert!(create_503.hit_count() > 0);
    assert!(replace_412.hit_count() > 0);
}
