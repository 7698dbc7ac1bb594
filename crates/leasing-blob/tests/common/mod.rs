//! Shared helpers of the integration tests: service discovery and providers on Azurite.
#![allow(dead_code, unreachable_pub, missing_docs)]

use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::time::Duration;

/// The value of `var`, or `None` after a loud SKIPPED line. Under
/// `LEASING_REQUIRE_SERVICES=1` a missing variable fails the test.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if required() => panic!("{var} is not set but LEASING_REQUIRE_SERVICES=1: start Azurite with scripts/azurite-up.sh and source target/services/azurite.env"),
        _ => {
            eprintln!("SKIPPED: {var} is not set; start Azurite with scripts/azurite-up.sh and source target/services/azurite.env");
            None
        }
    }
}

pub fn required() -> bool {
    std::env::var("LEASING_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

pub fn unique(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::new_v4().simple())
}

/// A container name unique to this run.
pub fn container(test: &str) -> String {
    format!(
        "t-{test}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The plain Azurite endpoint, or `None` (SKIPPED).
pub fn azurite() -> Option<String> {
    service_env("LEASING_AZURITE_BLOB_URL")
}

/// An account-key provider on `url` using `container`.
pub fn key_provider(url: &str, container: &str) -> BlobLeaseProvider {
    BlobLeaseProvider::builder()
        .endpoint(url)
        .expect("endpoint")
        .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
        .container(container)
        .call_timeout(Duration::from_secs(5))
        .build()
        .expect("build")
}
