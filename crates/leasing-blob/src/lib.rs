#![doc = include_str!("../README.md")]

mod builder;
mod client;
mod config;
mod credential;
mod error;
mod fenced;
mod listing;
mod naming;
mod provider;
mod shared_key;
mod stored;

pub use builder::{env, BlobLeaseProviderBuilder};
pub use config::{
    BlobConfig, DEFAULT_CALL_TIMEOUT, DEFAULT_CONTAINER, DEFAULT_RENEW_CONCURRENCY, DEV_ACCOUNT,
    DEV_ACCOUNT_KEY, DEV_BLOB_ENDPOINT, MAX_DURATION, MIN_DURATION,
};
pub use credential::BlobAuth;
pub use fenced::BlobFencedResource;
pub use provider::BlobLeaseProvider;
