//! Options of the manager and of one acquisition, and their validation.

use crate::error::{LeaseError, Result};
use crate::metadata::{validate_metadata, Metadata};
use std::time::Duration;

/// Attempts allowed when the acquire timeout is infinite (the circuit breaker of the
/// original library).
pub const MAX_ATTEMPTS_WITH_INFINITE_TIMEOUT: u32 = 10_000;

/// Fraction of the lease duration assumed lost to clock drift (Redlock's factor).
pub const CLOCK_DRIFT_FACTOR: f64 = 0.01;

/// Fixed part of the drift allowance (Redlock adds 2 ms).
pub const CLOCK_DRIFT_FIXED: Duration = Duration::from_millis(2);

/// The clock-drift allowance for a lease of `duration`:
/// `duration × CLOCK_DRIFT_FACTOR + 2 ms`.
pub fn clock_drift(duration: Duration) -> Duration {
    duration.mul_f64(CLOCK_DRIFT_FACTOR) + CLOCK_DRIFT_FIXED
}

/// How long after a successful renewal's send the holder trusts a lease of `duration`:
/// `duration × threshold`, never more than `duration − drift`.
pub fn safety_window(duration: Duration, threshold: f64) -> Duration {
    duration
        .mul_f64(threshold)
        .min(duration.saturating_sub(clock_drift(duration)))
}

/// How long a lease lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseDuration {
    /// Expires unless renewed within this time.
    Finite(Duration),
    /// Never expires; only providers that support it accept it (Azure Blob). Not renewed.
    Infinite,
}

impl LeaseDuration {
    /// The finite duration, or `None` for an infinite lease.
    pub fn as_finite(self) -> Option<Duration> {
        match self {
            LeaseDuration::Finite(d) => Some(d),
            LeaseDuration::Infinite => None,
        }
    }
}

impl From<Duration> for LeaseDuration {
    fn from(d: Duration) -> Self {
        LeaseDuration::Finite(d)
    }
}

/// Options of a [`LeaseManager`](crate::LeaseManager).
///
/// Build with [`LeaseOptions::default()`] and the `with_*` methods; the manager validates
/// them when it is built (see [`LeaseOptions::validate`]).
///
/// ```
/// use leasing_abstractions::LeaseOptions;
/// use std::time::Duration;
/// let options = LeaseOptions::default()
///     .with_default_lease_duration(Duration::from_secs(15))
///     .with_acquire_timeout(Some(Duration::from_secs(5)));
/// options.validate()?;
/// # Ok::<(), leasing_abstractions::LeaseError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeaseOptions {
    /// Lease duration when an acquisition does not give one. Default 30 s.
    pub default_lease_duration: LeaseDuration,
    /// How long `acquire` waits; `None` waits without limit, but at most
    /// [`MAX_ATTEMPTS_WITH_INFINITE_TIMEOUT`] attempts. Default 30 s.
    pub acquire_timeout: Option<Duration>,
    /// Pause between acquisition attempts when no release notification arrives (jittered).
    /// Default 500 ms.
    pub acquire_retry_interval: Duration,
    /// Renew held leases in the background. Default true.
    pub auto_renew: bool,
    /// Time from one renewal's send to the next; `None` means 2/3 of the lease duration.
    pub auto_renew_interval: Option<Duration>,
    /// First pause after a failed renewal; doubles with each retry (jittered, capped at
    /// `duration − interval`). Default 500 ms.
    pub auto_renew_retry_interval: Duration,
    /// Retries after a failed renewal before the lease is declared lost. Default 3.
    pub auto_renew_max_retries: u32,
    /// Fraction of the duration after the last successful renewal's send at which the
    /// holder declares the lease lost. Default 0.9, allowed 0.5–0.95.
    pub auto_renew_safety_threshold: f64,
    /// Metadata stored with every lease. Default empty.
    pub metadata: Metadata,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            default_lease_duration: LeaseDuration::Finite(Duration::from_secs(30)),
            acquire_timeout: Some(Duration::from_secs(30)),
            acquire_retry_interval: Duration::from_millis(500),
            auto_renew: true,
            auto_renew_interval: None,
            auto_renew_retry_interval: Duration::from_millis(500),
            auto_renew_max_retries: 3,
            auto_renew_safety_threshold: 0.9,
            metadata: Metadata::new(),
        }
    }
}

macro_rules! setter {
    ($(#[$m:meta])* $name:ident, $field:ident: $ty:ty) => {
        $(#[$m])*
        pub fn $name(mut self, v: impl Into<$ty>) -> Self {
            self.$field = v.into();
            self
        }
    };
}

impl LeaseOptions {
    setter!(
        /// Sets [`default_lease_duration`](Self::default_lease_duration).
        with_default_lease_duration, default_lease_duration: LeaseDuration);
    setter!(
        /// Sets [`acquire_timeout`](Self::acquire_timeout).
        with_acquire_timeout, acquire_timeout: Option<Duration>);
    setter!(
        /// Sets [`acquire_retry_interval`](Self::acquire_retry_interval).
        with_acquire_retry_interval, acquire_retry_interval: Duration);
    setter!(
        /// Sets [`auto_renew`](Self::auto_renew).
        with_auto_renew, auto_renew: bool);
    setter!(
        /// Sets [`auto_renew_interval`](Self::auto_renew_interval).
        with_auto_renew_interval, auto_renew_interval: Option<Duration>);
    setter!(
        /// Sets [`auto_renew_retry_interval`](Self::auto_renew_retry_interval).
        with_auto_renew_retry_interval, auto_renew_retry_interval: Duration);
    setter!(
        /// Sets [`auto_renew_max_retries`](Self::auto_renew_max_retries).
        with_auto_renew_max_retries, auto_renew_max_retries: u32);
    setter!(
        /// Sets [`auto_renew_safety_threshold`](Self::auto_renew_safety_threshold).
        with_auto_renew_safety_threshold, auto_renew_safety_threshold: f64);
    setter!(
        /// Sets [`metadata`](Self::metadata).
        with_metadata, metadata: Metadata);

    /// Checks every rule; see [`LeaseOptions::renewal_policy`] for the timing rules.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the rule broken.
    pub fn validate(&self) -> Result<()> {
        if self.acquire_retry_interval.is_zero() {
            return Err(LeaseError::invalid_argument(
                "acquire_retry_interval",
                "must be greater than zero",
            ));
        }
        validate_metadata(&self.metadata)?;
        self.renewal_policy(self.default_lease_duration).map(drop)
    }

    /// The renewal timing for a lease of `duration` under these options.
    ///
    /// Rules, for a finite duration `d` with auto-renewal on (interval `i`, retry interval
    /// `r`, threshold `t`, `n` retries):
    /// `d > 0`; `t` in `[0.5, 0.95]`; `0 < i < d`; `i < d × t`; `0 < r < d − i`; and the
    /// whole retry budget fits the safety buffer:
    /// `i + Σ_{k<n} min(r × 2^k, d − i) ≤ d × t`.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the rule broken.
    pub fn renewal_policy(&self, duration: LeaseDuration) -> Result<Option<RenewalPolicy>> {
        let t = self.auto_renew_safety_threshold;
        if !(0.5..=0.95).contains(&t) {
            return Err(LeaseError::invalid_argument(
                "auto_renew_safety_threshold",
                format!("{t} is outside [0.5, 0.95]"),
            ));
        }
        let d = match duration {
            LeaseDuration::Infinite => return Ok(None),
            LeaseDuration::Finite(d) if d.is_zero() => {
                return Err(LeaseError::invalid_argument(
                    "lease_duration",
                    "must be greater than zero",
                ))
            }
            LeaseDuration::Finite(d) => d,
        };
        if !self.auto_renew {
            return Ok(None);
        }
        let safe = d.mul_f64(t);
        let i = self
            .auto_renew_interval
            .unwrap_or_else(|| d.mul_f64(2.0 / 3.0));
        if i.is_zero() || i >= d {
            return Err(LeaseError::invalid_argument(
                "auto_renew_interval",
                format!("{i:?} must be greater than zero and less than the lease duration {d:?}"),
            ));
        }
        if i >= safe {
            return Err(LeaseError::invalid_argument(
                "auto_renew_interval",
                format!(
                    "{i:?} must be less than duration × auto_renew_safety_threshold = {safe:?}"
                ),
            ));
        }
        let r = self.auto_renew_retry_interval;
        let cap = d - i;
        if r.is_zero() || r >= cap {
            return Err(LeaseError::invalid_argument(
                "auto_renew_retry_interval",
                format!(
                    "{r:?} must be greater than zero and less than duration − interval = {cap:?}"
                ),
            ));
        }
        let policy = RenewalPolicy {
            duration: d,
            interval: i,
            retry_interval: r,
            retry_cap: cap,
            max_retries: self.auto_renew_max_retries,
            safety_threshold: t,
        };
        let budget = i + policy.total_backoff();
        if budget > safe {
            return Err(LeaseError::invalid_argument(
                "auto_renew_max_retries",
                format!(
                    "interval + all {} retries take up to {budget:?}, more than duration × auto_renew_safety_threshold = {safe:?}; lower the retries or the retry interval",
                    self.auto_renew_max_retries
                ),
            ));
        }
        Ok(Some(policy))
    }
}

/// Resolved renewal timing for one lease; see [`LeaseOptions::renewal_policy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    /// Lease duration.
    pub duration: Duration,
    /// Time from a successful renewal's send to the next renewal.
    pub interval: Duration,
    /// First retry pause.
    pub retry_interval: Duration,
    /// Largest retry pause.
    pub retry_cap: Duration,
    /// Retries before the lease is declared lost.
    pub max_retries: u32,
    /// Safety threshold.
    pub safety_threshold: f64,
}

impl RenewalPolicy {
    /// The un-jittered pause before retry number `attempt` (1-based):
    /// `min(retry_interval × 2^(attempt−1), retry_cap)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.retry_interval
            .checked_mul(1u32 << exp)
            .map_or(self.retry_cap, |d| d.min(self.retry_cap))
    }

    /// The pause before retry `attempt` with "equal jitter": uniformly in
    /// `[backoff/2, backoff]`, so the budget computed without jitter is an upper bound.
    pub fn jittered_backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let full = self.backoff(attempt);
        full / 2 + (full / 2).mul_f64(rng.f64())
    }

    /// Sum of all un-jittered retry pauses.
    pub fn total_backoff(&self) -> Duration {
        (1..=self.max_retries).map(|a| self.backoff(a)).sum()
    }

    /// How long after a successful renewal's send the holder declares the lease lost:
    /// `duration × threshold`, never more than `duration − drift`.
    pub fn safety_window(&self) -> Duration {
        safety_window(self.duration, self.safety_threshold)
    }
}

/// Per-call overrides for [`LeaseManager::acquire_with`](crate::LeaseManager::acquire_with).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct AcquireOptions {
    /// Lease duration for this acquisition.
    pub duration: Option<LeaseDuration>,
    /// Acquire timeout for this call (`Some(None)` waits without limit).
    pub timeout: Option<Option<Duration>>,
    /// Metadata for this lease, replacing the manager's.
    pub metadata: Option<Metadata>,
}

impl AcquireOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides the lease duration.
    pub fn duration(mut self, d: impl Into<LeaseDuration>) -> Self {
        self.duration = Some(d.into());
        self
    }

    /// Overrides the acquire timeout; `None` waits without limit (attempt-capped).
    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Replaces the metadata.
    pub fn metadata(mut self, m: Metadata) -> Self {
        self.metadata = Some(m);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn defaults_are_valid_and_renew_at_two_thirds() {
        let o = LeaseOptions::default();
        o.validate().unwrap();
        let p = o.renewal_policy(o.default_lease_duration).unwrap().unwrap();
        assert_eq!(p.interval, Duration::from_secs(20));
        assert_eq!(p.safety_window(), Duration::from_secs(27));
        assert_eq!(
            LeaseDuration::Finite(secs(1.0)).as_finite(),
            Some(secs(1.0))
        );
        assert_eq!(LeaseDuration::Infinite.as_finite(), None);
    }

    #[test]
    fn each_rule_names_its_field() {
        let d = Duration::from_secs(30);
        let base = LeaseOptions::default();
        let cases: Vec<(LeaseOptions, &str)> = vec![
            (
                base.clone().with_acquire_retry_interval(Duration::ZERO),
                "acquire_retry_interval",
            ),
            (
                base.clone().with_default_lease_duration(Duration::ZERO),
                "lease_duration",
            ),
            (
                base.clone().with_auto_renew_safety_threshold(0.49),
                "auto_renew_safety_threshold",
            ),
            (
                base.clone().with_auto_renew_safety_threshold(0.96),
                "auto_renew_safety_threshold",
            ),
            (
                base.clone().with_auto_renew_safety_threshold(f64::NAN),
                "auto_renew_safety_threshold",
            ),
            (
                base.clone().with_auto_renew_interval(Some(d)),
                "auto_renew_interval",
            ),
            (
                base.clone().with_auto_renew_interval(Some(Duration::ZERO)),
                "auto_renew_interval",
            ),
            (
                base.clone().with_auto_renew_interval(Some(secs(28.0))),
                "auto_renew_interval",
            ),
            (
                base.clone().with_auto_renew_retry_interval(Duration::ZERO),
                "auto_renew_retry_interval",
            ),
            (
                base.clone().with_auto_renew_retry_interval(secs(10.0)),
                "auto_renew_retry_interval",
            ),
            (
                base.clone().with_auto_renew_max_retries(6u32),
                "auto_renew_max_retries",
            ),
        ];
        for (o, field) in cases {
            let e = o.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert_eq!(e.field(), Some(field), "{e}");
        }
        let mut bad_md = Metadata::new();
        bad_md.insert("bad key".into(), "v".into());
        assert_eq!(
            base.with_metadata(bad_md).validate().unwrap_err().field(),
            Some("metadata")
        );
    }

    #[test]
    fn infinite_and_manual_leases_have_no_policy() {
        let o = LeaseOptions::default().with_default_lease_duration(LeaseDuration::Infinite);
        o.validate().unwrap();
        assert_eq!(o.renewal_policy(LeaseDuration::Infinite).unwrap(), None);
        let o = LeaseOptions::default().with_auto_renew(false);
        assert_eq!(
            o.renewal_policy(Duration::from_secs(1).into()).unwrap(),
            None
        );
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_bounds() {
        let o = LeaseOptions::default()
            .with_auto_renew_retry_interval(secs(1.0))
            .with_auto_renew_max_retries(2u32);
        let p = o
            .renewal_policy(Duration::from_secs(60).into())
            .unwrap()
            .unwrap();
        assert_eq!(p.retry_cap, Duration::from_secs(20));
        let seq: Vec<_> = (1..=7).map(|a| p.backoff(a)).collect();
        assert_eq!(seq, [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0].map(secs));
        assert_eq!(p.backoff(1000), p.retry_cap);
        assert_eq!(p.total_backoff(), secs(3.0));
        let mut rng = fastrand::Rng::with_seed(7);
        for a in 1..=6 {
            for _ in 0..100 {
                let j = p.jittered_backoff(a, &mut rng);
                assert!(j >= p.backoff(a) / 2 && j <= p.backoff(a), "{a}: {j:?}");
            }
        }
    }

    #[test]
    fn safety_window_respects_drift_for_tiny_leases() {
        let o = LeaseOptions::default()
            .with_auto_renew_safety_threshold(0.95)
            .with_auto_renew_retry_interval(Duration::from_micros(100))
            .with_auto_renew_max_retries(1u32);
        let p = o
            .renewal_policy(Duration::from_millis(20).into())
            .unwrap()
            .unwrap();
        // 20 ms × 0.95 = 19 ms, but drift is 0.2 + 2 ms, so the window is 17.8 ms.
        assert_eq!(p.safety_window(), Duration::from_micros(17_800));
        assert_eq!(
            clock_drift(Duration::from_secs(10)),
            Duration::from_millis(102)
        );
    }

    #[test]
    fn acquire_options_builders() {
        let a = AcquireOptions::new()
            .duration(Duration::from_secs(5))
            .timeout(None)
            .metadata(Metadata::new());
        assert_eq!(
            a.duration,
            Some(LeaseDuration::Finite(Duration::from_secs(5)))
        );
        assert_eq!(a.timeout, Some(None));
        assert_eq!(a.metadata, Some(Metadata::new()));
    }
}
