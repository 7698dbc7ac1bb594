//! Where a lease stands, why it was lost, and the events it reports.

use crate::error::LeaseError;
use std::fmt;
use std::time::Duration;

/// Where a held lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum LeaseState {
    /// Held; the last renewal (or the acquisition) succeeded.
    Held,
    /// A renewal failed; the lease is still valid and renewal is being retried.
    AtRisk,
    /// Lost: taken over, expired, or not renewed before the safety deadline. Terminal.
    Lost,
    /// Released by the holder. Terminal.
    Released,
}

impl LeaseState {
    /// Held or at risk: the holder may still act on it.
    pub fn is_active(self) -> bool {
        matches!(self, LeaseState::Held | LeaseState::AtRisk)
    }
}

/// Why a lease was lost.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LostReason {
    /// The backend said the lease is no longer ours (taken over, broken, expired).
    Revoked(LeaseError),
    /// No renewal succeeded before the safety deadline
    /// (`last renewal send + duration × safety threshold`).
    SafetyDeadline,
    /// Every retry of a failed renewal failed; the last error.
    RetriesExhausted(LeaseError),
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::Revoked(e) => write!(f, "revoked by the backend: {e}"),
            LostReason::SafetyDeadline => {
                f.write_str("safety deadline passed without a successful renewal")
            }
            LostReason::RetriesExhausted(e) => write!(f, "renewal retries exhausted: {e}"),
        }
    }
}

impl LostReason {
    pub(super) fn label(&self) -> &'static str {
        match self {
            LostReason::Revoked(_) => "revoked",
            LostReason::SafetyDeadline => "safety_deadline",
            LostReason::RetriesExhausted(_) => "retries_exhausted",
        }
    }
}

/// What happened to a held lease, on [`Lease::events`](crate::Lease::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LeaseEvent {
    /// A renewal succeeded.
    Renewed {
        /// Validity left after the renewal.
        remaining: Duration,
    },
    /// A renewal failed; it will be retried if the budget allows.
    RenewalFailed {
        /// 1 for the first failure of an episode, then one more per retry.
        attempt: u32,
        /// What failed.
        error: LeaseError,
        /// Validity left.
        remaining: Duration,
    },
    /// The lease went from held to at risk.
    AtRisk {
        /// Validity left.
        remaining: Duration,
    },
    /// The lease is lost.
    Lost {
        /// Why.
        reason: LostReason,
    },
    /// The lease was released.
    Released,
}
