#![doc = include_str!("../README.md")]

mod config;
mod error;
mod fenced;
mod naming;
mod provider;
mod shared_key;

pub use config::{
    env, BlobAuth, BlobConfig, BlobLeaseProviderBuilder, DEFAULT_CALL_TIMEOUT, DEFAULT_CONTAINER,
    DEFAULT_RENEW_CONCURRENCY, DEV_ACCOUNT, DEV_ACCOUNT_KEY, DEV_BLOB_ENDPOINT,
};
pub use fenced::BlobFencedResource;
pub use provider::{BlobLeaseProvider, MAX_DURATION, MIN_DURATION};
