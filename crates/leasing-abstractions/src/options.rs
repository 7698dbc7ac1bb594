//! Options of the manager and of one acquisition, and their validation.

use crate::error::{LeaseError, Result};
use crate::metadata::{validate_metadata, Metadata};
use std::time::Duration;

/// Fraction of the lease duration assumed lost to clock drift (Redlock's factor).
pub const CLOCK_DRIFT_FACTOR: f64 = 0.01;

/// Fixed part of the drift allowance (Redlock adds 2 ms).
pub const CLOCK_DRIFT_FIXED: Duration = Duration::from_millis(2);

/// The clock-drift allowance for a lease of `duration`:
/// `duration × CLOCK_DRIFT_FACTOR + 2 ms`.
pub fn clock_drift(duration: Duration) -> Duration {
    scale(duration, CLOCK_DRIFT_FACTOR).saturating_add(CLOCK_DRIFT_FIXED)
}

/// How long after a successful renewal's send the holder trusts a lease of `duration`:
/// `duration × threshold`, never more than `duration − drift`.
pub fn safety_window(duration: Duration, threshold: f64) -> Duration {
    scale(duration, threshold).min(duration.saturating_sub(clock_drift(duration)))
}

/// A far-future instant standing in for "never": about 30 years from now (tokio's own
/// choice for its far future), so that adding a huge user-given duration to an instant
/// saturates instead of panicking.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// How long a call about an infinite lease may take: it has no safety window to derive a
/// deadline from (a manual renewal, an acquisition's own call).
pub(crate) const INFINITE_CALL_BOUND: Duration = Duration::from_secs(30);

/// The bound of a release call from the validity `left`: at least 1 s (a release must get
/// a chance), at most 30 s (past that the backend expires the lease anyway).
pub(crate) fn release_bound(left: Duration) -> Duration {
    left.clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// `at + d`, saturating at a far-future instant instead of overflowing.
pub(crate) fn after(at: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    at.checked_add(d.min(FAR_FUTURE))
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

/// `at + d` on the wall clock, saturating at a far-future time instead of overflowing
/// (as [`after`] does on the monotonic clock).
pub(crate) fn system_after(at: std::time::SystemTime, d: Duration) -> std::time::SystemTime {
    at.checked_add(d.min(FAR_FUTURE)).unwrap_or(at)
}

/// `d × factor` for a finite, non-negative `factor`, saturating at `Duration::MAX`
/// (`Duration::mul_f64` panics on overflow).
pub(crate) fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor.max(0.0)).unwrap_or(Duration::MAX)
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
///     .with_acquire_timeout(Duration::from_secs(5));
/// options.validate()?;
/// # Ok::<(), leasing_abstractions::LeaseError>(())
/// ```
///
/// With the `serde` feature the options (de)serialize with durations in a human form
/// (`"30s"`, `"1m 30s"`, `"infinite"` for an infinite lease duration or no acquire
/// timeout), every field optional
/// (missing ones take their defaults) and unknown fields rejected:
///
/// ```
/// # #[cfg(feature = "serde")] {
/// let o: leasing_abstractions::LeaseOptions = serde_json::from_str(
///     r#"{ "default_lease_duration": "15s", "acquire_timeout": "5s" }"#,
/// ).unwrap();
/// assert_eq!(o.acquire_timeout, Some(std::time::Duration::from_secs(5)));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct LeaseOptions {
    /// Lease duration when an acquisition does not give one. Default 30 s.
    pub default_lease_duration: LeaseDuration,
    /// How long `acquire` waits; `None` waits without limit (until the name is acquired,
    /// a failure that waiting cannot fix, or the caller drops the future). Default 30 s. (serde: a human
    /// duration, or `"infinite"` / `null` for no limit.)
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_impls::limit"))]
    pub acquire_timeout: Option<Duration>,
    /// Pause between acquisition attempts when no release notification arrives (jittered).
    /// Default 500 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub acquire_retry_interval: Duration,
    /// Renew held leases in the background. Default true.
    pub auto_renew: bool,
    /// Time from one renewal's send to the next; `None` (the default) means 2/3 of the
    /// lease duration.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub auto_renew_interval: Option<Duration>,
    /// First pause after a failed renewal; doubles with each retry, jittered, capped at
    /// `duration − interval` and at half the time left before the safety deadline, so
    /// retries grow denser as the deadline nears. `None` (the default) derives it from
    /// the duration: `min(500 ms, (duration − interval) / 4)`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub auto_renew_retry_interval: Option<Duration>,
    /// Retries after a failed renewal before the lease is declared lost. `None` (the
    /// default) retries until the safety deadline: an outage shorter than the slack
    /// between the renewal and the safety deadline loses nothing. A cap is the user's
    /// choice: with one, a lease can end while still valid.
    pub auto_renew_max_retries: Option<u32>,
    /// Fraction of the duration after the last successful renewal's send at which the
    /// holder declares the lease lost. Default 0.9, allowed 0.5–0.95.
    pub auto_renew_safety_threshold: f64,
    /// Metadata stored with every lease. Default empty.
    pub metadata: Metadata,
    /// How long an operator call (`inspect`, `list`, `break_lease`) waits for the
    /// backend before it fails as `ProviderUnavailable`. Default 10 s. (Acquisitions and
    /// renewals take their deadlines from the acquire timeout and the safety window.)
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub call_timeout: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            default_lease_duration: LeaseDuration::Finite(Duration::from_secs(30)),
            acquire_timeout: Some(Duration::from_secs(30)),
            acquire_retry_interval: Duration::from_millis(500),
            auto_renew: true,
            auto_renew_interval: None,
            auto_renew_retry_interval: None,
            auto_renew_max_retries: None,
            auto_renew_safety_threshold: 0.9,
            metadata: Metadata::new(),
            call_timeout: Duration::from_secs(10),
        }
    }
}

macro_rules! setter {
    ($(#[$m:meta])* $name:ident, $field:ident: $ty:ty) => {
        $(#[$m])*
        #[must_use]
        pub fn $name(mut self, v: $ty) -> Self {
            self.$field = v;
            self
        }
    };
}

/// The retry interval derived from a lease's timing when the user sets none.
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(500);

impl LeaseOptions {
    /// Sets [`default_lease_duration`](Self::default_lease_duration) (a `Duration` or
    /// [`LeaseDuration::Infinite`]).
    #[must_use]
    pub fn with_default_lease_duration(mut self, d: impl Into<LeaseDuration>) -> Self {
        self.default_lease_duration = d.into();
        self
    }
    /// Sets [`acquire_timeout`](Self::acquire_timeout): how long `acquire` waits.
    #[must_use]
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    /// `acquire` waits without limit (see [`acquire_timeout`](Self::acquire_timeout)).
    #[must_use]
    pub fn with_no_acquire_timeout(mut self) -> Self {
        self.acquire_timeout = None;
        self
    }
    setter!(
        /// Sets [`acquire_retry_interval`](Self::acquire_retry_interval).
        with_acquire_retry_interval, acquire_retry_interval: Duration);
    setter!(
        /// Sets [`auto_renew`](Self::auto_renew).
        with_auto_renew, auto_renew: bool);
    /// Sets [`auto_renew_interval`](Self::auto_renew_interval) instead of deriving it from
    /// the duration.
    #[must_use]
    pub fn with_auto_renew_interval(mut self, interval: Duration) -> Self {
        self.auto_renew_interval = Some(interval);
        self
    }
    /// Sets [`auto_renew_retry_interval`](Self::auto_renew_retry_interval) instead of
    /// deriving it from the duration.
    #[must_use]
    pub fn with_auto_renew_retry_interval(mut self, first_pause: Duration) -> Self {
        self.auto_renew_retry_interval = Some(first_pause);
        self
    }

    /// Caps the retries of a failed renewal (see
    /// [`auto_renew_max_retries`](Self::auto_renew_max_retries)); by default renewal
    /// retries until the safety deadline.
    #[must_use]
    pub fn with_auto_renew_max_retries(mut self, retries: u32) -> Self {
        self.auto_renew_max_retries = Some(retries);
        self
    }
    setter!(
        /// Sets [`auto_renew_safety_threshold`](Self::auto_renew_safety_threshold).
        with_auto_renew_safety_threshold, auto_renew_safety_threshold: f64);
    setter!(
        /// Sets [`metadata`](Self::metadata).
        with_metadata, metadata: Metadata);
    setter!(
        /// Sets [`call_timeout`](Self::call_timeout), the bound of an operator call.
        with_call_timeout, call_timeout: Duration);

    /// Checks every rule, for the default lease duration (each acquisition checks its own
    /// duration the same way).
    ///
    /// Timing rules, for a finite duration `d` with auto-renewal on (interval `i`, retry
    /// interval `r`, threshold `t`):
    /// `d > drift` (`1 % + 2 ms`); `t` in `[0.5, 0.95]`; `0 < i < d`; `i < w` where
    /// `w = min(d × t, d − drift)` is the safety window; `0 < r < d − i`.
    /// What the user leaves unset is derived from `d` (`i = min(2/3 d, 3/4 w)`,
    /// `r = min(500 ms, (d − i) / 4)`), so every duration above the drift allowance works
    /// with default options.
    /// A retry cap needs no rule: retries never outlive the safety deadline.
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
        if self.call_timeout.is_zero() {
            return Err(LeaseError::invalid_argument(
                "call_timeout",
                "must be greater than zero",
            ));
        }
        validate_metadata(&self.metadata)?;
        self.renewal_policy(self.default_lease_duration).map(drop)
    }

    /// The renewal timing for a lease of `duration` under these options (the rules of
    /// [`validate`](Self::validate)); `None` for an infinite lease or without auto-renewal.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the rule broken.
    pub(crate) fn renewal_policy(&self, duration: LeaseDuration) -> Result<Option<RenewalPolicy>> {
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
        let window = safety_window(d, t);
        if window.is_zero() {
            return Err(LeaseError::invalid_argument(
                "lease_duration",
                format!(
                    "{d:?} is too short: the clock-drift allowance ({:?}: 1 % + 2 ms) leaves no time to hold it",
                    clock_drift(d)
                ),
            ));
        }
        if !self.auto_renew {
            return Ok(None);
        }
        // 2/3 of the duration, but always well inside the safety window (a low threshold
        // or a tiny lease whose drift allowance dominates).
        let i = self
            .auto_renew_interval
            .unwrap_or_else(|| scale(d, 2.0 / 3.0).min(scale(window, 0.75)));
        if i.is_zero() || i >= d {
            return Err(LeaseError::invalid_argument(
                "auto_renew_interval",
                format!("{i:?} must be greater than zero and less than the lease duration {d:?}"),
            ));
        }
        if i >= window {
            return Err(LeaseError::invalid_argument(
                "auto_renew_interval",
                format!(
                    "{i:?} must be less than the safety window min(duration × auto_renew_safety_threshold, duration − drift) = {window:?}"
                ),
            ));
        }
        let cap = d - i;
        let r = self.auto_renew_retry_interval.unwrap_or_else(|| {
            DEFAULT_RETRY_INTERVAL
                .min(cap / 4)
                .max(Duration::from_nanos(1))
        });
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
        Ok(Some(policy))
    }
}

/// Resolved renewal timing for one lease; see `LeaseOptions::renewal_policy`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RenewalPolicy {
    /// Lease duration.
    pub(crate) duration: Duration,
    /// Time from a successful renewal's send to the next renewal.
    pub(crate) interval: Duration,
    /// First retry pause.
    pub(crate) retry_interval: Duration,
    /// Largest retry pause.
    pub(crate) retry_cap: Duration,
    /// Retries before the lease is declared lost; `None`: until the safety deadline.
    pub(crate) max_retries: Option<u32>,
    /// Safety threshold.
    pub(crate) safety_threshold: f64,
}

impl RenewalPolicy {
    /// The retry backoff: from the retry interval up to the cap.
    pub(crate) fn backoff(&self) -> crate::Backoff {
        crate::Backoff::new(self.retry_interval, self.retry_cap)
    }

    /// The pause before retry `attempt` when `left` remains before the safety deadline:
    /// the jittered backoff, but at most half of `left` (at least 1 ms), so that a lease
    /// near its deadline still gets several attempts.
    pub(crate) fn retry_pause(&self, attempt: u32, unit: f64, left: Duration) -> Duration {
        self.backoff()
            .jittered(attempt, unit)
            .min(left / 2)
            .max(Duration::from_millis(1))
    }

    /// How long after a successful renewal's send the holder declares the lease lost:
    /// `duration × threshold`, never more than `duration − drift`.
    pub(crate) fn safety_window(&self) -> Duration {
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
    /// Pause between attempts for this call, replacing the manager's
    /// [`acquire_retry_interval`](LeaseOptions::acquire_retry_interval).
    pub retry_interval: Option<Duration>,
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

    /// Overrides the acquire timeout; `None` waits without limit.
    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Replaces the metadata.
    pub fn metadata(mut self, m: Metadata) -> Self {
        self.metadata = Some(m);
        self
    }

    /// Overrides the pause between attempts (jittered; must be greater than zero).
    pub fn retry_interval(mut self, pause: Duration) -> Self {
        self.retry_interval = Some(pause);
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
                base.clone().with_auto_renew_interval(d),
                "auto_renew_interval",
            ),
            (
                base.clone().with_auto_renew_interval(Duration::ZERO),
                "auto_renew_interval",
            ),
            (
                base.clone().with_auto_renew_interval(secs(28.0)),
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
            .with_auto_renew_max_retries(2);
        let p = o
            .renewal_policy(Duration::from_secs(60).into())
            .unwrap()
            .unwrap();
        assert_eq!(p.max_retries, Some(2));
        assert_eq!(p.retry_cap, Duration::from_secs(20));
        let seq: Vec<_> = (1..=7).map(|a| p.backoff().pause(a)).collect();
        assert_eq!(seq, [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0].map(secs));
        assert_eq!(p.backoff().pause(1000), p.retry_cap);
        let mut rng = fastrand::Rng::with_seed(7);
        for a in 1..=6 {
            for _ in 0..100 {
                let j = p.backoff().jittered(a, rng.f64());
                assert!(
                    (p.backoff().pause(a) / 2..=p.backoff().pause(a)).contains(&j),
                    "{a}: {j:?}"
                );
            }
            assert_eq!(p.backoff().jittered(a, 0.0), p.backoff().pause(a) / 2);
            assert_eq!(
                p.backoff().jittered(a, 7.0),
                p.backoff().pause(a),
                "unit is clamped"
            );
        }
        // Near the deadline the pause shrinks to half of what is left, never below 1 ms.
        assert_eq!(p.retry_pause(5, 1.0, secs(3.0)), secs(1.5));
        assert_eq!(p.retry_pause(1, 1.0, secs(30.0)), secs(1.0));
        assert_eq!(p.retry_pause(1, 1.0, Duration::ZERO), secs(0.001));
    }

    /// Issue 6.3: every duration a provider may accept works with default options, and
    /// what depends on the duration is derived from it.
    #[test]
    fn defaults_work_for_every_duration() {
        for d in [
            Duration::from_millis(3),
            Duration::from_millis(10),
            Duration::from_millis(20),
            Duration::from_secs(1),
            Duration::from_secs(3),
            Duration::from_secs(10),
            Duration::from_secs(15),
            Duration::from_secs(60),
            Duration::from_secs(3600),
            Duration::from_secs(365 * 24 * 3600),
            Duration::MAX,
        ] {
            let o = LeaseOptions::default().with_default_lease_duration(d);
            o.validate().unwrap_or_else(|e| panic!("{d:?}: {e}"));
            let p = o.renewal_policy(d.into()).unwrap().unwrap();
            assert_eq!(p.max_retries, None, "{d:?}: retries until the deadline");
            assert!(p.retry_interval > Duration::ZERO, "{d:?}");
            assert!(p.retry_interval < d - p.interval, "{d:?}");
            assert!(p.retry_interval <= Duration::from_millis(500));
        }
        let p = LeaseOptions::default()
            .renewal_policy(Duration::from_secs(3).into())
            .unwrap()
            .unwrap();
        assert_eq!(p.interval, Duration::from_secs(2));
        assert_eq!(p.retry_interval, Duration::from_millis(250));
        // Every allowed threshold works with the default interval.
        for t in [0.5, 0.6, 0.66, 0.95] {
            let o = LeaseOptions::default().with_auto_renew_safety_threshold(t);
            let p = o
                .renewal_policy(Duration::from_secs(30).into())
                .unwrap()
                .unwrap();
            assert!(p.interval < p.safety_window(), "{t}: {p:?}");
        }
        // Too short to hold: the drift allowance eats the whole lease.
        for d in [Duration::from_millis(1), Duration::from_millis(2)] {
            let e = LeaseOptions::default()
                .with_default_lease_duration(d)
                .validate()
                .unwrap_err();
            assert_eq!(e.field(), Some("lease_duration"), "{e}");
            assert!(e.message().contains("too short"), "{e}");
        }
    }

    #[test]
    fn saturating_time_helpers() {
        let now = tokio::time::Instant::now();
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
        assert_eq!(after(now, secs(1.0)), now + secs(1.0));
        assert_eq!(after(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(
            FAR_FUTURE,
            Duration::from_secs(946_080_000),
            "30 years of 365 days"
        );
        let wall = std::time::SystemTime::now();
        assert_eq!(system_after(wall, secs(1.0)), wall + secs(1.0));
        assert_eq!(system_after(wall, Duration::MAX), wall + FAR_FUTURE);
        assert_eq!(system_after(wall, FAR_FUTURE), wall + FAR_FUTURE);
        assert_eq!(scale(Duration::MAX, 1.5), Duration::MAX);
        assert_eq!(scale(secs(2.0), 0.5), secs(1.0));
        assert_eq!(scale(secs(2.0), -1.0), Duration::ZERO);
    }

    #[test]
    fn safety_window_respects_drift_for_tiny_leases() {
        let o = LeaseOptions::default()
            .with_auto_renew_safety_threshold(0.95)
            .with_auto_renew_retry_interval(Duration::from_micros(100))
            .with_auto_renew_max_retries(1);
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
