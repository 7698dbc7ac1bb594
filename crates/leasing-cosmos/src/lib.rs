#![doc = include_str!("../README.md")]

mod account;
mod builder;
mod client;
mod config;
mod credential;
mod document;
mod error;
mod fenced;
mod listing;
mod ops;
mod provider;
mod store;

pub use builder::CosmosLeaseProviderBuilder;
pub use config::{
    PartitionKeyFn, PartitionKeyStrategy, DEFAULT_CALL_TIMEOUT, DEFAULT_CONTAINER,
    DEFAULT_DATABASE, DEFAULT_RETENTION, MAX_DURATION, MIN_DURATION,
};
pub use document::{document_id, name_of_id};
pub use fenced::CosmosFencedResource;
pub use provider::CosmosLeaseProvider;

/// The Azure SDK's fault injection, re-exported for tests (feature `fault_injection`).
#[cfg(feature = "fault_injection")]
pub use azure_data_cosmos::fault_injection;
