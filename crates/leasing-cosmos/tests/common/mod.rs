//! Shared helpers of the integration tests: providers on the shared emulator (service
//! discovery and the private emulator fixture are in `leasing_testkit::services`).
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)]

use leasing_cosmos::{CosmosLeaseProvider, CosmosLeaseProviderBuilder};
use std::time::Duration;

pub use leasing_testkit::services::{
    free_port, service_env, skip_if_missing, CosmosEmulator, COSMOS_EMULATOR_KEY as KEY,
};

/// The shared emulator's connection string, or `None` (SKIPPED).
pub fn connection_string() -> Option<String> {
    service_env("LEASING_COSMOS_CONNECTION_STRING")
}

pub fn unique(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::new_v4().simple())
}

/// A builder on the shared emulator with a database of its own for this test.
pub fn builder(cs: &str, database: &str) -> CosmosLeaseProviderBuilder {
    CosmosLeaseProvider::builder()
        .connection_string(cs)
        .database(database)
        .call_timeout(Duration::from_secs(10))
}

pub async fn provider(cs: &str, database: &str) -> CosmosLeaseProvider {
    builder(cs, database)
        .build()
        .await
        .expect("connect to the emulator")
}
