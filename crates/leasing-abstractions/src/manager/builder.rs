//! The builder of a [`LeaseManager`]: provider, options, meter and telemetry.

use super::*;

/// Builds a [`LeaseManager`].
#[must_use]
pub struct LeaseManagerBuilder {
    pub(super) provider: Arc<dyn LeaseProvider>,
    pub(super) options: LeaseOptions,
    pub(super) meter: Option<Meter>,
    pub(super) telemetry: TelemetryOptions,
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
    /// # use leasing_abstractions::{InMemoryLeaseProvider, LeaseManager, telemetry::TelemetryOptions};
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
