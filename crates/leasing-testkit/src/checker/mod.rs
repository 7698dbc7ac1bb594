//! Checks a [`history`](crate::history) of lease operations for safety violations, and
//! measures it.
//!
//! # The model
//!
//! A *grant* is a successful `Acquire` record (lease name, lease id, fencing token). Its
//! holder *certainly believed* it held the lease from the acquisition's complete instant
//! until the invoke instant of its last `Check { held: true }`: belief only goes from true
//! to false (lost and released are terminal), the grant happened at some instant of the
//! acquisition, and a check answered true at some instant between its invoke and
//! complete. A grant without such a check was believed at some unknown instant of its
//! acquisition only (a holder stopped inside `acquire` may learn of its grant when it has
//! already expired, and be told at once that it does not hold it). The holder was *told* of the end at the complete
//! instant of its first `Lost` record or `Check { held: false }`, or ended it itself at
//! its `Release`'s invoke. Every judgement below uses only these definite instants, so a
//! violation reported is a violation that happened (given one shared clock), never an
//! artefact of timing uncertainty.
//!
//! Violations ([`ViolationKind`]):
//! - **overlap**: two grants of one name whose certain beliefs overlap in time, or one
//!   granted (its whole acquisition) while the other certainly believed: two holders
//!   each believed, at the same instant, that it held the name.
//! - **token not increasing** / **token repeated**: a grant acquired entirely after
//!   another (its acquire invoked after the other's completed) has a fencing token not
//!   greater than it; two grants of one name share a token.
//! - **acted after loss**: a holder was told (or released) and afterwards still got
//!   `held: true` from its lease; or it wrote to the resource with it after its lease
//!   answered `held: false` (or after releasing). A write that races with an
//!   asynchronous `Lost` notice is not counted here: it was decided on an earlier `true`,
//!   and is a *stale write* if the name had moved on.
//! - **loss not told**: a holder that had not released lost the name to the next grant
//!   (in token order) and had not been told before that grant completed, although it was
//!   running
//!   (holders killed before, or stopped at some point between their last `held: true`
//!   and the next grant are excused: a stopped process cannot be told, and whatever it
//!   does after it resumes is judged by *overlap* and *acted after loss*).
//! - **stale write accepted**: the fenced resource accepted a write with a token lower
//!   than a write it had accepted before (a broken resource).
//!
//! A write that a holder issued after the next grant of its name had completed is a
//! *stale write*: without fencing it would corrupt the resource. The stats count them and
//! how many the [`fenced`](crate::fenced) resource rejected: what fencing saved. Stale
//! writes are expected (a holder stopped between its check and its write cannot know), so
//! they are not violations.
//!
//! ```
//! use leasing_testkit::checker::check;
//! use leasing_testkit::history::{Op, Record};
//! let h = vec![
//!     Record::new("a", "job", 0, 10, Op::Acquire { granted: true }).with_grant("l1", 1),
//!     Record::new("a", "job", 20, 21, Op::Check { held: true }).with_grant("l1", 1),
//!     Record::new("a", "job", 30, 31, Op::Release { ok: true }).with_grant("l1", 1),
//!     Record::new("b", "job", 5, 40, Op::Acquire { granted: true }).with_grant("l2", 2),
//! ];
//! let report = check(&h);
//! assert!(report.is_clean(), "{report}");
//! ```

use crate::history::{Op, Record};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

mod rules;

use rules::{acted_after_loss, free_wait, overlaps, takeovers, token_order, writes};

/// A grant as a violation names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRef {
    /// The holder.
    pub client: String,
    /// The lease id.
    pub lease_id: String,
    /// The fencing token.
    pub token: u64,
}

impl fmt::Display for GrantRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}({})", self.client, self.token, self.lease_id)
    }
}

/// The kinds of violation; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// Two holders believed at once.
    Overlap,
    /// A later grant's token is not greater.
    TokenNotIncreasing,
    /// Two grants share a token.
    TokenRepeated,
    /// A holder acted after it was told of the loss (or released).
    ActedAfterLoss,
    /// A running holder was not told before the next grant.
    LossNotTold,
    /// The fenced resource accepted a stale token.
    StaleWriteAccepted,
}

impl ViolationKind {
    /// Every kind, in report order.
    pub const ALL: [ViolationKind; 6] = [
        ViolationKind::Overlap,
        ViolationKind::TokenNotIncreasing,
        ViolationKind::TokenRepeated,
        ViolationKind::ActedAfterLoss,
        ViolationKind::LossNotTold,
        ViolationKind::StaleWriteAccepted,
    ];

    /// A snake_case label.
    pub fn label(self) -> &'static str {
        match self {
            ViolationKind::Overlap => "overlap",
            ViolationKind::TokenNotIncreasing => "token_not_increasing",
            ViolationKind::TokenRepeated => "token_repeated",
            ViolationKind::ActedAfterLoss => "acted_after_loss",
            ViolationKind::LossNotTold => "loss_not_told",
            ViolationKind::StaleWriteAccepted => "stale_write_accepted",
        }
    }
}

/// One violation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What kind.
    pub kind: ViolationKind,
    /// The lease name.
    pub name: String,
    /// The grant at fault (the earlier one, for pairs).
    pub first: GrantRef,
    /// The other grant of a pair.
    pub second: Option<GrantRef>,
    /// The instant the violation is shown at ([`mono_ns`](crate::history::mono_ns)).
    pub at_ns: u64,
    /// What happened, in words.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {:?}: {}",
            self.kind.label(),
            self.name,
            self.first
        )?;
        if let Some(s) = &self.second {
            write!(f, " / {s}")?;
        }
        write!(f, " at {} ns: {}", self.at_ns, self.detail)
    }
}

/// Figures measured on a history.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Client operations (every record but faults, pauses and kills).
    pub operations: u64,
    /// Acquisition attempts.
    pub acquire_attempts: u64,
    /// Successful acquisitions (grants).
    pub acquisitions: u64,
    /// Successful acquisitions' latency (complete − invoke), nanoseconds, sorted.
    pub acquire_latency_ns: Vec<u64>,
    /// `is_held` checks.
    pub checks: u64,
    /// Writes to the fenced resource: accepted, rejected, unreachable.
    pub writes: u64,
    /// Writes accepted.
    pub writes_accepted: u64,
    /// Writes rejected as stale.
    pub writes_rejected: u64,
    /// Writes issued after the next grant of the name had completed (unsafe without
    /// fencing).
    pub stale_writes: u64,
    /// Stale writes the fenced resource rejected: what fencing saved.
    pub stale_writes_rejected: u64,
    /// Grants whose name went to the next grant before the holder released it.
    pub takeovers: u64,
    /// Takeovers from a running holder (neither killed nor stopped).
    pub takeovers_running: u64,
    /// Of those, the holder was told before the next grant completed.
    pub takeovers_told_in_time: u64,
    /// Takeovers from a holder stopped meanwhile (told when it resumed).
    pub takeovers_stopped: u64,
    /// Takeovers from a holder killed before the next grant.
    pub takeovers_killed: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Longest time a name had no live holder while an acquisition of it was in flight,
    /// nanoseconds.
    pub longest_free_wait_ns: u64,
    /// The name it happened on.
    pub longest_free_wait_name: String,
    /// When that stretch began ([`mono_ns`](crate::history::mono_ns)).
    pub longest_free_wait_at_ns: u64,
}

impl Stats {
    /// The `p`-th percentile (0–100) of acquisition latency, nanoseconds; 0 if none.
    pub fn acquire_latency_percentile(&self, p: f64) -> u64 {
        percentile(&self.acquire_latency_ns, p)
    }

    /// Takeovers from running holders told in time, as a percentage (100 when there were
    /// none).
    pub fn told_in_time_percent(&self) -> f64 {
        if self.takeovers_running == 0 {
            100.0
        } else {
            100.0 * self.takeovers_told_in_time as f64 / self.takeovers_running as f64
        }
    }
}

/// The nearest-rank `p`-th percentile of sorted `values`; 0 if empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Every violation, by kind then time.
    pub violations: Vec<Violation>,
    /// Figures.
    pub stats: Stats,
}

impl Report {
    /// No violation of any kind.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Violations of `kind`.
    pub fn count(&self, kind: ViolationKind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "operations {}  acquisitions {}/{} attempts  checks {}  writes {} (accepted {}, rejected {})",
            s.operations, s.acquisitions, s.acquire_attempts, s.checks, s.writes,
            s.writes_accepted, s.writes_rejected
        )?;
        let faults: Vec<String> = s.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            f,
            "faults: {}",
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            }
        )?;
        let kinds: Vec<String> = ViolationKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.label(), self.count(*k)))
            .collect();
        writeln!(
            f,
            "violations {}: {}",
            self.violations.len(),
            kinds.join(", ")
        )?;
        writeln!(
            f,
            "takeovers {}: running holder {} (told before the next grant {} = {:.1} %), stopped {}, killed {}",
            s.takeovers, s.takeovers_running, s.takeovers_told_in_time,
            s.told_in_time_percent(), s.takeovers_stopped, s.takeovers_killed
        )?;
        writeln!(
            f,
            "stale writes {} (rejected by fencing {})",
            s.stale_writes, s.stale_writes_rejected
        )?;
        writeln!(
            f,
            "acquire latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; longest wait with the name free {:.1} ms ({})",
            ms(s.acquire_latency_percentile(50.0)),
            ms(s.acquire_latency_percentile(99.0)),
            ms(s.acquire_latency_percentile(100.0)),
            ms(s.longest_free_wait_ns),
            if s.longest_free_wait_name.is_empty() { "-" } else { &s.longest_free_wait_name }
        )?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  {v}")?;
        }
        if self.violations.len() > 20 {
            writeln!(f, "  … and {} more", self.violations.len() - 20)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Grant {
    r: GrantRef,
    name: String,
    acq_invoke: u64,
    acq_complete: u64,
    last_true_invoke: u64,
    last_activity: u64,
    told: Option<u64>,
    answered_not_held: Option<u64>,
    released: Option<u64>,
    true_checks: Vec<u64>,
    writes: Vec<(u64, u64, Option<bool>)>,
}

impl Grant {
    fn ended(&self) -> Option<u64> {
        match (self.told, self.released) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Default)]
struct ClientLife {
    pauses: Vec<(u64, u64)>,
    killed: Option<u64>,
}

fn min_opt(a: Option<u64>, b: u64) -> Option<u64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Checks `history` (records of any order) and measures it.
pub fn check(history: &[Record]) -> Report {
    let mut stats = Stats::default();
    let mut grants: Vec<Grant> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut lives: HashMap<String, ClientLife> = HashMap::new();
    let mut waits: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    let mut sorted: Vec<&Record> = history.iter().collect();
    sorted.sort_by_key(|r| (r.invoke_ns, r.complete_ns));

    for r in &sorted {
        match &r.op {
            Op::Acquire { granted } => {
                stats.operations += 1;
                stats.acquire_attempts += 1;
                waits
                    .entry(r.name.clone())
                    .or_default()
                    .push((r.invoke_ns, r.complete_ns));
                if let (true, Some(id), Some(token)) = (granted, &r.lease_id, r.token) {
                    stats.acquisitions += 1;
                    stats.acquire_latency_ns.push(r.complete_ns - r.invoke_ns);
                    index.insert((r.name.clone(), id.clone()), grants.len());
                    grants.push(Grant {
                        r: GrantRef {
                            client: r.client.clone(),
                            lease_id: id.clone(),
                            token,
                        },
                        name: r.name.clone(),
                        acq_invoke: r.invoke_ns,
                        acq_complete: r.complete_ns,
                        last_true_invoke: r.complete_ns,
                        last_activity: r.complete_ns,
                        told: None,
                        answered_not_held: None,
                        released: None,
                        true_checks: Vec::new(),
                        writes: Vec::new(),
                    });
                }
            }
            Op::Fault { kind } => *stats.faults.entry(kind.clone()).or_default() += 1,
            Op::Paused => lives
                .entry(r.client.clone())
                .or_default()
                .pauses
                .push((r.invoke_ns, r.complete_ns)),
            Op::Killed => {
                let life = lives.entry(r.client.clone()).or_default();
                life.killed = min_opt(life.killed, r.invoke_ns);
            }
            Op::Check { .. } | Op::Write { .. } | Op::Lost | Op::Release { .. } => {
                stats.operations += 1;
            }
        }
    }
    for r in &sorted {
        let Some(id) = &r.lease_id else {
            if matches!(r.op, Op::Check { .. }) {
                stats.checks += 1;
            }
            continue;
        };
        let Some(&gi) = index.get(&(r.name.clone(), id.clone())) else {
            continue;
        };
        let g = &mut grants[gi];
        match r.op {
            Op::Check { held } => {
                stats.checks += 1;
                if held {
                    g.true_checks.push(r.invoke_ns);
                    g.last_true_invoke = g.last_true_invoke.max(r.invoke_ns);
                    g.last_activity = g.last_activity.max(r.complete_ns);
                } else {
                    g.told = min_opt(g.told, r.complete_ns);
                    g.answered_not_held = min_opt(g.answered_not_held, r.complete_ns);
                }
            }
            Op::Write { accepted } => {
                stats.writes += 1;
                match accepted {
                    Some(true) => stats.writes_accepted += 1,
                    Some(false) => stats.writes_rejected += 1,
                    None => {}
                }
                g.writes.push((r.invoke_ns, r.complete_ns, accepted));
                g.last_activity = g.last_activity.max(r.complete_ns);
            }
            Op::Lost => g.told = min_opt(g.told, r.complete_ns),
            Op::Release { .. } => g.released = min_opt(g.released, r.invoke_ns),
            Op::Acquire { .. } | Op::Fault { .. } | Op::Paused | Op::Killed => {}
        }
    }
    stats.acquire_latency_ns.sort_unstable();

    let mut violations = Vec::new();
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, g) in grants.iter().enumerate() {
        by_name.entry(g.name.clone()).or_default().push(i);
    }
    let no_life = ClientLife::default();
    for (name, mut ids) in by_name {
        ids.sort_by_key(|&i| (grants[i].acq_complete, grants[i].acq_invoke));
        let gs: Vec<&Grant> = ids.iter().map(|&i| &grants[i]).collect();
        overlaps(&name, &gs, &mut violations);
        token_order(&name, &gs, &mut violations);
        acted_after_loss(&name, &gs, &mut violations);
        takeovers(&name, &gs, &lives, &no_life, &mut stats, &mut violations);
        writes(&name, &gs, &mut stats, &mut violations);
        let empty = Vec::new();
        free_wait(
            &name,
            &gs,
            waits.get(&name).unwrap_or(&empty),
            &lives,
            &no_life,
            &mut stats,
        );
    }
    violations.sort_by_key(|v| (v.kind, v.at_ns));
    Report { violations, stats }
}
