#![doc = include_str!("../README.md")]

mod account;
mod config;
mod document;
mod error;
mod fenced;
mod provider;

pub use config::{
    PartitionKeyFn, PartitionKeyStrategy, DEFAULT_CALL_TIMEOUT, DEFAULT_CONTAINER,
    DEFAULT_DATABASE, DEFAULT_RETENTION,
};
pub use document::{document_id, name_of_id};
pub use fenced::CosmosFencedResource;
pub use provider::{CosmosLeaseProvider, CosmosLeaseProviderBuilder, MAX_DURATION, MIN_DURATION};

/// The Azure SDK's fault injection, re-exported for tests (feature `fault_injection`).
#[cfg(feature = "fault_injection")]
pub use azure_data_cosmos::fault_injection;
