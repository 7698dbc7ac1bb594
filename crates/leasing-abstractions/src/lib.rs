#![doc = include_str!("../README.md")]

mod backoff;
mod contract;
pub mod election;
mod error;
#[cfg(feature = "testing")]
pub mod fault;
pub mod fence;
mod health;
mod lease;
mod manager;
mod memory;
mod metadata;
mod name;
mod options;
mod renewal;
pub mod semaphore;
#[cfg(feature = "serde")]
mod serde_impls;
mod spans;
pub mod telemetry;
mod validate;

// Every item has one public path. The core's types and functions are at the root; the
// modules that stay public hold a subject with its own documentation (elections,
// semaphores, fencing, telemetry's instrument table, fault injection) and `provider`, what
// a backend author needs beyond the root.
pub use backoff::Backoff;
pub use contract::{
    AcquireRequest, BoxFuture, GrantVersion, LeaseExpiry, LeaseGrant, LeaseInfo, LeasePage,
    LeaseProvider, ListRequest, ProviderCapabilities,
};
pub use error::{BoxError, ErrorKind, LeaseError, Operation, Result};
pub use health::{probe_provider, HealthReport, HealthStatus};
pub use lease::{Lease, LeaseEvent, LeaseState, LostReason};
pub use manager::{LeaseManager, LeaseManagerBuilder};
pub use memory::InMemoryLeaseProvider;
pub use metadata::{
    environment_metadata, owner_id, validate_metadata, Metadata, MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_LEN, MAX_METADATA_TOTAL_BYTES, MAX_METADATA_VALUE_BYTES,
};
pub use name::{
    is_name_char, validate_name, validate_prefix, LeaseNameBuilder, LeaseNameParts, MAX_NAME_LEN,
};
pub(crate) use options::RenewalPolicy;
pub use options::{
    clock_drift, safety_window, AcquireOptions, LeaseDuration, LeaseOptions, CLOCK_DRIFT_FACTOR,
    CLOCK_DRIFT_FIXED,
};
pub use validate::validate_request;

/// For backend authors, beyond the provider contract at the root ([`LeaseProvider`] and
/// what it exchanges): wrapping a provider to change one method
/// ([`ProviderLayer`](provider::ProviderLayer), [`provider_layer!`](crate::provider_layer)),
/// and the deadline of the call a provider is
/// serving ([`deadline`](provider::deadline), [`time_left`](provider::time_left)).
///
/// `ProviderLayer` is here, not at the root: a glob import of the root would bring both
/// traits into scope and make every call on a layer type ambiguous.
pub mod provider {
    pub use crate::contract::{deadline, deadline_passed, time_left, within, ProviderLayer};
}

/// Re-exported so users name the same version.
pub use tokio_util::sync::CancellationToken;

/// For [`provider_layer!`]: the channel type of release notifications. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use tokio::sync::broadcast;
}
