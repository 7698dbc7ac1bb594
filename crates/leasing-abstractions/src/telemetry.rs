//! OpenTelemetry metrics (SPEC §7) and the `tracing` span names.
//!
//! Instruments, all on the meter `distributed_leasing`, with attributes `provider` and
//! `result` (and `lease.name` only when [`TelemetryOptions::include_lease_name`] is set):
//!
//! | instrument | kind | unit |
//! |---|---|---|
//! | `leasing.acquisitions.total` | counter | `{acquisition}` |
//! | `leasing.acquisitions.succeeded` | counter | `{acquisition}` |
//! | `leasing.acquisitions.failed` | counter | `{acquisition}` |
//! | `leasing.acquisition.duration` | histogram | `ms` |
//! | `leasing.renewals.total` | counter | `{renewal}` |
//! | `leasing.renewals.succeeded` | counter | `{renewal}` |
//! | `leasing.renewals.failed` | counter | `{renewal}` |
//! | `leasing.renewal.duration` | histogram | `ms` |
//! | `leasing.leases_lost.total` | counter | `{lease}` |
//! | `leasing.releases.total` | counter | `{lease}` |
//! | `leasing.lease.duration` | histogram (time held) | `s` |
//! | `leasing.active_leases.current` | up-down counter (a gauge once exported) | `{lease}` |
//!
//! Spans: [`SPAN_ACQUIRE`], [`SPAN_RENEW`], [`SPAN_AUTO_RENEWAL`], [`SPAN_RELEASE`], with the
//! fields `lease.name`, `lease.id`, `lease.provider`, `lease.duration`, `lease.result`,
//! `lease.retry_count`, `lease.failure_reason`. Renewal spans carry an OpenTelemetry link
//! to the acquisition's span when `tracing-opentelemetry` is installed.

use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};
use opentelemetry::KeyValue;
use std::time::Duration;

/// Name of the meter the instruments are created on.
pub const METER_NAME: &str = "distributed_leasing";
/// Span around an acquisition (all its attempts).
pub const SPAN_ACQUIRE: &str = "Lease.Acquire";
/// Span around one explicit renewal.
pub const SPAN_RENEW: &str = "Lease.Renew";
/// Span around one background renewal.
pub const SPAN_AUTO_RENEWAL: &str = "Lease.AutoRenewal";
/// Span around a release.
pub const SPAN_RELEASE: &str = "Lease.Release";

/// Telemetry choices of a manager.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TelemetryOptions {
    /// Add the `lease.name` attribute to metrics. Off by default: names are unbounded and
    /// blow up metric cardinality.
    pub include_lease_name: bool,
}

impl TelemetryOptions {
    /// Sets [`include_lease_name`](Self::include_lease_name).
    pub fn with_lease_name(mut self, yes: bool) -> Self {
        self.include_lease_name = yes;
        self
    }
}

/// Result label for successful operations.
pub(crate) const RESULT_SUCCESS: &str = "success";

#[derive(Debug)]
pub(crate) struct Metrics {
    provider: &'static str,
    include_name: bool,
    acquisitions_total: Counter<u64>,
    acquisitions_succeeded: Counter<u64>,
    acquisitions_failed: Counter<u64>,
    acquisition_duration: Histogram<f64>,
    renewals_total: Counter<u64>,
    renewals_succeeded: Counter<u64>,
    renewals_failed: Counter<u64>,
    renewal_duration: Histogram<f64>,
    leases_lost: Counter<u64>,
    releases: Counter<u64>,
    lease_duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

impl Metrics {
    pub(crate) fn new(meter: &Meter, provider: &'static str, options: &TelemetryOptions) -> Self {
        let counter = |name: &'static str, unit: &'static str, desc: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(desc)
                .build()
        };
        let histogram = |name: &'static str, unit: &'static str, desc: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit(unit)
                .with_description(desc)
                .build()
        };
        Self {
            provider,
            include_name: options.include_lease_name,
            acquisitions_total: counter(
                "leasing.acquisitions.total",
                "{acquisition}",
                "Lease acquisitions attempted",
            ),
            acquisitions_succeeded: counter(
                "leasing.acquisitions.succeeded",
                "{acquisition}",
                "Lease acquisitions that succeeded",
            ),
            acquisitions_failed: counter(
                "leasing.acquisitions.failed",
                "{acquisition}",
                "Lease acquisitions that failed or timed out",
            ),
            acquisition_duration: histogram(
                "leasing.acquisition.duration",
                "ms",
                "Time to acquire a lease, waiting included",
            ),
            renewals_total: counter(
                "leasing.renewals.total",
                "{renewal}",
                "Lease renewals attempted",
            ),
            renewals_succeeded: counter(
                "leasing.renewals.succeeded",
                "{renewal}",
                "Lease renewals that succeeded",
            ),
            renewals_failed: counter(
                "leasing.renewals.failed",
                "{renewal}",
                "Lease renewals that failed",
            ),
            renewal_duration: histogram(
                "leasing.renewal.duration",
                "ms",
                "Time of one renewal round trip",
            ),
            leases_lost: counter(
                "leasing.leases_lost.total",
                "{lease}",
                "Leases lost while held",
            ),
            releases: counter("leasing.releases.total", "{lease}", "Leases released"),
            lease_duration: histogram("leasing.lease.duration", "s", "Time a lease was held"),
            active: meter
                .i64_up_down_counter("leasing.active_leases.current")
                .with_unit("{lease}")
                .with_description("Leases currently held by this process")
                .build(),
        }
    }

    /// Calls `f` with the attributes of one recording, built on the stack.
    fn with_attrs(&self, name: &str, result: Option<&'static str>, f: impl FnOnce(&[KeyValue])) {
        let provider = KeyValue::new("provider", self.provider);
        match (result, self.include_name) {
            (Some(r), false) => f(&[provider, KeyValue::new("result", r)]),
            (None, false) => f(&[provider]),
            (Some(r), true) => f(&[
                provider,
                KeyValue::new("result", r),
                KeyValue::new("lease.name", name.to_owned()),
            ]),
            (None, true) => f(&[provider, KeyValue::new("lease.name", name.to_owned())]),
        }
    }

    pub(crate) fn acquisition(&self, name: &str, result: &'static str, elapsed: Duration) {
        self.with_attrs(name, Some(result), |a| {
            self.acquisitions_total.add(1, a);
            if result == RESULT_SUCCESS {
                self.acquisitions_succeeded.add(1, a);
            } else {
                self.acquisitions_failed.add(1, a);
            }
            self.acquisition_duration.record(ms(elapsed), a);
        });
        if result == RESULT_SUCCESS {
            self.with_attrs(name, None, |a| self.active.add(1, a));
        }
    }

    pub(crate) fn renewal(&self, name: &str, result: &'static str, elapsed: Duration) {
        self.with_attrs(name, Some(result), |a| {
            self.renewals_total.add(1, a);
            if result == RESULT_SUCCESS {
                self.renewals_succeeded.add(1, a);
            } else {
                self.renewals_failed.add(1, a);
            }
            self.renewal_duration.record(ms(elapsed), a);
        });
    }

    /// A held lease ended: `result` is `released` or `lost`.
    pub(crate) fn ended(&self, name: &str, result: &'static str, held: Duration) {
        self.with_attrs(name, Some(result), |a| {
            if result == "lost" {
                self.leases_lost.add(1, a);
            } else {
                self.releases.add(1, a);
            }
            self.lease_duration.record(held.as_secs_f64(), a);
        });
        self.with_attrs(name, None, |a| self.active.add(-1, a));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
