//! The builder of an [`Election`]: identity, timing, metadata, re-campaigning.

use super::*;

/// Builds an [`Election`]; see [`Election::builder`].
#[must_use]
#[derive(Debug)]
pub struct ElectionBuilder {
    pub(super) manager: LeaseManager,
    pub(super) name: String,
    pub(super) identity: Option<String>,
    pub(super) lease_duration: Option<Duration>,
    pub(super) retry_period: Option<Duration>,
    pub(super) metadata: Metadata,
    pub(super) recampaign: bool,
}

impl ElectionBuilder {
    /// Who this candidate is, stored with its lease (metadata key [`IDENTITY_KEY`]) so that
    /// followers see who leads. Default: `host-pid-random`.
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// The lease duration of a term: how long the backend keeps the name for a leader that
    /// stopped renewing, so the longest a dead leader delays the next one. Default: the
    /// manager's default lease duration.
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = Some(duration);
        self
    }

    /// How often a follower tries to become the leader when no release notification
    /// wakes it (jittered ±50 %). Default: the manager's acquire retry interval, at most
    /// half the renewal interval.
    pub fn retry_period(mut self, period: Duration) -> Self {
        self.retry_period = Some(period);
        self
    }

    /// Metadata stored with the leader's lease, beside the identity (added to the
    /// manager's metadata).
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Whether [`Election::run`] campaigns again after losing the lead (default `true`);
    /// `false` makes `run` return the loss as an error.
    pub fn recampaign(mut self, yes: bool) -> Self {
        self.recampaign = yes;
        self
    }

    /// Checks the name, the metadata and the timing, as client-go checks
    /// `LeaseDuration > RenewDeadline > RetryPeriod`: here
    /// `lease duration > safety window > renewal interval > retry period > 0`, with the
    /// safety window and renewal interval those of the manager's options for that
    /// duration.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the rule broken, with the values.
    ///
    /// ```
    /// # use leasing_abstractions::{election::Election, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
    /// # use std::{sync::Arc, time::Duration};
    /// let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
    /// let err = Election::builder(&manager, "scheduler")
    ///     .lease_duration(Duration::from_secs(3))
    ///     .retry_period(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("retry_period"));
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn build(self) -> Result<Election> {
        crate::name::validate_name(&self.name)?;
        let options = self.manager.options();
        let duration = match self.lease_duration {
            Some(d) => d,
            None => match options.default_lease_duration {
                LeaseDuration::Finite(d) => d,
                LeaseDuration::Infinite => {
                    return Err(LeaseError::invalid_argument(
                        "lease_duration",
                        "an election needs a finite lease duration (the manager's default is infinite): the lead of a leader that died would never pass on",
                    ))
                }
            },
        };
        self.manager
            .provider()
            .capabilities()
            .check_duration(LeaseDuration::Finite(duration))?;
        let Some(policy) = options.renewal_policy(LeaseDuration::Finite(duration))? else {
            return Err(LeaseError::invalid_argument(
                "auto_renew",
                "an election needs the manager's auto-renewal on: a leader must keep its term alive",
            ));
        };
        let interval = policy.interval;
        let window = policy.safety_window();
        let retry_period = self
            .retry_period
            .unwrap_or_else(|| options.acquire_retry_interval.min(interval / 2));
        if retry_period.is_zero() || retry_period >= interval {
            return Err(LeaseError::invalid_argument(
                "retry_period",
                format!(
                    "{retry_period:?} must be greater than zero and less than the renewal interval {interval:?} (lease duration {duration:?} > safety window {window:?} > renewal interval {interval:?} > retry period)"
                ),
            ));
        }
        let identity = self.identity.unwrap_or_else(default_identity);
        if identity.is_empty() {
            return Err(LeaseError::invalid_argument(
                "identity",
                "must not be empty",
            ));
        }
        let mut metadata = options.metadata.clone();
        metadata.extend(self.metadata);
        metadata.insert(IDENTITY_KEY.to_owned(), identity.clone());
        validate_metadata(&metadata)?;
        Ok(Election {
            inner: Arc::new(Inner {
                manager: self.manager,
                name: self.name,
                identity,
                duration,
                retry_period,
                metadata,
                recampaign: self.recampaign,
                events: broadcast::channel(64).0,
                current: Mutex::new(Weak::new()),
            }),
        })
    }
}

pub(super) fn default_identity() -> String {
    crate::metadata::owner_id()
}
