//! The `tracing` spans of lease operations, built in one place: every span carries the
//! same `lease.*` fields (see [`crate::telemetry`] for the names).

use crate::contract::{AcquireRequest, LeaseGrant};
use crate::error::Result;
use crate::telemetry::{RESULT_SUCCESS, SPAN_ACQUIRE, SPAN_AUTO_RENEWAL, SPAN_RELEASE, SPAN_RENEW};
use opentelemetry::trace::SpanContext;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A span named `$name` (a constant: `tracing` needs it at compile time) with the lease
/// fields; `lease.id` and the outcome fields are filled in later where unknown.
macro_rules! lease_span {
    ($name:expr, $lease_name:expr, $provider:expr, $duration:expr) => {
        tracing::info_span!(
            $name,
            lease.name = %$lease_name,
            lease.id = tracing::field::Empty,
            lease.provider = $provider,
            lease.duration = ?$duration,
            lease.result = tracing::field::Empty,
            lease.retry_count = tracing::field::Empty,
            lease.failure_reason = tracing::field::Empty,
        )
    };
}

/// Which renewal a span describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// By the renewal engine: `Lease.AutoRenewal`.
    Auto,
    /// By `Lease::renew`: `Lease.Renew`.
    Manual,
}

/// `Lease.Acquire` for `request`.
pub(crate) fn acquire(request: &AcquireRequest, provider: &'static str) -> Span {
    lease_span!(SPAN_ACQUIRE, request.name, provider, request.duration)
}

/// `Lease.AutoRenewal` or `Lease.Renew` for `grant`, linked to its acquisition's trace.
pub(crate) fn renewal(
    kind: Renewal,
    grant: &LeaseGrant,
    provider: &'static str,
    acquired: &SpanContext,
) -> Span {
    let span = match kind {
        Renewal::Auto => lease_span!(SPAN_AUTO_RENEWAL, grant.name, provider, grant.duration),
        Renewal::Manual => lease_span!(SPAN_RENEW, grant.name, provider, grant.duration),
    };
    span.record("lease.id", grant.lease_id.as_str());
    if !span.is_disabled() && acquired.is_valid() {
        span.add_link(acquired.clone());
    }
    span
}

/// `Lease.Release` for `grant`.
pub(crate) fn release(grant: &LeaseGrant, provider: &'static str) -> Span {
    let span = lease_span!(SPAN_RELEASE, grant.name, provider, grant.duration);
    span.record("lease.id", grant.lease_id.as_str());
    span
}

/// Records `lease.result`, `lease.retry_count` and `lease.failure_reason` on `span`.
pub(crate) fn record_result<T>(span: &Span, result: &Result<T>, retries: u32) {
    span.record("lease.retry_count", retries);
    match result {
        Ok(_) => {
            span.record("lease.result", RESULT_SUCCESS);
        }
        Err(e) => {
            span.record("lease.result", "failure");
            span.record("lease.failure_reason", e.kind().as_str());
        }
    }
}
