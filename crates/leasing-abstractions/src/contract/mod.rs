//! The backend contract: [`LeaseProvider`] and what it exchanges with the core.

use crate::error::{LeaseError, Result};
use crate::metadata::Metadata;
use crate::options::LeaseDuration;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use tokio::time::Instant;

mod deadline;
mod layer;

pub(crate) use deadline::bounded;
pub use deadline::{deadline, deadline_passed, time_left, within};
pub use layer::ProviderLayer;

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

/// A provider-owned version of a grant (an ETag, a generation…), for backends that guard
/// renewals and releases with optimistic concurrency (Cosmos DB's If-Match).
///
/// Clones share one value: the provider sets it in `try_acquire`
/// ([`LeaseGrant::with_version`]) and replaces it in `renew` ([`set`](Self::set)) when
/// the backend returns a new one, so the next renewal presents the current version
/// without an extra read. The core never reads or writes it. Equality compares the
/// current values.
#[derive(Clone, Default)]
pub struct GrantVersion(Arc<Mutex<Option<String>>>);

impl GrantVersion {
    /// A version holding `value`.
    pub fn new(value: Option<String>) -> Self {
        Self(Arc::new(Mutex::new(value)))
    }

    /// The current value; `None` if the provider never set one.
    pub fn get(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Replaces the value (seen by every clone of the grant).
    pub fn set(&self, value: impl Into<String>) {
        *self.lock() = Some(value.into());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A poisoned lock only means a panic while replacing a String: the value is whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PartialEq for GrantVersion {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Debug for GrantVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Debug::fmt(&self.get(), f)
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
    /// Strictly increasing per name across grants (docs/guarantees.md, guarantee 2).
    pub fencing_token: u64,
    /// Wall-clock acquisition time (the backend's clock where it has one).
    pub acquired_at: SystemTime,
    /// Duration granted.
    pub duration: LeaseDuration,
    /// Metadata stored with the lease.
    pub metadata: Metadata,
    /// Monotonic instant the acquiring request was *sent*; validity counts from here.
    pub sent_at: Instant,
    /// The provider's version of this grant (see [`GrantVersion`]); empty unless the
    /// provider sets one.
    pub version: GrantVersion,
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
            version: GrantVersion::default(),
        }
    }

    /// Sets the provider's version of the grant (an ETag…).
    #[must_use]
    pub fn with_version(self, version: impl Into<String>) -> Self {
        self.version.set(version);
        self
    }
}

/// When the current holder's lease expires, as far as the backend can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseExpiry {
    /// At this wall-clock time (the backend's clock) unless renewed.
    At(SystemTime),
    /// Never: an infinite lease.
    Never,
    /// The backend does not report it (Azure Blob tells only that a lease is held).
    Unknown,
}

impl LeaseExpiry {
    /// The expiry time, if known and finite.
    pub fn at(self) -> Option<SystemTime> {
        match self {
            LeaseExpiry::At(t) => Some(t),
            LeaseExpiry::Never | LeaseExpiry::Unknown => None,
        }
    }
}

impl From<SystemTime> for LeaseExpiry {
    fn from(t: SystemTime) -> Self {
        LeaseExpiry::At(t)
    }
}

/// `Some(t)` is [`LeaseExpiry::At`], `None` is [`LeaseExpiry::Never`] (an infinite lease).
impl From<Option<SystemTime>> for LeaseExpiry {
    fn from(t: Option<SystemTime>) -> Self {
        t.map_or(LeaseExpiry::Never, LeaseExpiry::At)
    }
}

/// The current holder of a name as an operator sees it. With the `serde` feature times are
/// RFC 3339 and `expires_at` is a time, `"never"` or `"unknown"`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// Lease name.
    pub name: String,
    /// Lease id of the current grant, when the backend exposes it.
    pub lease_id: Option<String>,
    /// Fencing token of the current grant.
    pub fencing_token: u64,
    /// When the current grant was acquired.
    #[cfg_attr(
        feature = "serde",
        serde(
            serialize_with = "crate::serde_impls::serialize_time",
            deserialize_with = "crate::serde_impls::deserialize_time"
        )
    )]
    pub acquired_at: SystemTime,
    /// When it expires unless renewed, infinite, or unknown to the backend.
    pub expires_at: LeaseExpiry,
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
        expires_at: impl Into<LeaseExpiry>,
        metadata: Metadata,
    ) -> Self {
        Self {
            name: name.into(),
            lease_id,
            fencing_token,
            acquired_at,
            expires_at: expires_at.into(),
            metadata,
        }
    }
}

/// One page request of [`LeaseProvider::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListRequest {
    /// Only names starting with this (may be empty: every name).
    pub prefix: String,
    /// Where to continue: the cursor of the previous page; `None` for the first page.
    pub cursor: Option<String>,
    /// The most leases a page holds (a page may hold fewer; every provider keeps to it,
    /// which the conformance suite checks).
    pub limit: usize,
}

impl ListRequest {
    /// The default page size.
    pub const DEFAULT_LIMIT: usize = 100;

    /// The first page of the names starting with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            cursor: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }

    /// Continues after a previous page.
    #[must_use]
    pub fn with_cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Sets the most leases a page holds (0 is taken as 1).
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }
}

/// One page of held leases from [`LeaseProvider::list`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
#[non_exhaustive]
pub struct LeasePage {
    /// Held leases, each with its original lease name, in the backend's order.
    pub leases: Vec<LeaseInfo>,
    /// Pass to the next request to continue; `None` when the listing is complete.
    pub cursor: Option<String>,
}

impl LeasePage {
    /// A page.
    pub fn new(leases: Vec<LeaseInfo>, cursor: Option<String>) -> Self {
        Self { leases, cursor }
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
    /// Most renewals the default [`LeaseProvider::renew_many`] keeps in flight at once
    /// (a backend where each renewal is its own request declares what it can take).
    /// Default 32.
    pub renew_concurrency: usize,
    /// Finite durations must be whole multiples of this (Azure Blob: 1 s). Default 1 ms.
    pub duration_granularity: Duration,
    /// Whether [`LeaseProvider::list`] is implemented.
    pub listing: bool,
}

impl ProviderCapabilities {
    /// The default of [`renew_concurrency`](Self::renew_concurrency).
    pub const DEFAULT_RENEW_CONCURRENCY: usize = 32;

    /// Capabilities with the given finite duration bounds, no infinite leases, batches of
    /// 1, 32 renewals in flight, millisecond granularity, no listing.
    pub fn new(min_duration: Duration, max_duration: Duration) -> Self {
        Self {
            min_duration,
            max_duration,
            infinite_leases: false,
            max_renew_batch: 1,
            renew_concurrency: Self::DEFAULT_RENEW_CONCURRENCY,
            duration_granularity: Duration::from_millis(1),
            listing: false,
        }
    }

    /// Sets the granularity finite durations must be whole multiples of (zero: any).
    pub fn with_duration_granularity(mut self, granularity: Duration) -> Self {
        self.duration_granularity = granularity;
        self
    }

    /// Sets whether [`LeaseProvider::list`] is implemented.
    pub fn with_listing(mut self, yes: bool) -> Self {
        self.listing = yes;
        self
    }

    /// Sets whether infinite leases are accepted.
    pub fn with_infinite_leases(mut self, yes: bool) -> Self {
        self.infinite_leases = yes;
        self
    }

    /// Sets the largest renewal batch; 0 is taken as 1 (a provider always renews at
    /// least one grant per call).
    pub fn with_max_renew_batch(mut self, n: usize) -> Self {
        self.max_renew_batch = n.max(1);
        self
    }

    /// Sets how many renewals the default [`LeaseProvider::renew_many`] keeps in flight;
    /// 0 is taken as 1.
    pub fn with_renew_concurrency(mut self, n: usize) -> Self {
        self.renew_concurrency = n.max(1);
        self
    }

    /// Checks a duration against these bounds and the granularity.
    ///
    /// # Errors
    /// `InvalidArgument` (field `lease_duration`) naming the bounds or the granularity.
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
            LeaseDuration::Finite(d) if !is_multiple(d, self.duration_granularity) => {
                Err(LeaseError::invalid_argument(
                    "lease_duration",
                    format!(
                        "{d:?} is not a whole multiple of {:?}, the granularity this provider accepts",
                        self.duration_granularity
                    ),
                ))
            }
            LeaseDuration::Finite(_) => Ok(()),
        }
    }
}

fn is_multiple(d: Duration, granularity: Duration) -> bool {
    granularity.is_zero() || d.as_nanos() % granularity.as_nanos() == 0
}

/// A boxed, `Send` future: what every [`LeaseProvider`] method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend's lease primitives. Everything about timing lives in the core.
///
/// The core calls every method [`within`] a deadline it chose (the time left before the
/// lease's safety deadline, the caller's timeout, an operator call's bound) and drops the
/// call when it passes. A provider reads it with [`deadline`] or [`time_left`] inside the
/// future it returns (the core sets it while polling that future, not while the method
/// builds it) when it needs it (a quorum protocol's wait, a server-side timeout), and
/// keeps no call timeout,
/// retry loop or sleep of its own: only transport settings (connect and response
/// timeouts, TLS).
///
/// The core validates every request before it calls a provider: names
/// ([`validate_name`](crate::validate_name)), metadata, and durations against
/// [`capabilities`](Self::capabilities) (bounds and granularity). A provider may rely on
/// it and need not validate again.
///
/// To wrap a provider and change one method, implement the trait on the wrapper and
/// forward the rest to the inner provider under `#[deny(clippy::missing_trait_methods)]`,
/// as the impls for `Arc<P>` and `Box<P>` and `FaultInjectingProvider` (feature `testing`)
/// do, so that a method added to the trait later cannot be dropped silently.
///
/// Implementations must meet the guarantees of docs/guarantees.md, which
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
/// use leasing_abstractions::{
///     AcquireRequest, BoxFuture, LeaseError, LeaseGrant, LeaseInfo, LeaseProvider,
///     ProviderCapabilities, Result,
/// };
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
    /// result per grant, in order. The default renews them one by one, at most
    /// [`renew_concurrency`](ProviderCapabilities::renew_concurrency) at once.
    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        use futures::StreamExt;
        let in_flight = self.capabilities().renew_concurrency.max(1);
        // The calls are made up front (a future does nothing until polled): a stream that
        // held the closure would fail rustc's `Send` proof for the boxed future.
        let calls: Vec<_> = grants.iter().map(|g| self.renew(g)).collect();
        Box::pin(
            futures::stream::iter(calls)
                .buffered(in_flight)
                .collect::<Vec<_>>(),
        )
    }

    /// Releases `grant`. Idempotent: a grant already released, expired or taken over is
    /// `Ok(())` and the current holder is left alone.
    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>>;

    /// The current holder of `name`, `None` if free.
    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>>;

    /// Operator force-release. `Ok(true)` if a lease was broken, `Ok(false)` if the name
    /// was free. The broken holder's next renewal must fail as `Lost`.
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

    /// A signal that every lease this provider granted should be renewed now rather than
    /// at its scheduled time; `None` (the default) if the provider never asks.
    ///
    /// For a provider that can tell that a server went away and is answering again (it may
    /// have restarted and forgotten what it granted): the renewals that follow find out at
    /// once whether each grant survived, and a lost one is reported `Lost` within a round
    /// trip of the server's return instead of at its next scheduled renewal. The manager
    /// subscribes once, before it renews anything; a lagged receiver counts as one signal.
    fn renew_now_signals(&self) -> Option<broadcast::Receiver<()>> {
        None
    }

    /// One page of the leases currently held whose names start with `request.prefix`,
    /// each under its original lease name. Providers that implement it say so in
    /// [`ProviderCapabilities::listing`]. The default is an
    /// [`Unsupported`](crate::ErrorKind::Unsupported) error.
    ///
    /// A listing is not a snapshot: leases acquired or released while it pages may or may
    /// not appear. A page is never empty unless its cursor is `None`, and holds at most
    /// `request.limit` leases. The order is the backend's (it differs between backends:
    /// sort the leases if you need an order).
    fn list<'a>(&'a self, _request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        let name = self.provider_name();
        Box::pin(async move {
            Err(LeaseError::new(
                crate::ErrorKind::Unsupported,
                format!("the {name} provider cannot list leases"),
            ))
        })
    }
}

/// Compile-time check that the trait stays object-safe.
fn _object_safe(_: Arc<dyn LeaseProvider>) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_zero_granularity_accepts_any_duration_in_bounds() {
        let caps = ProviderCapabilities::new(Duration::from_secs(15), Duration::from_secs(60))
            .with_duration_granularity(Duration::ZERO);
        caps.check_duration(LeaseDuration::Finite(Duration::from_nanos(15_500_000_001)))
            .expect("no granularity");
        let whole = ProviderCapabilities::new(Duration::from_secs(15), Duration::from_secs(60))
            .with_duration_granularity(Duration::from_secs(1));
        let e = whole
            .check_duration(LeaseDuration::Finite(Duration::from_millis(15_500)))
            .expect_err("15.5 s is not whole seconds");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

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
