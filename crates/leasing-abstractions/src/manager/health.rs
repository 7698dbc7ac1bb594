//! The manager's health checks: a probe of its provider and a check of the leases it
//! holds (the report types and the provider probe are in `crate::health`).

use super::LeaseManager;
use crate::health::{probe_provider, HealthReport, HealthStatus};
use crate::lease::LeaseState;
use std::time::Duration;

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
