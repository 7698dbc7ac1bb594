//! Health checks: a provider probe and a check of the leases a manager holds.

use crate::contract::{AcquireRequest, LeaseProvider};
use crate::error::ErrorKind;
use crate::lease::LeaseState;
use crate::manager::LeaseManager;
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

impl LeaseManager {
    /// Probes this manager's provider; see [`probe_provider`]. Records the status in
    /// `leasing.health.status{check="provider"}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{HealthStatus, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let report = manager.probe(Duration::from_secs(5)).await;
    /// assert_eq!(report.status, HealthStatus::Healthy);
    /// assert_eq!(report.data["provider"], "in-memory");
    /// # Ok(()) }
    /// ```
    pub async fn probe(&self, timeout: Duration) -> HealthReport {
        let report = probe_provider(self.provider().as_ref(), timeout).await;
        self.metrics().health("provider", report.status);
        report
    }

    /// Checks the leases this manager holds: Unhealthy if any is lost (and its handle
    /// still alive), Degraded if any is at risk, else Healthy. Records the status in
    /// `leasing.health.status{check="leases"}`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use leasing_abstractions::{HealthStatus, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
    /// # let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let lease = manager.acquire("nightly-report").await?;
    /// assert_eq!(manager.check_held_leases().status, HealthStatus::Healthy);
    /// manager.break_lease("nightly-report").await?;
    /// let _ = lease.renew().await; // the holder learns that it lost the lease
    /// let report = manager.check_held_leases();
    /// assert_eq!(report.status, HealthStatus::Unhealthy);
    /// assert_eq!(report.data["lost_names"], "nightly-report");
    /// # Ok(()) }
    /// ```
    pub fn check_held_leases(&self) -> HealthReport {
        let leases = self.held_leases();
        let count = |s: LeaseState| leases.iter().filter(|(_, st)| *st == s).count();
        let names = |s: LeaseState| {
            leases
                .iter()
                .filter(|(_, st)| *st == s)
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (held, at_risk, lost) = (
            count(LeaseState::Held),
            count(LeaseState::AtRisk),
            count(LeaseState::Lost),
        );
        let report = if lost > 0 {
            HealthReport::new(HealthStatus::Unhealthy, format!("{lost} lease(s) lost"))
                .with("lost_names", names(LeaseState::Lost))
        } else if at_risk > 0 {
            HealthReport::new(
                HealthStatus::Degraded,
                format!("{at_risk} lease(s) at risk"),
            )
            .with("at_risk_names", names(LeaseState::AtRisk))
        } else {
            HealthReport::new(HealthStatus::Healthy, format!("{held} lease(s) held"))
        };
        self.metrics().health("leases", report.status);
        report
            .with("held", held)
            .with("at_risk", at_risk)
            .with("lost", lost)
            .with("provider", self.provider().provider_name())
    }
}
