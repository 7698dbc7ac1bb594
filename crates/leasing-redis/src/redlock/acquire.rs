//! Redlock's acquisition: the first server serialises contenders, the others are asked
//! in parallel, the token is raised across the majority, and late answers are settled.

use super::*;
use crate::error::Op;
use std::future::Future;

impl RedlockLeaseProvider {
    fn remaining(sent_at: Instant, validity: Duration) -> Duration {
        validity.saturating_sub(sent_at.elapsed())
    }

    /// The deadline of one server's acquire call for a lease of `ttl`: a small fraction of
    /// the TTL (as Redlock recommends), never more than `call_timeout`, so one slow or
    /// blackholed server cannot eat a lease's validity. Redlock's own arithmetic (inside
    /// the core's deadline for the whole acquire).
    pub(super) fn per_server(&self, ttl: Duration) -> Duration {
        (ttl / PER_SERVER_FRACTION)
            .max(MIN_PER_SERVER)
            .min(self.config.call_timeout)
    }

    /// Releases `lease_id` on every server in the background and waits for them up to
    /// `wait` (the answering servers are clean when this returns; a slow one is released
    /// whenever its connection delivers).
    async fn cleanup(&self, name: &str, lease_id: &str, wait: Duration) {
        let handles: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| release_in_background(n, name, lease_id))
            .collect();
        let _ = tokio::time::timeout(wait, join_all(handles)).await;
    }

    /// Best-effort release in the background on the servers not marked in `answered`
    /// (their acquire failed or timed out, and may still grant late).
    fn release_uncertain(&self, name: &str, lease_id: &str, answered: &[bool]) {
        for (node, done) in self.nodes.iter().zip(answered) {
            if !done {
                release_in_background(node, name, lease_id);
            }
        }
    }

    pub(super) async fn acquire_inner(
        &self,
        request: &AcquireRequest,
        lease_id: &str,
        sent_at: Instant,
    ) -> Result<Option<LeaseGrant>> {
        let name = request.name.as_str();
        let ttl = finite(request.duration);
        let validity = ttl.saturating_sub(clock_drift(ttl));
        let per_server = self.per_server(ttl);
        let limit = || Self::remaining(sent_at, validity).min(per_server);
        let rest: Arc<[u8]> = encode_rest(&self.owner, &request.metadata).into();
        let ask = Acquire {
            name,
            lease_id,
            ttl,
            floor: 0,
            rest: &rest,
        };
        let n = self.nodes.len();
        let mut epochs: Vec<Option<u64>> = vec![None; n];
        let mut errors = Vec::new();
        // Servers that answered (granted or refused); the others may grant late.
        let mut answered = vec![false; n];
        // Phase A: the first server that answers decides between contenders; give up as
        // soon as too many have failed for a majority to remain possible.
        let mut first = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if errors.len() > n - self.quorum {
                break;
            }
            match bounded(name, limit(), node.acquire(ask)).await {
                Ok(Some(g)) => {
                    answered[i] = true;
                    epochs[i] = Some(g.epoch);
                    first = Some((i, g));
                    break;
                }
                Ok(None) => {
                    if !errors.is_empty() {
                        // An earlier server failed after its script may have run.
                        self.cleanup(name, lease_id, per_server).await;
                    }
                    return Ok(None);
                }
                Err(e) => errors.push(e),
            }
        }
        let Some((
            first_idx,
            Granted {
                token: first_token,
                acquired_ms,
                ..
            },
        )) = first
        else {
            self.cleanup(name, lease_id, per_server).await;
            return Err(no_majority(name, 0, self.quorum, errors));
        };
        // Phase B: the others in parallel, never below the first server's token; decided
        // as soon as a majority granted or can no longer grant. The calls own their
        // arguments so that the slower servers' answers can be settled in the background.
        let floor = first_token.saturating_sub(1);
        let lim = limit();
        let mut pending: FuturesUnordered<_> = (0..n)
            .filter(|i| *i != first_idx)
            .map(|i| {
                let node = self.nodes[i].clone();
                let (name, id, rest) = (name.to_owned(), lease_id.to_owned(), rest.clone());
                async move {
                    let ask = Acquire {
                        name: &name,
                        lease_id: &id,
                        ttl,
                        floor,
                        rest: &rest,
                    };
                    let r = bounded(&name, lim, node.acquire(ask)).await;
                    (i, r)
                }
            })
            .collect();
        let mut outstanding = vec![true; n];
        outstanding[first_idx] = false;
        let mut held: Vec<(usize, u64)> = vec![(first_idx, first_token)];
        let mut refused = 0;
        while held.len() < self.quorum && held.len() + pending.len() >= self.quorum {
            let Some((i, r)) = pending.next().await else {
                break;
            };
            outstanding[i] = false;
            match r {
                Ok(Some(g)) => {
                    answered[i] = true;
                    epochs[i] = Some(g.epoch);
                    held.push((i, g.token));
                }
                Ok(None) => {
                    answered[i] = true;
                    refused += 1;
                }
                Err(e) => errors.push(e),
            }
        }
        if held.len() < self.quorum {
            // The slower calls are dropped; the releases queue behind them.
            drop(pending);
            self.cleanup(name, lease_id, per_server).await;
            return if errors.len() > n - self.quorum {
                Err(no_majority(name, held.len() + refused, self.quorum, errors))
            } else {
                Ok(None)
            };
        }
        // Phase C: make a majority store the chosen token.
        let token = held.iter().map(|h| h.1).max().unwrap_or(first_token);
        let mut confirmed = held.iter().filter(|h| h.1 == token).count();
        if confirmed < self.quorum {
            let lim = limit();
            let raised = join_all(
                held.iter()
                    .filter(|h| h.1 < token)
                    .map(|h| bounded(name, lim, self.nodes[h.0].fence(name, lease_id, token))),
            )
            .await;
            confirmed += raised.into_iter().filter(|r| matches!(r, Ok(true))).count();
        }
        if confirmed < self.quorum || Self::remaining(sent_at, validity).is_zero() {
            drop(pending);
            self.cleanup(name, lease_id, per_server).await;
            return Err(LeaseError::unavailable(format!(
                "Redlock acquisition of a majority did not complete within the validity budget of {validity:?}"
            ))
            .with_lease_name(name));
        }
        // Granted: the servers that failed may still grant late (release them); the ones
        // still outstanding join the lease when they answer, at the chosen token.
        for (done, out) in answered.iter_mut().zip(&outstanding) {
            *done |= *out;
        }
        self.release_uncertain(name, lease_id, &answered);
        let nodes = self.nodes.clone();
        let (name_s, id) = (name.to_owned(), lease_id.to_owned());
        tokio::spawn(async move {
            while let Some((i, r)) = pending.next().await {
                settle_late(&nodes[i], &name_s, &id, token, r).await;
            }
        });
        // The version records each server's epoch at the grant (empty for a server that
        // joins late): a server replaced since then refuses the renewal without being asked.
        let version = epochs
            .iter()
            .map(|e| e.map(|e| e.to_string()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Some(
            LeaseGrant::new(
                request,
                lease_id,
                token,
                system_time_ms(acquired_ms),
                sent_at,
            )
            .with_version(version),
        ))
    }
}

/// A server that answered phase B after a majority had granted: a grant joins the lease
/// at the chosen `token` (`fence.lua` records it in the lease and raises the counter to
/// it, never lowering a counter that is already above), so every server holding the lease
/// stores the lease's token; a failed call, which may still have granted, is released.
async fn settle_late(
    node: &Node,
    name: &str,
    lease_id: &str,
    token: u64,
    r: Result<Option<Granted>>,
) {
    let settled = match r {
        Ok(None) => Ok(false),
        Ok(Some(_)) => node.fence(name, lease_id, token).await,
        Err(_) => node.release(name, lease_id).await,
    };
    if let Err(e) = settled {
        tracing::debug!(error = %e, "settling a late Redlock answer failed");
    }
}

/// One server's call of the acquisition, within Redlock's per-server budget `limit`: past
/// it the call is dropped (the node then checks who its server is before the next call)
/// and the server counts as failed.
async fn bounded<T>(
    name: &str,
    limit: Duration,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(crate::error::timeout(Op::Acquire, Some(name), limit)))
}

/// A server's call gets at most `ttl / PER_SERVER_FRACTION` …
const PER_SERVER_FRACTION: u32 = 10;
/// … but at least this long.
const MIN_PER_SERVER: Duration = Duration::from_millis(10);
