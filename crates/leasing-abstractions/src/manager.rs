//! [`LeaseManager`]: acquires leases and runs their renewal.

use crate::error::Operation;
use crate::error::{ErrorKind, LeaseError, Result};
use crate::lease::{Lease, LeaseShared};
use crate::options::{after, safety_window, scale, AcquireOptions, LeaseOptions};
use crate::provider::{
    AcquireRequest, LeaseGrant, LeaseInfo, LeasePage, LeaseProvider, ListRequest,
};
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

/// Builds a [`LeaseManager`].
#[must_use]
pub struct LeaseManagerBuilder {
    provider: Arc<dyn LeaseProvider>,
    options: LeaseOptions,
    meter: Option<Meter>,
    telemetry: TelemetryOptions,
}

impl fmt::Debug for LeaseManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseManagerBuilder")
            .field("provider", &self.provider)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl LeaseManagerBuilder {
    /// Sets the options.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseDuration, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # fn main() -> leasing_abstractions::Result<()> {
    /// let options = LeaseOptions::default().with_default_lease_duration(Duration::from_secs(10));
    /// let manager = LeaseManager::builder(Arc::new(InMemoryLeaseProvider::new()))
    ///     .options(options)
    ///     .build()?;
    /// assert_eq!(
    ///     manager.options().default_lease_duration,
    ///     LeaseDuration::Finite(Duration::from_secs(10))
    /// );
    /// # Ok(()) }
    /// ```
    pub fn options(mut self, options: LeaseOptions) -> Self {
        self.options = options;
        self
    }

    /// Records metrics on `meter` instead of the global meter provider's
    /// `distributed_leasing` meter.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use opentelemetry::metrics::MeterProvider as _;
    /// # use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    /// let exporter = InMemoryMetricExporter::default(); // or an OTLP or Prometheus exporter
    /// let meters = SdkMeterProvider::builder()
    ///     .with_reader(PeriodicReader::builder(exporter.clone()).build())
    ///     .build();
    /// let manager = LeaseManager::builder(Arc::new(InMemoryLeaseProvider::new()))
    ///     .meter(meters.meter("billing"))
    ///     .build()?;
    /// let _lease = manager.acquire("nightly-report").await?;
    /// # meters.force_flush()?;
    /// # let exported = exporter.get_finished_metrics()?;
    /// # let metrics: Vec<_> = exported.iter().flat_map(|r| r.scope_metrics()).flat_map(|s| s.metrics()).collect();
    /// assert!(metrics.iter().any(|m| m.name() == "leasing.acquisitions.succeeded"));
    /// # Ok(()) }
    /// ```
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Sets the telemetry options.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, TelemetryOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use opentelemetry::metrics::MeterProvider as _;
    /// # use opentelemetry_sdk::metrics::{data::{AggregatedMetrics, MetricData}, InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    /// # let exporter = InMemoryMetricExporter::default();
    /// # let meters = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    /// # let meter = meters.meter("billing");
    /// // Only for a small, fixed set of names: each name is a separate metric series.
    /// let manager = LeaseManager::builder(Arc::new(InMemoryLeaseProvider::new()))
    ///     .meter(meter)
    ///     .telemetry(TelemetryOptions::default().with_lease_name(true))
    ///     .build()?;
    /// let _lease = manager.acquire("nightly-report").await?;
    /// # meters.force_flush()?;
    /// # let mut lease_names = Vec::new();
    /// # for m in exporter.get_finished_metrics()?.iter().flat_map(|r| r.scope_metrics()).flat_map(|s| s.metrics()) {
    /// #     if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
    /// #         for p in sum.data_points() {
    /// #             lease_names.extend(p.attributes().filter(|kv| kv.key.as_str() == "lease.name").map(|kv| kv.value.to_string()));
    /// #         }
    /// #     }
    /// # }
    /// // The exported series carry the `lease.name` attribute.
    /// assert!(lease_names.iter().any(|name| name == "nightly-report"));
    /// # Ok(()) }
    /// ```
    pub fn telemetry(mut self, telemetry: TelemetryOptions) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Validates the options against each other and against the provider.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the rule broken.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{ErrorKind, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # fn main() -> leasing_abstractions::Result<()> {
    /// let provider = Arc::new(InMemoryLeaseProvider::new());
    /// assert!(LeaseManager::builder(provider.clone()).build().is_ok());
    /// // The in-memory provider's shortest lease is 10 ms.
    /// let too_short = LeaseOptions::default()
    ///     .with_default_lease_duration(Duration::from_millis(5));
    /// let err = LeaseManager::builder(provider).options(too_short).build().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// assert_eq!(err.field(), Some("lease_duration"));
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<LeaseManager> {
        self.options.validate()?;
        self.provider
            .capabilities()
            .check_duration(self.options.default_lease_duration)?;
        let meter = self
            .meter
            .unwrap_or_else(|| opentelemetry::global::meter(METER_NAME));
        let metrics = Metrics::new(&meter, self.provider.provider_name(), &self.telemetry);
        Ok(LeaseManager {
            ctx: Arc::new(Ctx::new(self.provider, metrics)),
            options: Arc::new(self.options),
        })
    }
}

impl LeaseManager {
    /// A builder for a manager over `provider`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, LeaseOptions, TelemetryOptions};
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
    /// `Configuration` or `Acquisition` on a failure that waiting cannot fix. Transient
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
    /// one attempt's answer (`Timeout` if it does not come in time; zero waits for it in
    /// full, as in [`acquire`](Self::acquire)); without one the attempt is bounded by the
    /// provider's own call timeout only.
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
        let deadline = match bound {
            Some(t) if t.is_zero() => Some(self.whole_attempt(&request, started)),
            Some(t) => Some(after(started, t)),
            None => None,
        };
        let result = self
            .attempt(&request, deadline)
            .instrument(span.clone())
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => timeout_error(&request.name, bound.unwrap_or_default(), 1, e),
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
        self.provider()
            .inspect(name)
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
        self.provider()
            .list(request)
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
                        ErrorKind::Acquisition,
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
        self.provider()
            .break_lease(name)
            .await
            .map_err(|e| e.or_lease(name, None).with_operation(Operation::Break))
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

    fn prepare(
        &self,
        name: &str,
        options: AcquireOptions,
    ) -> Result<(AcquireRequest, Option<crate::RenewalPolicy>)> {
        let duration = options
            .duration
            .unwrap_or(self.options.default_lease_duration);
        let metadata = options
            .metadata
            .unwrap_or_else(|| self.options.metadata.clone());
        let request = AcquireRequest::new(name, duration, metadata);
        validate_request(&request, &self.provider().capabilities())
            .and_then(|()| self.options.renewal_policy(duration).map(|p| (request, p)))
            .map_err(|e| e.or_lease(name, None).with_operation(Operation::Acquire))
    }

    async fn acquire_loop(
        &self,
        request: AcquireRequest,
        policy: Option<crate::RenewalPolicy>,
        (timeout, retry): (Option<Duration>, Duration),
        span: Span,
    ) -> Result<Lease> {
        let started = Instant::now();
        let deadline = timeout.map(|t| after(started, t));
        // A zero timeout is one attempt, waited for in full (see `acquire`).
        let first_deadline = match timeout {
            Some(t) if t.is_zero() => Some(self.whole_attempt(&request, started)),
            _ => deadline,
        };
        // Subscribed to release notifications only once the name is found held, so that
        // uncontended acquisitions cost the backend no subscription.
        let mut releases = None;
        let mut subscribed = false;
        let mut rng = fastrand::Rng::new();
        let mut attempts: u32 = 0;
        // What the last attempt met, for the error if none succeeds.
        let mut last: Option<LeaseError>;
        // Whether the last attempt found the name held (only then is a release worth
        // waiting for: after a failure, our own release of a late grant would wake us).
        let mut held;
        // The same, for the metrics: a timeout after an answered attempt found the name held
        // is contention (`held`), even if a later attempt was still in flight at the deadline.
        let answered_held = AtomicBool::new(false);
        let finish = |result: Result<Lease>, attempts: u32| {
            span.record("lease.retry_count", attempts.saturating_sub(1));
            match &result {
                Ok(lease) => {
                    span.record("lease.result", RESULT_SUCCESS);
                    span.record("lease.id", lease.lease_id());
                }
                Err(e) => {
                    span.record("lease.result", "failure");
                    span.record("lease.failure_reason", e.kind().as_str());
                    let label = if e.kind() == ErrorKind::Timeout && answered_held.load(Relaxed) {
                        RESULT_HELD
                    } else {
                        acquisition_failure_label(e)
                    };
                    self.ctx
                        .metrics
                        .acquisition(&request.name, label, started.elapsed());
                    tracing::debug!(lease.name = %request.name, error = %e, "lease acquisition failed");
                }
            }
            result.map_err(|e| e.with_operation(Operation::Acquire))
        };
        let timed_out = |attempts: u32, last: Option<LeaseError>| {
            let cause = last.unwrap_or_else(|| held_error(&request.name));
            timeout_error(&request.name, timeout.unwrap_or_default(), attempts, cause)
        };
        loop {
            attempts += 1;
            let bound = if attempts == 1 {
                first_deadline
            } else {
                deadline
            };
            match self.attempt(&request, bound).await {
                Ok(Some(grant)) => {
                    return finish(Ok(self.make_lease(grant, policy, &span, started)), attempts)
                }
                Ok(None) => {
                    held = true;
                    answered_held.store(true, Relaxed);
                    last = Some(held_error(&request.name));
                }
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    return finish(Err(timed_out(attempts, Some(e))), attempts)
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(lease.name = %request.name, error = %e, "acquisition attempt failed; retrying");
                    held = false;
                    answered_held.store(false, Relaxed);
                    last = Some(e);
                }
                Err(e) => return finish(Err(e), attempts),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return finish(Err(timed_out(attempts, last)), attempts);
            }
            if !subscribed {
                subscribed = true;
                releases = self.provider().release_notifications(&request.name);
                if releases.is_some() {
                    // A release between the failed attempt and the subscription would be
                    // missed: look again now that we would hear of the next one.
                    continue;
                }
            }
            let pause = scale(retry, 0.5 + rng.f64());
            let next = after(Instant::now(), pause);
            let wake = deadline.map_or(next, |d| d.min(next));
            if held {
                wait_for_release(&mut releases, &request.name, wake).await;
            } else {
                tokio::time::sleep_until(wake).await;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return finish(Err(timed_out(attempts, last)), attempts);
            }
        }
    }

    /// One attempt ([`attempt_call`](Self::attempt_call)), its backend time recorded in
    /// `leasing.acquisition.attempt.duration` (no waiting between attempts included).
    async fn attempt(
        &self,
        request: &AcquireRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<LeaseGrant>> {
        let started = Instant::now();
        let result = self.attempt_call(request, deadline).await;
        let label = match &result {
            Ok(Some(_)) => RESULT_SUCCESS,
            Ok(None) => RESULT_HELD,
            Err(e) => e.kind().as_str(),
        };
        self.ctx
            .metrics
            .attempt(&request.name, label, started.elapsed());
        result
    }

    /// One provider call, run in its own task so that a grant arriving after the caller
    /// gave up (dropped future, timeout) is released instead of leaked.
    async fn attempt_call(
        &self,
        request: &AcquireRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<LeaseGrant>> {
        let (tx, rx) = oneshot::channel::<Result<Option<LeaseGrant>>>();
        let mut pending = PendingGrant {
            rx,
            provider: Arc::clone(self.provider()),
        };
        let provider = Arc::clone(self.provider());
        let req = request.clone();
        let sent = Instant::now();
        tokio::spawn(
            async move {
                let result = provider.try_acquire(&req).await;
                if let Err(Ok(Some(grant))) = tx.send(result) {
                    tracing::debug!(lease.name = %grant.name, "acquirer gone; releasing the late grant");
                    let _ = provider.release(&grant).await;
                }
            }
            .in_current_span(),
        );
        let received = match deadline {
            Some(d) => tokio::time::timeout_at(d, &mut pending.rx).await.ok(),
            None => Some((&mut pending.rx).await),
        };
        match received {
            Some(Ok(Ok(Some(mut grant)))) => {
                // Validity counts from the earliest instant the request may have left.
                grant.sent_at = grant.sent_at.min(sent);
                let window = grant
                    .duration
                    .as_finite()
                    .map(|d| safety_window(d, self.options.auto_renew_safety_threshold));
                if window.is_some_and(|w| Instant::now() >= after(grant.sent_at, w)) {
                    // The answer took so long that the lease may already have expired and
                    // been granted to someone else: never hand it out.
                    release_detached(self.provider(), grant);
                    return Err(LeaseError::unavailable(
                        "the grant arrived after its safety deadline; released it",
                    )
                    .with_lease_name(&request.name));
                }
                Ok(Some(grant))
            }
            // The backend's own call deadline is a transient failure; only the acquire
            // deadline makes an attempt a `Timeout`.
            Some(Ok(Err(e))) if e.kind() == ErrorKind::Timeout => Err(LeaseError::unavailable(
                format!("the backend call timed out: {}", e.message()),
            )
            .with_lease_name(&request.name)
            .with_source(e)),
            Some(Ok(result)) => result.map_err(|e| e.or_lease(&request.name, None)),
            Some(Err(_)) => Err(LeaseError::new(
                ErrorKind::Acquisition,
                "the acquisition task panicked",
            )
            .with_lease_name(&request.name)),
            None => Err(LeaseError::new(
                ErrorKind::Timeout,
                "the attempt was still waiting for the backend's answer at the acquire deadline",
            )
            .with_lease_name(&request.name)),
        }
    }

    /// The deadline of an attempt that is waited for in full (a zero timeout): a grant is
    /// worthless once its safety window has passed (it would be released, not handed
    /// out), so no attempt waits longer than that; 30 s for an infinite lease.
    fn whole_attempt(&self, request: &AcquireRequest, started: Instant) -> Instant {
        let window = request
            .duration
            .as_finite()
            .map_or(Duration::from_secs(30), |d| {
                safety_window(d, self.options.auto_renew_safety_threshold)
            });
        after(started, window)
    }

    fn make_lease(
        &self,
        grant: LeaseGrant,
        policy: Option<crate::RenewalPolicy>,
        span: &Span,
        started: Instant,
    ) -> Lease {
        let acquire_cx = span.context().span().span_context().clone();
        let elapsed = started.elapsed();
        tracing::info!(
            lease.name = %grant.name,
            lease.id = %grant.lease_id,
            fencing_token = grant.fencing_token,
            "lease acquired"
        );
        self.ctx
            .metrics
            .acquisition(&grant.name, RESULT_SUCCESS, elapsed);
        let shared = Arc::new(LeaseShared::new(
            grant,
            policy,
            self.options.auto_renew_safety_threshold,
            Arc::clone(&self.ctx) as Arc<dyn crate::lease::LeaseHost>,
            acquire_cx,
        ));
        self.ctx.register(&shared);
        Lease::new(shared)
    }
}

/// The `Timeout` of an acquisition: the whole timeout, the attempts, and what the last
/// attempt met (kept as the source).
fn timeout_error(name: &str, timeout: Duration, attempts: u32, cause: LeaseError) -> LeaseError {
    let tries = if attempts == 1 { "attempt" } else { "attempts" };
    LeaseError::new(
        ErrorKind::Timeout,
        format!(
            "not acquired within {timeout:?} ({attempts} {tries}); last attempt: {}",
            cause.message()
        ),
    )
    .with_lease_name(name)
    .with_source(cause)
}

/// What an attempt that found the name held met.
fn held_error(name: &str) -> LeaseError {
    LeaseError::new(ErrorKind::Conflict, "the name is held by another owner").with_lease_name(name)
}

/// The receiving end of one acquisition attempt. Dropped while a grant sits in the channel
/// (the caller gave up in the very instant the grant arrived), it releases the grant, so
/// a cancelled `acquire` never leaves a lease held. The sending task releases grants that
/// arrive after the drop.
struct PendingGrant {
    rx: oneshot::Receiver<Result<Option<LeaseGrant>>>,
    provider: Arc<dyn LeaseProvider>,
}

impl Drop for PendingGrant {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok(Some(grant))) = self.rx.try_recv() {
            release_detached(&self.provider, grant);
        }
    }
}

/// Releases `grant` in the background, if there is a runtime to do it on (otherwise the
/// backend expires it).
fn release_detached(provider: &Arc<dyn LeaseProvider>, grant: LeaseGrant) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let provider = Arc::clone(provider);
        handle.spawn(async move {
            let _ = provider.release(&grant).await;
        });
    }
}

/// After missing notifications, how soon a waiter looks again (not at once: under heavy
/// release churn it would otherwise spin).
const LAGGED_RETRY: Duration = Duration::from_millis(20);

/// Waits until `wake`, or until `name` is reported released.
async fn wait_for_release(
    releases: &mut Option<broadcast::Receiver<String>>,
    name: &str,
    wake: Instant,
) {
    let sleep = tokio::time::sleep_until(wake);
    tokio::pin!(sleep);
    loop {
        let Some(rx) = releases.as_mut() else {
            sleep.await;
            return;
        };
        tokio::select! {
            () = &mut sleep => return,
            msg = rx.recv() => match msg {
                Ok(released) if released == name => return,
                Ok(_) => {}
                // Missed messages may include ours: look again soon.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let soon = Instant::now() + LAGGED_RETRY;
                    if soon < sleep.deadline() {
                        sleep.as_mut().reset(soon);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => *releases = None,
            },
        }
    }
}
