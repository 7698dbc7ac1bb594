//! The backend contract: [`LeaseProvider`] and what it exchanges with the core.

use crate::error::{LeaseError, Result};
use crate::metadata::Metadata;
use crate::options::LeaseDuration;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// What an acquisition asks of a provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AcquireRequest {
    /// Lease name (already validated by the core).
    pub name: String,
    /// Lease duration.
    pub duration: LeaseDuration,
    /// Metadata to store with the lease (already validated).
    pub metadata: Metadata,
}

impl AcquireRequest {
    /// A request for `name` held for `duration` with `metadata`.
    pub fn new(
        name: impl Into<String>,
        duration: impl Into<LeaseDuration>,
        metadata: Metadata,
    ) -> Self {
        Self {
            name: name.into(),
            duration: duration.into(),
            metadata,
        }
    }
}

/// A lease granted by a provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeaseGrant {
    /// Lease name.
    pub name: String,
    /// Unique per grant; renew and release present it.
    pub lease_id: String,
    /// Strictly increasing per name across grants (SPEC §2.2).
    pub fencing_token: u64,
    /// Wall-clock acquisition time (the backend's clock where it has one).
    pub acquired_at: SystemTime,
    /// Duration granted.
    pub duration: LeaseDuration,
    /// Metadata stored with the lease.
    pub metadata: Metadata,
    /// Monotonic instant the acquiring request was *sent*; validity counts from here.
    pub sent_at: Instant,
}

impl LeaseGrant {
    /// A grant; `sent_at` must be taken before the request left.
    pub fn new(
        request: &AcquireRequest,
        lease_id: impl Into<String>,
        fencing_token: u64,
        acquired_at: SystemTime,
        sent_at: Instant,
    ) -> Self {
        Self {
            name: request.name.clone(),
            lease_id: lease_id.into(),
            fencing_token,
            acquired_at,
            duration: request.duration,
            metadata: request.metadata.clone(),
            sent_at,
        }
    }
}

/// The current holder of a name as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// Lease name.
    pub name: String,
    /// Lease id of the current grant, when the backend exposes it.
    pub lease_id: Option<String>,
    /// Fencing token of the current grant.
    pub fencing_token: u64,
    /// When the current grant was acquired.
    pub acquired_at: SystemTime,
    /// When it expires unless renewed; `None` for an infinite lease.
    pub expires_at: Option<SystemTime>,
    /// Its metadata.
    pub metadata: Metadata,
}

impl LeaseInfo {
    /// Builds a description of a holder.
    pub fn new(
        name: impl Into<String>,
        lease_id: Option<String>,
        fencing_token: u64,
        acquired_at: SystemTime,
        expires_at: Option<SystemTime>,
        metadata: Metadata,
    ) -> Self {
        Self {
            name: name.into(),
            lease_id,
            fencing_token,
            acquired_at,
            expires_at,
            metadata,
        }
    }
}

/// What a provider supports; the core validates requests against it before any write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderCapabilities {
    /// Shortest finite duration accepted.
    pub min_duration: Duration,
    /// Longest finite duration accepted.
    pub max_duration: Duration,
    /// Whether [`LeaseDuration::Infinite`] is accepted.
    pub infinite_leases: bool,
    /// Most grants [`LeaseProvider::renew_many`] should get in one call.
    pub max_renew_batch: usize,
}

impl ProviderCapabilities {
    /// Capabilities with the given finite duration bounds, no infinite leases, batches of 1.
    pub fn new(min_duration: Duration, max_duration: Duration) -> Self {
        Self {
            min_duration,
            max_duration,
            infinite_leases: false,
            max_renew_batch: 1,
        }
    }

    /// Sets whether infinite leases are accepted.
    pub fn with_infinite_leases(mut self, yes: bool) -> Self {
        self.infinite_leases = yes;
        self
    }

    /// Sets the largest renewal batch.
    pub fn with_max_renew_batch(mut self, n: usize) -> Self {
        self.max_renew_batch = n.max(1);
        self
    }

    /// Checks a duration against these bounds.
    ///
    /// # Errors
    /// `InvalidArgument` (field `lease_duration`) naming the bounds.
    pub fn check_duration(&self, duration: LeaseDuration) -> Result<()> {
        match duration {
            LeaseDuration::Infinite if self.infinite_leases => Ok(()),
            LeaseDuration::Infinite => Err(LeaseError::invalid_argument(
                "lease_duration",
                "this provider does not support infinite leases",
            )),
            LeaseDuration::Finite(d) if d < self.min_duration || d > self.max_duration => {
                Err(LeaseError::invalid_argument(
                    "lease_duration",
                    format!(
                        "{d:?} is outside this provider's bounds [{:?}, {:?}]",
                        self.min_duration, self.max_duration
                    ),
                ))
            }
            LeaseDuration::Finite(_) => Ok(()),
        }
    }
}

/// A boxed, `Send` future: what every [`LeaseProvider`] method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend's lease primitives. Everything about timing lives in the core.
///
/// Implementations must meet the guarantees of SPEC §2, which
/// `leasing_testkit::conformance` checks: mutual exclusion, strictly increasing fencing
/// tokens, release idempotent and harmless to a new holder, expiry on the backend's clock,
/// bad input rejected before any write, no secret in `Debug`.
///
/// Errors: definitive loss in [`renew`](Self::renew) is [`ErrorKind::Lost`](crate::ErrorKind::Lost);
/// an unreachable backend is [`ErrorKind::ProviderUnavailable`](crate::ErrorKind::ProviderUnavailable).
///
/// Methods return [`BoxFuture`]s, so the trait is object-safe (`Arc<dyn LeaseProvider>`);
/// implement them as `Box::pin(async move { … })`. The trait does not use `async_trait`
/// because LLVM 22's `llvm-cov` crashes reading branch coverage of `async_trait`
/// expansions (rust-lang/rust#157358), and branch coverage is how we prove the providers.
///
/// ```
/// use leasing_abstractions::provider::*;
/// use leasing_abstractions::{LeaseError, Result};
/// #[derive(Debug)]
/// struct Down;
/// impl LeaseProvider for Down {
///     fn provider_name(&self) -> &'static str { "down" }
///     fn capabilities(&self) -> ProviderCapabilities {
///         ProviderCapabilities::new(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60))
///     }
///     fn try_acquire<'a>(&'a self, _: &'a AcquireRequest) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
///         Box::pin(async move { Err(LeaseError::unavailable("always down")) })
///     }
///     fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
///         Box::pin(async move { Err(LeaseError::unavailable("always down")) })
///     }
///     fn release<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
///         Box::pin(async move { Ok(()) })
///     }
///     fn inspect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
///         Box::pin(async move { Ok(None) })
///     }
///     fn break_lease<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
///         Box::pin(async move { Ok(false) })
///     }
/// }
/// ```
pub trait LeaseProvider: Send + Sync + Debug + 'static {
    /// A short provider label for telemetry (`in-memory`, `redis`, `redlock`, `blob`…).
    fn provider_name(&self) -> &'static str;

    /// Duration bounds and batch size.
    fn capabilities(&self) -> ProviderCapabilities;

    /// Grants the lease if `request.name` is free or its previous lease expired; `Ok(None)`
    /// if someone else holds it.
    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>>;

    /// Extends `grant` by its duration. `Err` of kind `Lost` when the grant is no longer
    /// the holder.
    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>>;

    /// Renews many grants, in one round trip where the backend allows it. Returns one
    /// result per grant, in order. The default renews them concurrently one by one.
    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(futures::future::join_all(
            grants.iter().map(|g| self.renew(g)),
        ))
    }

    /// Releases `grant`. Idempotent: a grant already released, expired or taken over is
    /// `Ok(())` and the current holder is left alone.
    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>>;

    /// The current holder of `name`, `None` if free.
    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>>;

    /// Operator force-release. `Ok(true)` if a lease was broken, `Ok(false)` if the name
    /// was free.
    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Announcements that `name` was released, for waking an acquirer waiting for it;
    /// `None` if the provider cannot tell (waiters then poll with jittered backoff).
    ///
    /// The manager asks only once an attempt found `name` held, and keeps the receiver
    /// while it waits; a provider may subscribe to `name` on its backend for as long as a
    /// receiver lives. The receiver may also carry other names (the manager filters), and
    /// messages may be missed, so waiters keep polling as a fallback.
    fn release_notifications(&self, _name: &str) -> Option<broadcast::Receiver<String>> {
        None
    }
}

/// Compile-time check that the trait stays object-safe.
fn _object_safe(_: Arc<dyn LeaseProvider>) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn capabilities_check_durations() {
        let c = ProviderCapabilities::new(Duration::from_secs(15), Duration::from_secs(60))
            .with_max_renew_batch(0);
        assert_eq!(c.max_renew_batch, 1);
        c.check_duration(Duration::from_secs(15).into()).unwrap();
        c.check_duration(Duration::from_secs(60).into()).unwrap();
        for bad in [
            LeaseDuration::Infinite,
            Duration::from_secs(14).into(),
            Duration::from_secs(61).into(),
        ] {
            let e = c.check_duration(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert_eq!(e.field(), Some("lease_duration"));
        }
        c.with_infinite_leases(true)
            .check_duration(LeaseDuration::Infinite)
            .unwrap();
    }
}
