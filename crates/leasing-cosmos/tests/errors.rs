//! The error contract (`leasing_testkit::errors`) on Cosmos DB: a dead endpoint, refused
//! credentials, a status no rule knows and an outage are reported as on every backend, at
//! build and on every operation (statuses injected with the SDK's fault injection); so are
//! a held name and a lost lease (the emulator).

mod common;

use leasing_cosmos::fault_injection::{
    CustomResponseBuilder, FaultInjectionResultBuilder, FaultInjectionRule,
    FaultInjectionRuleBuilder,
};
use leasing_cosmos::CosmosLeaseProvider;
use leasing_testkit::errors::{check_conflict_and_lost, check_situation, Situation};
use std::sync::Arc;
use std::time::Duration;

/// A rule answering every request with `code`, off until enabled.
fn every_request(code: u16) -> Arc<FaultInjectionRule> {
    let rule = Arc::new(
        FaultInjectionRuleBuilder::new(
            format!("status-{code}"),
            FaultInjectionResultBuilder::new()
                .with_custom_response(
                    CustomResponseBuilder::new(azure_core::http::StatusCode::from(code)).build(),
                )
                .with_probability(1.0)
                .build(),
        )
        .build(),
    );
    rule.disable();
    rule
}

/// A provider on the emulator whose every request is answered `code` once built.
async fn answering(cs: &str, code: u16) -> CosmosLeaseProvider {
    let rule = every_request(code);
    let p = common::builder(cs, &common::unique("errors"))
        .call_timeout(Duration::from_secs(2))
        .fault_injection_rules(vec![Arc::clone(&rule)])
        .build()
        .await
        .expect("build before the rule is on");
    rule.enable();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_unavailable_at_build() {
    let dead = format!(
        "http://127.0.0.1:{}/",
        leasing_testkit::services::free_port()
    );
    let built = CosmosLeaseProvider::builder()
        .key(dead, common::KEY)
        .emulator(true)
        .call_timeout(Duration::from_secs(2))
        .build()
        .await;
    assert_eq!(
        check_situation(Situation::Unavailable, built).await,
        "build"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_situation_on_every_operation() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    for (code, situation) in [
        (503, Situation::Unavailable),
        (401, Situation::Unauthorized),
        (403, Situation::Unauthorized),
        (418, Situation::UnexpectedReply),
    ] {
        let p = answering(&cs, code).await;
        assert_eq!(
            check_situation(situation, Ok(p)).await,
            "every operation",
            "status {code}"
        );
    }
    let p = common::provider(&cs, &common::unique("errors")).await;
    check_conflict_and_lost(Arc::new(p)).await;
}
