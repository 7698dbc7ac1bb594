//! Health checks: a provider probe and a check of the leases a manager holds.

use crate::contract::{AcquireRequest, LeaseProvider};
use crate::error::ErrorKind;
use crate::Metadata;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// Working.
    Healthy,
    /// Working with trouble.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Healthy => "Healthy",
            HealthStatus::Degraded => "Degraded",
            HealthStatus::Unhealthy => "Unhealthy",
        })
    }
}

/// The outcome of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthReport {
    /// Status.
    pub status: HealthStatus,
    /// One line for humans.
    pub description: String,
    /// Details (`provider`, `error`, `held`, `at_risk`, `lost`…).
    pub data: BTreeMap<String, String>,
}

impl HealthReport {
    pub(crate) fn new(status: HealthStatus, description: impl Into<String>) -> Self {
        Self {
            status,
            description: description.into(),
            data: BTreeMap::new(),
        }
    }

    pub(crate) fn with(mut self, k: &str, v: impl ToString) -> Self {
        self.data.insert(k.to_owned(), v.to_string());
        self
    }
}

/// Probes a provider: acquires and releases a `_health_check_<uuid>` lease within
/// `timeout`.
///
/// Healthy when the lease was acquired and released, or held by someone else
/// (contention); Unhealthy when the backend is unreachable, refuses our credentials or the
/// probe times out; Degraded on anything else (the backend answers but misbehaves).
pub async fn probe_provider(provider: &dyn LeaseProvider, timeout: Duration) -> HealthReport {
    let name = format!("_health_check_{}", uuid::Uuid::new_v4().simple());
    let caps = provider.capabilities();
    let duration = Duration::from_secs(15).clamp(caps.min_duration, caps.max_duration);
    let request = AcquireRequest::new(name.clone(), duration, Metadata::new());
    let started = tokio::time::Instant::now();
    let run = async {
        match provider.try_acquire(&request).await? {
            Some(grant) => provider.release(&grant).await.map(|()| true),
            None => Ok(false),
        }
    };
    let deadline = crate::options::after(started, timeout);
    let report = match crate::contract::bounded(deadline, run).await {
        Some(Ok(true)) => {
            HealthReport::new(HealthStatus::Healthy, "probe lease acquired and released")
        }
        Some(Ok(false)) => HealthReport::new(
            HealthStatus::Healthy,
            "probe lease held by another instance (contention)",
        ),
        Some(Err(e)) => {
            let status = match e.kind() {
                ErrorKind::ProviderUnavailable | ErrorKind::Unauthorized | ErrorKind::Timeout => {
                    HealthStatus::Unhealthy
                }
                _ => HealthStatus::Degraded,
            };
            HealthReport::new(status, format!("probe failed: {}", e.kind())).with("error", &e)
        }
        None => HealthReport::new(
            HealthStatus::Unhealthy,
            format!("probe did not finish within {timeout:?}"),
        ),
    };
    report
        .with("provider", provider.provider_name())
        .with("probe_lease", &name)
        .with("elapsed_ms", started.elapsed().as_millis())
}
