//! [`LeaseManager`]: acquires leases and runs their renewal.

use crate::contract::{
    AcquireRequest, LeaseGrant, LeaseInfo, LeasePage, LeaseProvider, ListRequest,
};
use crate::error::Operation;
use crate::error::{ErrorKind, LeaseError, Result};
use crate::lease::{Lease, LeaseShared};
use crate::options::{after, safety_window, scale, AcquireOptions, LeaseOptions};
use crate::renewal::Ctx;
use crate::telemetry::{
    acquisition_failure_label, Metrics, TelemetryOptions, METER_NAME, RESULT_HELD, RESULT_SUCCESS,
};
use crate::validate::validate_request;
use opentelemetry::metrics::Meter;
use opentelemetry::trace::TraceContextExt;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

mod acquire;
mod builder;
mod health;

use acquire::timeout_error;
pub use builder::LeaseManagerBuilder;

/// Acquires leases from one provider and renews them.
///
/// Cheap to clone; clones share the renewal scheduler. See the crate docs for an example.
#[derive(Clone)]
pub struct LeaseManager {
    ctx: Arc<Ctx>,
    options: Arc<LeaseOptions>,
}

impl fmt::Debug for LeaseManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseManager")
            .field("provider", &self.ctx.provider)
            .field("options", &self.options)
            .finish()
    }
}

impl LeaseManager {
    /// A builder for a manager over `provider`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, telemetry::TelemetryOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # fn main() -> leasing_abstractions::Result<()> {
    /// let manager = LeaseManager::builder(Arc::new(InMemoryLeaseProvider::new()))
    ///     .options(LeaseOptions::default().with_acquire_timeout(Duration::from_secs(5)))
    ///     .telemetry(TelemetryOptions::default())
    ///     .build()?;
    /// assert_eq!(manager.options().acquire_timeout, Some(Duration::from_secs(5)));
    /// # Ok(()) }
    /// ```
    pub fn builder(provider: Arc<dyn LeaseProvider>) -> LeaseManagerBuilder {
        LeaseManagerBuilder {
            provider,
            options: LeaseOptions::default(),
            meter: None,
            telemetry: TelemetryOptions::default(),
        }
    }

    /// A manager over `provider` with `options` and the global meter.
    ///
    /// # Errors
    /// See [`LeaseManagerBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{ErrorKind, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// let provider = Arc::new(InMemoryLeaseProvider::new());
    /// let manager = LeaseManager::new(provider.clone(), LeaseOptions::default())?;
    /// assert!(manager.acquire("nightly-report").await?.is_held());
    /// // Options are checked up front: the safety threshold must lie in 0.5–0.95.
    /// let bad = LeaseOptions::default().with_auto_renew_safety_threshold(0.99);
    /// let err = LeaseManager::new(provider, bad).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// # Ok(()) }
    /// ```
    pub fn new(provider: Arc<dyn LeaseProvider>, options: LeaseOptions) -> Result<Self> {
        Self::builder(provider).options(options).build()
    }

    /// The manager's options.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # fn main() -> leasing_abstractions::Result<()> {
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// assert_eq!(manager.options().acquire_timeout, Some(Duration::from_secs(30)));
    /// assert!(manager.options().auto_renew);
    /// # Ok(()) }
    /// ```
    pub fn options(&self) -> &LeaseOptions {
        &self.options
    }

    /// The provider.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # fn main() -> leasing_abstractions::Result<()> {
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// assert_eq!(manager.provider().provider_name(), "in-memory");
    /// assert!(manager.provider().capabilities().listing);
    /// # Ok(()) }
    /// ```
    pub fn provider(&self) -> &Arc<dyn LeaseProvider> {
        &self.ctx.provider
    }

    /// Acquires `name`, waiting up to the acquire timeout.
    ///
    /// The first attempt is always made. A timeout of zero makes exactly that one attempt
    /// and waits for its answer (at most the lease's safety window, after which a grant
    /// would be refused anyway): the lease, or `Timeout` if the name is held. Otherwise attempts repeat (woken by release
    /// notifications, or after a jittered `acquire_retry_interval`) until the timeout.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name, before any call; `Timeout` when the timeout passes,
    /// whose message gives the whole timeout and the attempts made and whose [`source`](std::error::Error::source) is what the last attempt met
    /// (`Conflict`: the name was held; or the backend's error); `Unauthorized`,
    /// `Configuration` or `Unexpected` on a failure that waiting cannot fix. Transient
    /// backend failures are retried until the timeout.
    ///
    /// # Cancellation safety
    /// Cancel-safe: if the future is dropped, nothing stays held (a grant that arrives
    /// after the drop is released at once).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{ErrorKind, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> leasing_abstractions::Result<()> {
    /// let options = LeaseOptions::default().with_acquire_timeout(Duration::from_secs(5));
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), options)?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert!(lease.is_held());
    /// // A second acquirer waits for the name, up to the timeout.
    /// let err = manager.acquire("nightly-report").await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Timeout);
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, name: &str) -> Result<Lease> {
        self.acquire_with(name, AcquireOptions::default()).await
    }

    /// Acquires `name` with per-call overrides of duration, timeout and metadata.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), plus `InvalidArgument` for overrides that break the
    /// option rules.
    ///
    /// # Cancellation safety
    /// As [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{AcquireOptions, InMemoryLeaseProvider, LeaseDuration, LeaseManager, LeaseOptions, Metadata};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let options = AcquireOptions::new()
    ///     .duration(Duration::from_secs(10))
    ///     .metadata(Metadata::from([("owner".into(), "worker-7".into())]));
    /// let lease = manager.acquire_with("nightly-report", options).await?;
    /// assert_eq!(lease.duration(), LeaseDuration::Finite(Duration::from_secs(10)));
    /// assert_eq!(lease.metadata()["owner"], "worker-7");
    /// # Ok(()) }
    /// ```
    pub async fn acquire_with(&self, name: &str, options: AcquireOptions) -> Result<Lease> {
        let timeout = options.timeout.unwrap_or(self.options.acquire_timeout);
        let retry = options
            .retry_interval
            .unwrap_or(self.options.acquire_retry_interval);
        if retry.is_zero() {
            return Err(LeaseError::invalid_argument(
                "retry_interval",
                "must be greater than zero",
            )
            .with_lease_name(name)
            .with_operation(Operation::Acquire));
        }
        let (request, policy) = self.prepare(name, options)?;
        let span = crate::spans::acquire(&request, self.provider().provider_name());
        self.acquire_loop(request, policy, (timeout, retry), span.clone())
            .instrument(span)
            .await
    }

    /// One attempt: the lease if `name` is free, `None` if someone holds it.
    ///
    /// Keep the answer: `try_acquire(..).await?;` compiles without a warning (the compiler's
    /// `must_use` does not look inside an `Option`), and the lease it drops is released at
    /// once. Bind it, e.g. `let Some(lease) = manager.try_acquire(name).await? else { .. }`.
    ///
    /// # Errors
    /// `InvalidArgument` for bad input; the provider's error otherwise.
    ///
    /// # Cancellation safety
    /// As [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let Some(lease) = manager.try_acquire("nightly-report").await? else {
    ///     return Ok(()); // another instance runs it
    /// };
    /// // While it is held, another attempt answers `None` at once.
    /// assert!(manager.try_acquire("nightly-report").await?.is_none());
    /// lease.release().await?;
    /// assert!(manager.try_acquire("nightly-report").await?.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self, name: &str) -> Result<Option<Lease>> {
        self.try_acquire_with(name, AcquireOptions::default()).await
    }

    /// One attempt with per-call overrides. A timeout override bounds the wait for that
    /// one attempt's answer (`Timeout` if it does not come in time); without one (or with
    /// zero) the wait is bounded by the lease's safety window (30 s for an infinite lease):
    /// a grant arriving later could already have expired, so it is released and the call
    /// ends in `Timeout`.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    ///
    /// # Cancellation safety
    /// As [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{AcquireOptions, InMemoryLeaseProvider, LeaseDuration, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let options = AcquireOptions::new()
    ///     .duration(Duration::from_secs(5))
    ///     .timeout(Some(Duration::from_secs(1))); // bound the wait for the answer
    /// let lease = manager.try_acquire_with("cache-warmup", options.clone()).await?;
    /// let lease = lease.expect("the name is free");
    /// assert_eq!(lease.duration(), LeaseDuration::Finite(Duration::from_secs(5)));
    /// assert!(manager.try_acquire_with("cache-warmup", options).await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire_with(
        &self,
        name: &str,
        options: AcquireOptions,
    ) -> Result<Option<Lease>> {
        let bound = options.timeout.flatten();
        let (request, policy) = self.prepare(name, options)?;
        let span = crate::spans::acquire(&request, self.provider().provider_name());
        let started = Instant::now();
        // The core bounds every attempt: by the caller's timeout, else by the lease's
        // safety window (a grant that arrives later is released, never handed out).
        let deadline = match bound {
            Some(t) if !t.is_zero() => after(started, t),
            _ => self.whole_attempt(&request, started),
        };
        let result = self
            .attempt(&request, Some(deadline))
            .instrument(span.clone())
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => timeout_error(
                    &request.name,
                    deadline.saturating_duration_since(started),
                    1,
                    e,
                ),
                _ => e,
            })
            .map_err(|e| e.with_operation(Operation::Acquire));
        let result = result.map(|g| g.map(|g| self.make_lease(g, policy, &span, started)));
        let label = match &result {
            Ok(Some(_)) => RESULT_SUCCESS,
            Ok(None) => ErrorKind::Conflict.as_str(),
            Err(e) => e.kind().as_str(),
        };
        span.record("lease.result", label);
        span.record("lease.retry_count", 0);
        if label != RESULT_SUCCESS {
            span.record("lease.failure_reason", label);
        }
        if !matches!(result, Ok(Some(_))) {
            // Metrics tell contention (`held`) from failures; the span keeps the error kind.
            let metric_label = match &result {
                Err(e) => acquisition_failure_label(e),
                _ => RESULT_HELD,
            };
            self.ctx
                .metrics
                .acquisition(&request.name, metric_label, started.elapsed());
        }
        result
    }

    /// The current holder of `name`, if any.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name; the provider's error otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, Metadata};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// let host = Metadata::from([("host".into(), "worker-7".into())]);
    /// let options = LeaseOptions::default().with_metadata(host);
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), options)?;
    /// assert!(manager.inspect("nightly-report").await?.is_none());
    /// let lease = manager.acquire("nightly-report").await?;
    /// let holder = manager.inspect("nightly-report").await?.expect("held");
    /// assert_eq!(holder.metadata["host"], "worker-7");
    /// assert_eq!(holder.fencing_token, lease.fencing_token());
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, name: &str) -> Result<Option<LeaseInfo>> {
        crate::name::validate_name(name).map_err(|e| e.with_operation(Operation::Inspect))?;
        self.operator_call(Operation::Inspect, self.provider().inspect(name))
            .await
            .map_err(|e| e.or_lease(name, None).with_operation(Operation::Inspect))
    }

    /// One page of the leases currently held whose names start with `request.prefix`.
    /// Start with [`ListRequest::new`] and pass each page's cursor to the next request
    /// until it is `None`; [`list_all`](Self::list_all) does that.
    ///
    /// # Errors
    /// `InvalidArgument` for a prefix no lease name can start with (over-long, or a
    /// character outside the name rules); `Unsupported` if the provider cannot list (see
    /// [`ProviderCapabilities::listing`](crate::ProviderCapabilities::listing)); the
    /// provider's error otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, ListRequest};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let _a = manager.acquire("jobs/backup").await?;
    /// let _b = manager.acquire("jobs/reindex").await?;
    /// let first = manager.list(&ListRequest::new("jobs/").with_limit(1)).await?;
    /// assert_eq!(first.leases.len(), 1);
    /// let next = ListRequest::new("jobs/").with_limit(1).with_cursor(first.cursor);
    /// let second = manager.list(&next).await?;
    /// assert_eq!(second.leases.len(), 1);
    /// assert_ne!(first.leases[0].name, second.leases[0].name);
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, request: &ListRequest) -> Result<LeasePage> {
        crate::name::validate_prefix(&request.prefix)
            .map_err(|e| e.with_operation(Operation::List))?;
        self.operator_call(Operation::List, self.provider().list(request))
            .await
            .map_err(|e| e.with_operation(Operation::List))
    }

    /// Every lease currently held whose name starts with `prefix`, paging through
    /// [`list`](Self::list). Not a snapshot: leases acquired or released meanwhile may or
    /// may not appear.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let _a = manager.acquire("jobs/reindex").await?;
    /// let _b = manager.acquire("jobs/backup").await?;
    /// let _c = manager.acquire("cron/cleanup").await?;
    /// let held = manager.list_all("jobs/").await?;
    /// let mut names: Vec<String> = held.into_iter().map(|info| info.name).collect();
    /// names.sort(); // the order is the backend's
    /// assert_eq!(names, ["jobs/backup", "jobs/reindex"]);
    /// # Ok(()) }
    /// ```
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<LeaseInfo>> {
        let mut all = Vec::new();
        let mut request = ListRequest::new(prefix);
        loop {
            let page = self.list(&request).await?;
            all.extend(page.leases);
            match page.cursor {
                Some(c) if request.cursor.as_deref() != Some(c.as_str()) => {
                    request = request.with_cursor(Some(c));
                }
                Some(_) => {
                    return Err(LeaseError::new(
                        ErrorKind::Unexpected,
                        "the provider returned the same listing cursor twice",
                    )
                    .with_operation(Operation::List))
                }
                None => return Ok(all),
            }
        }
    }

    /// Breaks whatever lease holds `name` (operator action). `true` if one was broken.
    ///
    /// The name is free at once; the broken holder learns it at its next renewal and until
    /// then still answers `is_held() == true` (this is the operator overriding the
    /// exclusion promise: break only a holder known to be gone or stuck; fencing tokens
    /// still reject its late writes).
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name; the provider's error otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{ErrorKind, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert!(manager.break_lease("nightly-report").await?);
    /// // The name is free at once...
    /// assert!(manager.try_acquire("nightly-report").await?.is_some());
    /// // ...and the old holder learns it at its next renewal.
    /// assert_eq!(lease.renew().await.unwrap_err().kind(), ErrorKind::Lost);
    /// assert!(!lease.is_held());
    /// # Ok(()) }
    /// ```
    pub async fn break_lease(&self, name: &str) -> Result<bool> {
        crate::name::validate_name(name).map_err(|e| e.with_operation(Operation::Break))?;
        self.operator_call(Operation::Break, self.provider().break_lease(name))
            .await
            .map_err(|e| e.or_lease(name, None).with_operation(Operation::Break))
    }

    /// An operator call (inspect, list, break), bounded by the options' `call_timeout`.
    async fn operator_call<T>(
        &self,
        operation: Operation,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let deadline = crate::options::after(Instant::now(), self.options.call_timeout);
        crate::contract::within(deadline, operation, call).await
    }

    /// Snapshot of the leases acquired through this manager whose handles are alive:
    /// `(name, state)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, LeaseState};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert_eq!(manager.held_leases(), [("nightly-report".to_owned(), LeaseState::Held)]);
    /// drop(lease);
    /// assert!(manager.held_leases().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn held_leases(&self) -> Vec<(String, crate::LeaseState)> {
        self.ctx
            .held()
            .iter()
            .map(|l| {
                // Asking declares a loss at the deadline, as the lease's accessors do.
                l.check_deadline();
                (l.grant.name.clone(), l.state())
            })
            .collect()
    }

    /// The manager's instruments (health checks record on them).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }
}
