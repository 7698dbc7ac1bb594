//! The one backoff of the crate family: renewal retries in the core, reconnect polling in
//! the backends.

use std::time::Duration;

/// Exponential backoff with equal jitter: pause number `k` (1-based) is
/// `min(first × 2^(k−1), max)`, jittered into `[½, 1]` of that.
///
/// The core's renewal retries use it (`first` = the retry interval, `max` = what the
/// renewal timing allows, further capped near the safety deadline), and so do the
/// backends' reconnect loops (a subscription or watch connection polling a server that
/// went away), so no backend writes its own.
///
/// ```
/// use leasing_abstractions::Backoff;
/// use std::time::Duration;
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
/// let pauses: Vec<_> = (1..=4).map(|k| b.pause(k)).collect();
/// assert_eq!(pauses, [100, 200, 350, 350].map(Duration::from_millis));
/// // Equal jitter: `unit` in [0, 1] picks a point in [pause/2, pause].
/// assert_eq!(b.jittered(2, 0.0), Duration::from_millis(100));
/// assert_eq!(b.jittered(2, 1.0), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `first` and never above `max` (`max` below `first` is taken
    /// as `first`).
    pub const fn new(first: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < first.as_nanos() {
            first
        } else {
            max
        };
        Self { first, max }
    }

    /// The first pause.
    pub fn first(&self) -> Duration {
        self.first
    }

    /// The largest pause.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The un-jittered pause before attempt `attempt` (1-based; 0 is taken as 1):
    /// `min(first × 2^(attempt−1), max)`.
    pub fn pause(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << exp)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// [`pause`](Self::pause) with equal jitter: `unit` (uniform in `[0, 1]`, clamped)
    /// picks a point in `[pause/2, pause]`.
    pub fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        let full = self.pause(attempt);
        full / 2 + crate::options::scale(full / 2, unit.clamp(0.0, 1.0))
    }

    /// [`jittered`](Self::jittered) with a random `unit`.
    pub fn random(&self, attempt: u32) -> Duration {
        self.jittered(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_caps_and_jitters_within_bounds() {
        let b = Backoff::new(ms(10), ms(1000));
        assert_eq!(b.pause(0), ms(10));
        assert_eq!(b.pause(1), ms(10));
        assert_eq!(b.pause(7), ms(640));
        assert_eq!(b.pause(8), ms(1000));
        assert_eq!(b.pause(u32::MAX), ms(1000));
        assert_eq!(b.jittered(1, -3.0), ms(5));
        assert_eq!(b.jittered(1, 7.0), ms(10));
        assert_eq!(b.jittered(1, 0.5), Duration::from_micros(7500));
        for k in 1..40 {
            let r = b.random(k);
            assert!((b.pause(k) / 2..=b.pause(k)).contains(&r), "{k}: {r:?}");
        }
        // A huge first pause does not overflow.
        let huge = Backoff::new(Duration::MAX / 2, Duration::MAX);
        assert_eq!(huge.pause(40), Duration::MAX);
        // A max below the first is the first.
        let flat = Backoff::new(ms(50), ms(1));
        assert_eq!((flat.first(), flat.max()), (ms(50), ms(50)));
        assert_eq!(flat.pause(9), ms(50));
    }
}
