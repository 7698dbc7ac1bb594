//! Azure Blob Storage provider for distributed-leasing: native blob leases, fencing
//! tokens in blob metadata written under the lease id. See `docs/providers/blob.md`.
//!
//! ```no_run
//! use leasing_blob::BlobLeaseProvider;
//! # fn main() -> leasing_abstractions::Result<()> {
//! let provider = BlobLeaseProvider::builder()
//!     .connection_string("UseDevelopmentStorage=true")?
//!     .build()?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod naming;
mod provider;
mod shared_key;

pub use config::{
    env, BlobAuth, BlobConfig, BlobLeaseProviderBuilder, DEFAULT_CALL_TIMEOUT, DEFAULT_CONTAINER,
    DEFAULT_RENEW_CONCURRENCY, DEV_ACCOUNT, DEV_ACCOUNT_KEY, DEV_BLOB_ENDPOINT,
};
pub use provider::{BlobLeaseProvider, MAX_DURATION, MIN_DURATION};
