#![doc = include_str!("../README.md")]

mod backoff;
pub mod election;
pub mod error;
#[cfg(feature = "testing")]
pub mod fault;
pub mod fence;
pub mod health;
mod lease;
mod manager;
mod memory;
pub mod metadata;
pub mod name;
pub mod options;
pub mod provider;
mod renewal;
pub mod semaphore;
#[cfg(feature = "serde")]
mod serde_impls;
mod spans;
pub mod telemetry;
mod validate;

pub use backoff::Backoff;
pub use error::{BoxError, ErrorKind, LeaseError, Operation, Result};
pub use health::{probe_provider, HealthReport, HealthStatus};
pub use lease::{Lease, LeaseEvent, LeaseState, LostReason};
pub use manager::{LeaseManager, LeaseManagerBuilder};
pub use memory::InMemoryLeaseProvider;
pub use metadata::{environment_metadata, validate_metadata, Metadata};
pub use name::{validate_name, validate_prefix, LeaseNameBuilder, LeaseNameParts};
pub(crate) use options::RenewalPolicy;
pub use options::{clock_drift, AcquireOptions, LeaseDuration, LeaseOptions};
pub use provider::{
    AcquireRequest, BoxFuture, GrantVersion, LeaseExpiry, LeaseGrant, LeaseInfo, LeasePage,
    LeaseProvider, ListRequest, ProviderCapabilities,
};
// `ProviderLayer` stays at `provider::ProviderLayer` only: in the root, a glob import
// (`use leasing_abstractions::*`) would bring both traits into scope and make every call
// on a layer type ambiguous.
pub use telemetry::TelemetryOptions;
pub use validate::validate_request;

/// Re-exported so users name the same version.
pub use tokio_util::sync::CancellationToken;

/// For [`provider_layer!`]: the channel type of release notifications. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio::sync::broadcast;
}
