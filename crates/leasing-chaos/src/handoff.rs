//! Hand-off times: from a fault aimed at a holder (its SIGKILL, its pause, a cut) to the
//! next grant of that name to someone, read from a run's history.

use leasing_testkit::history::{Op, Record};
use std::time::Duration;

/// For each fault of `kind` that names a lease, the time from the fault to the next grant
/// of that name (to any client), sorted; faults after which the name was never granted
/// again in the run are left out.
pub(crate) fn handoffs(history: &[Record], kind: &str) -> Vec<Duration> {
    let mut out: Vec<Duration> = history
        .iter()
        .filter(|r| !r.name.is_empty() && matches!(&r.op, Op::Fault { kind: k } if k == kind))
        .filter_map(|f| {
            history
                .iter()
                .filter(|r| {
                    r.name == f.name
                        && r.op == (Op::Acquire { granted: true })
                        && r.complete_ns >= f.invoke_ns
                })
                .map(|r| r.complete_ns - f.invoke_ns)
                .min()
                .map(Duration::from_nanos)
        })
        .collect();
    out.sort();
    out
}

/// `n, p50, p99, max` of sorted durations, for the run's summary; `None` if empty.
pub(crate) fn summary(sorted: &[Duration]) -> Option<String> {
    let last = *sorted.last()?;
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    Some(format!(
        "{} trials, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        sorted.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        last.as_secs_f64() * 1e3
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, at: u64, op: Op) -> Record {
        Record::new("c", name, at, at, op)
    }

    #[test]
    fn the_next_grant_of_the_name_after_each_fault() {
        let kill = || Op::Fault {
            kind: "kill_holder".into(),
        };
        let granted = || Op::Acquire { granted: true };
        let history = vec![
            rec("a", 100, granted()),
            rec("a", 1_000, kill()),
            rec("b", 1_500, granted()),
            rec("a", 1_200, Op::Acquire { granted: false }),
            rec("a", 4_000, granted()),
            rec("a", 3_000, granted()),
            rec("b", 5_000, kill()),
            rec("", 6_000, kill()),
            rec(
                "a",
                7_000,
                Op::Fault {
                    kind: "pause_holder".into(),
                },
            ),
        ];
        assert_eq!(
            handoffs(&history, "kill_holder"),
            vec![Duration::from_nanos(2_000)]
        );
        assert!(handoffs(&history, "pause_holder").is_empty());
        assert_eq!(summary(&[]), None);
        let s = summary(&[Duration::from_millis(10), Duration::from_millis(30)]).unwrap();
        assert_eq!(s, "2 trials, p50 30 ms, p99 30 ms, max 30 ms");
    }
}
