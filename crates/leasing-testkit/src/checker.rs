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

/// When `g`'s holder certainly believed it held the name: from its acquisition's
/// completion to the invoke of its last `held: true`; `None` without such a check (it was
/// granted at some unknown instant of its acquisition, and may have been stopped before
/// it learned of it, as a late grant).
fn certain(g: &Grant) -> Option<(u64, u64)> {
    (!g.true_checks.is_empty()).then_some((g.acq_complete, g.last_true_invoke))
}

fn overlaps(name: &str, gs: &[&Grant], out: &mut Vec<Violation>) {
    for (i, a) in gs.iter().enumerate() {
        for b in &gs[i + 1..] {
            let found = match (certain(a), certain(b)) {
                // Closed intervals: sharing one instant, both believed at that instant.
                (Some(x), Some(y)) if x.0 <= y.1 && y.0 <= x.1 => {
                    Some((x.0.max(y.0), x.1.min(y.1)))
                }
                // One was granted at an instant when the other certainly believed.
                (Some(x), None) if x.0 <= b.acq_invoke && b.acq_complete <= x.1 => {
                    Some((b.acq_invoke, b.acq_complete))
                }
                (None, Some(y)) if y.0 <= a.acq_invoke && a.acq_complete <= y.1 => {
                    Some((a.acq_invoke, a.acq_complete))
                }
                _ => None,
            };
            if let Some((from, to)) = found {
                let (first, second) = if a.r.token <= b.r.token {
                    (a, b)
                } else {
                    (b, a)
                };
                out.push(Violation {
                    kind: ViolationKind::Overlap,
                    name: name.to_owned(),
                    first: first.r.clone(),
                    second: Some(second.r.clone()),
                    at_ns: from,
                    detail: format!(
                        "both believed they held it, for up to {:.3} ms",
                        ms(to - from)
                    ),
                });
            }
        }
    }
}

fn token_order(name: &str, gs: &[&Grant], out: &mut Vec<Violation>) {
    let mut by_invoke: Vec<&Grant> = gs.to_vec();
    by_invoke.sort_by_key(|g| g.acq_invoke);
    let mut p = 0;
    let mut max: Option<&Grant> = None;
    for h in by_invoke {
        while p < gs.len() && gs[p].acq_complete < h.acq_invoke {
            if max.is_none_or(|m| gs[p].r.token > m.r.token) {
                max = Some(gs[p]);
            }
            p += 1;
        }
        if let Some(m) = max {
            if m.r.token > h.r.token {
                out.push(Violation {
                    kind: ViolationKind::TokenNotIncreasing,
                    name: name.to_owned(),
                    first: m.r.clone(),
                    second: Some(h.r.clone()),
                    at_ns: h.acq_complete,
                    detail: format!(
                        "token {} granted after token {} had been",
                        h.r.token, m.r.token
                    ),
                });
            }
        }
    }
    let mut seen: HashMap<u64, &Grant> = HashMap::new();
    for g in gs {
        if let Some(first) = seen.get(&g.r.token) {
            out.push(Violation {
                kind: ViolationKind::TokenRepeated,
                name: name.to_owned(),
                first: first.r.clone(),
                second: Some(g.r.clone()),
                at_ns: g.acq_complete,
                detail: format!("token {} granted twice", g.r.token),
            });
        } else {
            seen.insert(g.r.token, g);
        }
    }
}

fn acted_after_loss(name: &str, gs: &[&Grant], out: &mut Vec<Violation>) {
    for g in gs {
        // Told it held after being told of the loss (or releasing): the lease lied.
        let check = g.ended().and_then(|end| {
            g.true_checks
                .iter()
                .copied()
                .find(|&t| t > end)
                .map(|t| (t, end))
        });
        // Wrote after asking and hearing "not held" (or after releasing). A write racing
        // with an asynchronous `Lost` notice is a stale write, judged by fencing instead.
        let write = g
            .answered_not_held
            .map_or(g.released, |n| Some(g.released.map_or(n, |r| r.min(n))))
            .and_then(|end| {
                g.writes
                    .iter()
                    .map(|w| w.0)
                    .find(|&t| t > end)
                    .map(|t| (t, end))
            });
        let (at, end, what) = match (check, write) {
            (Some(c), Some(w)) if w.0 < c.0 => (w.0, w.1, "wrote"),
            (Some(c), _) => (c.0, c.1, "was told it held"),
            (None, Some(w)) => (w.0, w.1, "wrote"),
            (None, None) => continue,
        };
        out.push(Violation {
            kind: ViolationKind::ActedAfterLoss,
            name: name.to_owned(),
            first: g.r.clone(),
            second: None,
            at_ns: at,
            detail: format!(
                "{what} {:.3} ms after it was told of the loss or released",
                ms(at - end)
            ),
        });
    }
}

fn paused_between(life: &ClientLife, from: u64, to: u64) -> bool {
    life.pauses.iter().any(|&(s, e)| s <= to && e >= from)
}

fn takeovers(
    name: &str,
    gs: &[&Grant],
    lives: &HashMap<String, ClientLife>,
    no_life: &ClientLife,
    stats: &mut Stats,
    out: &mut Vec<Violation>,
) {
    // In grant order, which the tokens give (a broken order is reported on its own).
    let mut by_token: Vec<&Grant> = gs.to_vec();
    by_token.sort_by_key(|g| (g.r.token, g.acq_complete));
    for pair in by_token.windows(2) {
        let (g, next) = (pair[0], pair[1]);
        let b = next.acq_complete;
        if g.released.is_some_and(|r| r <= b) {
            continue;
        }
        stats.takeovers += 1;
        let life = lives.get(&g.r.client).unwrap_or(no_life);
        // The last instant the holder is known to have been running and believing.
        let believing = if g.true_checks.is_empty() {
            g.acq_invoke
        } else {
            g.last_true_invoke
        };
        if life.killed.is_some_and(|k| k <= b) {
            stats.takeovers_killed += 1;
        } else if g.told.is_some_and(|t| t <= b) {
            stats.takeovers_running += 1;
            stats.takeovers_told_in_time += 1;
        } else if paused_between(life, believing, b) {
            stats.takeovers_stopped += 1;
        } else {
            stats.takeovers_running += 1;
            out.push(Violation {
                kind: ViolationKind::LossNotTold,
                name: name.to_owned(),
                first: g.r.clone(),
                second: Some(next.r.clone()),
                at_ns: b,
                detail: match g.told {
                    Some(t) => format!(
                        "told {:.3} ms after the next grant",
                        ms(t.saturating_sub(b))
                    ),
                    None => "never told".to_owned(),
                },
            });
        }
    }
}

fn writes(name: &str, gs: &[&Grant], stats: &mut Stats, out: &mut Vec<Violation>) {
    // Earliest completed acquisition among grants with a token above each token.
    let mut by_token: Vec<(u64, u64)> = gs.iter().map(|g| (g.r.token, g.acq_complete)).collect();
    by_token.sort_unstable();
    let mut suffix_min = vec![u64::MAX; by_token.len() + 1];
    for i in (0..by_token.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(by_token[i].1);
    }
    let mut accepted: Vec<(u64, u64, u64, &Grant)> = Vec::new();
    for g in gs {
        let first_above = by_token.partition_point(|&(t, _)| t <= g.r.token);
        let superseded_at = suffix_min[first_above];
        for &(invoke, complete, result) in &g.writes {
            if invoke > superseded_at {
                stats.stale_writes += 1;
                if result == Some(false) {
                    stats.stale_writes_rejected += 1;
                }
            }
            if result == Some(true) {
                accepted.push((invoke, complete, g.r.token, g));
            }
        }
    }
    // An accepted write must not carry a token below one accepted before it was invoked.
    let mut by_complete = accepted.clone();
    by_complete.sort_by_key(|w| w.1);
    accepted.sort_by_key(|w| w.0);
    let mut p = 0;
    let mut max: Option<(u64, &Grant)> = None;
    for &(invoke, _, token, g) in &accepted {
        while p < by_complete.len() && by_complete[p].1 < invoke {
            if max.is_none_or(|(t, _)| by_complete[p].2 > t) {
                max = Some((by_complete[p].2, by_complete[p].3));
            }
            p += 1;
        }
        if let Some((t, m)) = max {
            if token < t {
                out.push(Violation {
                    kind: ViolationKind::StaleWriteAccepted,
                    name: name.to_owned(),
                    first: g.r.clone(),
                    second: Some(m.r.clone()),
                    at_ns: invoke,
                    detail: format!("accepted token {token} after token {t}"),
                });
            }
        }
    }
}

fn free_wait(
    name: &str,
    gs: &[&Grant],
    waits: &[(u64, u64)],
    lives: &HashMap<String, ClientLife>,
    no_life: &ClientLife,
    stats: &mut Stats,
) {
    // +1/−1 events: (instant, wait delta, hold delta).
    let mut ev: Vec<(u64, i64, i64)> = Vec::new();
    for &(s, e) in waits {
        ev.push((s, 1, 0));
        ev.push((e, -1, 0));
    }
    for g in gs {
        let life = lives.get(&g.r.client).unwrap_or(no_life);
        let mut end = g.ended().unwrap_or(g.last_activity);
        if let Some(k) = life.killed {
            end = end.min(k.max(g.acq_complete));
        }
        // A holder stopped and never again told it held stopped holding when it stopped.
        for &(s, _) in &life.pauses {
            if s >= g.acq_complete && s < end && g.last_true_invoke <= s {
                end = s;
            }
        }
        ev.push((g.acq_complete, 0, 1));
        ev.push((end.max(g.acq_complete), 0, -1));
    }
    // At one instant, starts before ends: a hand-off or a retry is not a gap.
    ev.sort_unstable_by_key(|&(t, dw, dh)| (t, std::cmp::Reverse(dw + dh)));
    let (mut w, mut h) = (0i64, 0i64);
    let mut free_since: Option<u64> = None;
    for (t, dw, dh) in ev {
        if let Some(s) = free_since {
            if t - s > stats.longest_free_wait_ns {
                stats.longest_free_wait_ns = t - s;
                stats.longest_free_wait_name = name.to_owned();
                stats.longest_free_wait_at_ns = s;
            }
        }
        w += dw;
        h += dh;
        free_since = if w > 0 && h <= 0 {
            free_since.or(Some(t))
        } else {
            None
        };
    }
}
