//! The rules the checker applies to each name's grants: overlap, token order, acting
//! after a loss, takeovers, stale writes, and the wait for a free name.

use super::*;

/// When `g`'s holder certainly believed it held the name: from its acquisition's
/// completion to the invoke of its last `held: true`; `None` without such a check (it was
/// granted at some unknown instant of its acquisition, and may have been stopped before
/// it learned of it, as a late grant).
pub(super) fn certain(g: &Grant) -> Option<(u64, u64)> {
    (!g.true_checks.is_empty()).then_some((g.acq_complete, g.last_true_invoke))
}

pub(super) fn overlaps(name: &str, gs: &[&Grant], out: &mut Vec<Violation>) {
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

pub(super) fn token_order(name: &str, gs: &[&Grant], out: &mut Vec<Violation>) {
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

pub(super) fn acted_after_loss(name: &str, gs: &[&Grant], out: &mut Vec<Violation>) {
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

pub(super) fn paused_between(life: &ClientLife, from: u64, to: u64) -> bool {
    life.pauses.iter().any(|&(s, e)| s <= to && e >= from)
}

pub(super) fn takeovers(
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

pub(super) fn writes(name: &str, gs: &[&Grant], stats: &mut Stats, out: &mut Vec<Violation>) {
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

pub(super) fn free_wait(
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
