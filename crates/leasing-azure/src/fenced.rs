//! What the Azure fenced resources share: the pause after a lost write round.

use std::time::Duration;

/// A short random pause after the `attempt`-th lost read-then-conditional-write round
/// (another writer changed the item in between), growing with the attempt: 1 ms up to
/// `2 << min(attempt, 5)` ms, so at most 64 ms.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let pause = leasing_azure::lost_round_pause(0);
/// assert!(pause >= Duration::from_millis(1) && pause <= Duration::from_millis(2));
/// ```
pub fn lost_round_pause(attempt: usize) -> Duration {
    let cap = 2u64 << attempt.min(5);
    Duration::from_millis(fastrand::u64(0..cap) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_short() {
        for attempt in 0..20 {
            let cap = 2u64 << attempt.min(5);
            for _ in 0..50 {
                let ms = u64::try_from(lost_round_pause(attempt).as_millis()).unwrap();
                assert!((1..=cap).contains(&ms), "{attempt}: {ms}");
            }
        }
        assert!(lost_round_pause(100) <= Duration::from_millis(64));
    }
}
