//! OpenTelemetry metrics and the `tracing` span names.
//!
//! Instruments, all on the meter `distributed_leasing`, with attributes `provider` and
//! `result` (and `lease.name` only when [`TelemetryOptions::include_lease_name`] is set;
//! the `.current` up-down counters have no `result`, and `leasing.health.status` has
//! `provider` and `check` only):
//!
//! | instrument | kind | unit |
//! |---|---|---|
//! | `leasing.acquisitions.total` | counter (succeeded + contended + failed) | `{acquisition}` |
//! | `leasing.acquisitions.succeeded` | counter | `{acquisition}` |
//! | `leasing.acquisitions.contended` | counter (`result="held"`: the name stayed held) | `{acquisition}` |
//! | `leasing.acquisitions.failed` | counter (backend errors, timeouts of the backend) | `{acquisition}` |
//! | `leasing.acquisition.duration` | histogram (whole call, waiting included) | `ms` |
//! | `leasing.acquisition.attempt.duration` | histogram (one backend attempt, no waiting) | `ms` |
//! | `leasing.renewals.total` | counter | `{renewal}` |
//! | `leasing.renewals.succeeded` | counter | `{renewal}` |
//! | `leasing.renewals.failed` | counter | `{renewal}` |
//! | `leasing.renewal.duration` | histogram | `ms` |
//! | `leasing.leases_lost.total` | counter | `{lease}` |
//! | `leasing.releases.total` | counter | `{lease}` |
//! | `leasing.lease.duration` | histogram (time held) | `s` |
//! | `leasing.active_leases.current` | up-down counter (a gauge once exported) | `{lease}` |
//! | `leasing.at_risk_leases.current` | up-down counter (held leases now at risk) | `{lease}` |
//! | `leasing.health.status` | gauge (0 healthy, 1 degraded, 2 unhealthy) | `{status}` |
//! | `leasing.election.transitions` | counter (`result` = `elected`, `resigned`, `lost`) | `{transition}` |
//! | `leasing.election.leading.current` | up-down counter (elections this process leads) | `{election}` |
//! | `leasing.semaphore.permits.current` | up-down counter (permits this process holds) | `{permit}` |
//! | `leasing.semaphore.waiters.current` | up-down counter (callers waiting for a permit) | `{waiter}` |
//!
//! An acquisition that did not get the lease only because someone else holds the name (a
//! `try_acquire` answering `None`; an `acquire` whose timeout passed with
//! the last answered attempt finding the name held) is *contention*: `result="held"`, counted in
//! `leasing.acquisitions.contended` and not in `leasing.acquisitions.failed`.
//!
//! Spans: [`SPAN_ACQUIRE`], [`SPAN_RENEW`], [`SPAN_AUTO_RENEWAL`], [`SPAN_RELEASE`], with the
//! fields `lease.name`, `lease.id`, `lease.provider`, `lease.duration`, `lease.result`,
//! `lease.retry_count`, `lease.failure_reason`. Renewal spans carry an OpenTelemetry link
//! to the acquisition's span when `tracing-opentelemetry` is installed.

use crate::error::{ErrorKind, LeaseError};
use crate::health::HealthStatus;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
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
/// Result label of an acquisition (or attempt) that found the name held by someone else.
pub(crate) const RESULT_HELD: &str = "held";

/// The result label of an acquisition that did not get the lease: [`RESULT_HELD`] for
/// contention, else the error's kind. (A wait that timed out after an attempt found the
/// name held is labelled `held` by the acquire loop, which knows it.)
pub(crate) fn acquisition_failure_label(e: &LeaseError) -> &'static str {
    match e.kind() {
        ErrorKind::Conflict => RESULT_HELD,
        kind => kind.as_str(),
    }
}

#[derive(Debug)]
pub(crate) struct Metrics {
    provider: &'static str,
    include_name: bool,
    acquisitions_total: Counter<u64>,
    acquisitions_succeeded: Counter<u64>,
    acquisitions_contended: Counter<u64>,
    acquisitions_failed: Counter<u64>,
    acquisition_duration: Histogram<f64>,
    attempt_duration: Histogram<f64>,
    renewals_total: Counter<u64>,
    renewals_succeeded: Counter<u64>,
    renewals_failed: Counter<u64>,
    renewal_duration: Histogram<f64>,
    leases_lost: Counter<u64>,
    releases: Counter<u64>,
    lease_duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    at_risk: UpDownCounter<i64>,
    health: Gauge<i64>,
    election_transitions: Counter<u64>,
    leading: UpDownCounter<i64>,
    permits: UpDownCounter<i64>,
    permit_waiters: UpDownCounter<i64>,
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
            acquisitions_contended: counter(
                "leasing.acquisitions.contended",
                "{acquisition}",
                "Lease acquisitions that did not get the lease because another owner held it",
            ),
            acquisitions_failed: counter(
                "leasing.acquisitions.failed",
                "{acquisition}",
                "Lease acquisitions that failed (errors and backend timeouts, not contention)",
            ),
            acquisition_duration: histogram(
                "leasing.acquisition.duration",
                "ms",
                "Time to acquire a lease, waiting included",
            ),
            attempt_duration: histogram(
                "leasing.acquisition.attempt.duration",
                "ms",
                "Time of one acquisition attempt's backend call, waiting excluded",
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
            at_risk: meter
                .i64_up_down_counter("leasing.at_risk_leases.current")
                .with_unit("{lease}")
                .with_description("Leases held by this process whose renewal is failing")
                .build(),
            health: meter
                .i64_gauge("leasing.health.status")
                .with_unit("{status}")
                .with_description("Last health check result: 0 healthy, 1 degraded, 2 unhealthy")
                .build(),
            election_transitions: counter(
                "leasing.election.transitions",
                "{transition}",
                "Leadership gained (elected) or ended (resigned, lost) by this process",
            ),
            leading: meter
                .i64_up_down_counter("leasing.election.leading.current")
                .with_unit("{election}")
                .with_description("Elections this process currently leads")
                .build(),
            permits: meter
                .i64_up_down_counter("leasing.semaphore.permits.current")
                .with_unit("{permit}")
                .with_description("Semaphore permits this process currently holds")
                .build(),
            permit_waiters: meter
                .i64_up_down_counter("leasing.semaphore.waiters.current")
                .with_unit("{waiter}")
                .with_description("Callers of this process waiting for a semaphore permit")
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
            match result {
                RESULT_SUCCESS => self.acquisitions_succeeded.add(1, a),
                RESULT_HELD => self.acquisitions_contended.add(1, a),
                _ => self.acquisitions_failed.add(1, a),
            }
            self.acquisition_duration.record(ms(elapsed), a);
        });
        if result == RESULT_SUCCESS {
            self.with_attrs(name, None, |a| self.active.add(1, a));
        }
    }

    /// One acquisition attempt's backend call: `result` is `success`, `held` or the
    /// error's kind; `elapsed` excludes any waiting between attempts.
    pub(crate) fn attempt(&self, name: &str, result: &'static str, elapsed: Duration) {
        self.with_attrs(name, Some(result), |a| {
            self.attempt_duration.record(ms(elapsed), a);
        });
    }

    /// A held lease went at risk (`+1`), or back to held or ended while at risk (`-1`).
    pub(crate) fn at_risk(&self, name: &str, delta: i64) {
        self.with_attrs(name, None, |a| self.at_risk.add(delta, a));
    }

    /// The result of a health check: `check` is `provider` (a probe) or `leases`.
    pub(crate) fn health(&self, check: &'static str, status: HealthStatus) {
        let value = match status {
            HealthStatus::Healthy => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Unhealthy => 2,
        };
        self.health.record(
            value,
            &[
                KeyValue::new("provider", self.provider),
                KeyValue::new("check", check),
            ],
        );
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

impl Metrics {
    /// A leadership transition of election `name`: `elected`, `resigned` or `lost`.
    pub(crate) fn election(&self, name: &str, result: &'static str) {
        self.with_attrs(name, Some(result), |a| self.election_transitions.add(1, a));
        let delta = if result == "elected" { 1 } else { -1 };
        self.with_attrs(name, None, |a| self.leading.add(delta, a));
    }

    /// Permits of semaphore `name` held by this process, `+1` or `-1`.
    pub(crate) fn permits(&self, name: &str, delta: i64) {
        self.with_attrs(name, None, |a| self.permits.add(delta, a));
    }

    /// Callers waiting for a permit of semaphore `name`, `+1` or `-1`.
    pub(crate) fn permit_waiters(&self, name: &str, delta: i64) {
        self.with_attrs(name, None, |a| self.permit_waiters.add(delta, a));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
