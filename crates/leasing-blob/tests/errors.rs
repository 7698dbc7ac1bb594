//! The error contract (`leasing_testkit::errors`) on Blob: a dead endpoint, a rejected key
//! and a service answering a status no rule knows are reported as on every backend, at
//! build and on every operation; so are a held name and a lost lease (Azurite).

mod common;

use common::fake::{serve, Answer};
use common::{azurite, container, key_provider};
use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use leasing_testkit::errors::{check_conflict_and_lost, check_situation, Situation};
use std::sync::Arc;
use std::time::Duration;

/// A provider for `endpoint` with `key`: `build()` (one request) or, without any request,
/// `from_config`.
async fn built(endpoint: &str, key: &str) -> leasing_abstractions::Result<BlobLeaseProvider> {
    BlobLeaseProvider::builder()
        .endpoint(endpoint)
        .account_key(DEV_ACCOUNT, key)
        .call_timeout(Duration::from_secs(2))
        .build()
        .await
}

fn unchecked(endpoint: &str, key: &str) -> BlobLeaseProvider {
    BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(endpoint)
            .account_key(DEV_ACCOUNT, key)
            .call_timeout(Duration::from_secs(2))
            .into_config()
            .expect("config"),
    )
    .expect("from_config makes no request")
}

/// Base64 of 64 bytes that are not the emulator account's key.
const WRONG_KEY: &str =
    "d3JvbmctYnV0LXdlbGwtZm9ybWVkLWtleS13cm9uZy1idXQtd2VsbC1mb3JtZWQta2V5LXdyb25nLWJ1dA==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_unavailable() {
    let dead = format!(
        "http://127.0.0.1:{}/devstoreaccount1",
        leasing_testkit::services::free_port()
    );
    let at = check_situation(Situation::Unavailable, built(&dead, DEV_ACCOUNT_KEY).await).await;
    assert_eq!(at, "build");
    let at = check_situation(
        Situation::Unavailable,
        Ok(unchecked(&dead, DEV_ACCOUNT_KEY)),
    )
    .await;
    assert_eq!(at, "every operation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_no_rule_knows_is_unexpected() {
    let (url, _) = serve(Arc::new(|_: &str| Answer(418, "Teapot", "", ""))).await;
    let at = check_situation(
        Situation::UnexpectedReply,
        built(&url, DEV_ACCOUNT_KEY).await,
    )
    .await;
    assert_eq!(at, "build");
    let at = check_situation(
        Situation::UnexpectedReply,
        Ok(unchecked(&url, DEV_ACCOUNT_KEY)),
    )
    .await;
    assert_eq!(at, "every operation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_unauthorized_and_held_and_lost_are_as_everywhere() {
    let Some(url) = azurite() else {
        return;
    };
    let at = check_situation(Situation::Unauthorized, built(&url, WRONG_KEY).await).await;
    assert_eq!(at, "build");
    let at = check_situation(Situation::Unauthorized, Ok(unchecked(&url, WRONG_KEY))).await;
    assert_eq!(at, "every operation");
    let c = container("errors");
    check_conflict_and_lost(Arc::new(key_provider(&url, &c))).await;
}
