//! Redlock: a lease on a majority of N independent Redis servers.

use crate::builder::common_setters;
use crate::config::{redact_url, RedisConfig};
use crate::ghost::{release_in_background, GhostGuard};
use crate::listing::{scan_until_found, stale_cursor, Cursor};
use crate::node::{Acquire, Granted, Node, Renewal};
use crate::provider::{finite, grant_epochs, lease_info, lost};
use crate::record::{encode_rest, system_time_ms, RawInfo};
use crate::releases::Releases;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use leasing_abstractions::{
    clock_drift, validate_name, AcquireRequest, BoxFuture, ErrorKind, LeaseError, LeaseGrant,
    LeaseInfo, LeasePage, LeaseProvider, ListRequest, ProviderCapabilities, Result,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

mod acquire;
mod builder;

pub use builder::{RedlockLeaseProviderBuilder, URLS_ENV};

/// Redlock over N independent Redis servers, with fencing tokens that increase across
/// any majority.
///
/// * Acquire: the servers are tried in a fixed order until one answers (it serialises
///   contenders, so concurrent acquirers do not split the vote); when it grants, the others
///   are asked in parallel, and the round is decided as soon as a majority granted or can
///   no longer grant. A grant needs a majority and remaining validity
///   `duration − elapsed − drift > 0`; otherwise every server is cleaned up. Every
///   server's call is bounded by `min(call_timeout, duration / 10)`.
/// * Fencing: each server returns `max(its counter + 1, floor + 1)`; the client takes the
///   maximum `T` and, unless a majority already returned `T`, raises the counters of the
///   servers it holds to `T`. A grant is returned only once a majority stores ≥ `T`, so
///   the next grant's majority intersects it in a server whose counter is ≥ `T` — unless
///   counters were lost (see `docs/providers/redis.md`, "Fencing guarantees").
/// * Renew goes to every server and is decided as soon as a majority renewed or refused;
///   the lease is lost when more than N − quorum refuse. Release goes to every server.
pub struct RedlockLeaseProvider {
    nodes: Vec<Arc<Node>>,
    quorum: usize,
    urls: Vec<String>,
    config: RedisConfig,
    owner: String,
    releases: Arc<Releases>,
    /// Sent by a server's watcher when it answers again after going away.
    renew_now: broadcast::Sender<()>,
}

impl std::fmt::Debug for RedlockLeaseProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedlockLeaseProvider")
            .field("urls", &self.urls)
            .field("quorum", &self.quorum)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// No majority answered. When every server that failed refused the credentials (or the
/// configuration), that is the error (`Unauthorized`, `Configuration`: retrying does not
/// help, as with a wrong password on every server); otherwise `ProviderUnavailable`.
fn no_majority(name: &str, answered: usize, quorum: usize, errors: Vec<LeaseError>) -> LeaseError {
    for kind in [ErrorKind::Unauthorized, ErrorKind::Configuration] {
        let refused = errors.iter().filter(|e| e.kind() == kind).count();
        if refused > 0 && refused == errors.len() {
            let first = errors.into_iter().find(|e| e.kind() == kind);
            let mut e = LeaseError::new(
                kind,
                format!(
                    "{refused} Redlock servers refused ({}); a majority of {quorum} is needed",
                    kind.as_str()
                ),
            );
            if !name.is_empty() {
                e = e.with_lease_name(name);
            }
            return first.map_or(e.clone(), |first| e.with_source(first));
        }
    }
    let mut e = LeaseError::unavailable(format!(
        "only {answered} Redlock servers answered; a majority of {quorum} is needed"
    ));
    if !name.is_empty() {
        e = e.with_lease_name(name);
    }
    if let Some(first) = errors.into_iter().next() {
        e = e.with_source(first);
    }
    e
}

impl RedlockLeaseProvider {
    /// A builder.
    pub fn builder() -> RedlockLeaseProviderBuilder {
        RedlockLeaseProviderBuilder::new()
    }

    /// Servers needed for a majority.
    pub fn quorum(&self) -> usize {
        self.quorum
    }
}

/// Per-server outcomes of a release/inspect round.
fn tally<T>(results: Vec<Result<T>>) -> (Vec<T>, Vec<LeaseError>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

/// The outcome of a renewal round once it is known, from the servers' answers so far and
/// the number still `outstanding`: renewed by a majority; `Lost` once more than N − quorum
/// refused; unavailable once neither can happen any more; `None` while undecided.
fn renew_outcome(
    grant: &LeaseGrant,
    results: &[Result<bool>],
    outstanding: usize,
    n: usize,
    quorum: usize,
) -> Option<Result<()>> {
    let renewed = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let refused = results.iter().filter(|r| matches!(r, Ok(false))).count();
    if renewed >= quorum {
        return Some(Ok(()));
    }
    if refused > n - quorum {
        return Some(Err(lost(grant)));
    }
    if renewed + outstanding >= quorum || refused + outstanding > n - quorum {
        return None;
    }
    let errors = results.iter().filter_map(|r| r.as_ref().err().cloned());
    Some(Err(no_majority(
        &grant.name,
        renewed + refused,
        quorum,
        errors.collect(),
    )
    .with_lease_id(&grant.lease_id)))
}

impl RedlockLeaseProvider {
    async fn do_try_acquire(&self, request: &AcquireRequest) -> Result<Option<LeaseGrant>> {
        // The core validated the request; the name becomes a key, so it is checked again.
        validate_name(&request.name)?;
        let lease_id = uuid::Uuid::new_v4().simple().to_string();
        let sent_at = Instant::now();
        // acquire_inner cleans up every outcome it returns; the guard covers a caller that
        // drops (cancels) the call midway.
        let guard = GhostGuard::new(&self.nodes, &request.name, &lease_id);
        let r = self.acquire_inner(request, &lease_id, sent_at).await;
        guard.disarm();
        r
    }

    /// The renewal of `grant` on each server, with the server's epoch at the grant.
    fn renewals<'a>(&self, grant: &'a LeaseGrant) -> Vec<Renewal<'a>> {
        let epochs = grant_epochs(grant);
        (0..self.nodes.len())
            .map(|i| Renewal {
                name: &grant.name,
                lease_id: &grant.lease_id,
                ttl: finite(grant.duration),
                epoch: epochs.get(i).copied().flatten(),
            })
            .collect()
    }

    async fn do_renew(&self, grant: &LeaseGrant) -> Result<()> {
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .zip(self.renewals(grant))
            .map(|(n, r)| n.renew(r))
            .collect();
        let n = self.nodes.len();
        let mut results = Vec::with_capacity(n);
        // Decided as soon as the outcome is known; slower servers' renewals are dropped
        // (harmless: a renewal only extends this lease id).
        loop {
            if let Some(outcome) = renew_outcome(grant, &results, pending.len(), n, self.quorum) {
                return outcome;
            }
            if let Some(r) = pending.next().await {
                results.push(r);
            }
        }
    }

    async fn do_renew_many(&self, grants: &[Arc<LeaseGrant>]) -> Vec<Result<()>> {
        let per_grant_items: Vec<Vec<Renewal<'_>>> =
            grants.iter().map(|g| self.renewals(g)).collect();
        let per_node: Vec<Vec<Renewal<'_>>> = (0..self.nodes.len())
            .map(|i| per_grant_items.iter().map(|r| r[i]).collect())
            .collect();
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .zip(&per_node)
            .map(|(n, items)| n.renew_many(items))
            .collect();
        let n = self.nodes.len();
        let mut per_grant: Vec<Vec<Result<bool>>> = grants.iter().map(|_| Vec::new()).collect();
        loop {
            let outcomes: Vec<Option<Result<()>>> = grants
                .iter()
                .zip(&per_grant)
                .map(|(g, r)| renew_outcome(g, r, pending.len(), n, self.quorum))
                .collect();
            if outcomes.iter().all(Option::is_some) {
                return outcomes.into_iter().flatten().collect();
            }
            if let Some(node_results) = pending.next().await {
                for (slot, r) in per_grant.iter_mut().zip(node_results) {
                    slot.push(r);
                }
            }
        }
    }

    async fn do_release(&self, grant: &LeaseGrant) -> Result<()> {
        let results = join_all(
            self.nodes
                .iter()
                .map(|n| n.release(&grant.name, &grant.lease_id)),
        )
        .await;
        let (ok, errors) = tally(results);
        if ok.len() >= self.quorum {
            Ok(())
        } else {
            Err(no_majority(&grant.name, ok.len(), self.quorum, errors)
                .with_lease_id(&grant.lease_id))
        }
    }

    async fn do_inspect(&self, name: &str) -> Result<Option<LeaseInfo>> {
        validate_name(name)?;
        Ok(self.inspect_all(name).await?.map(|(info, _)| info))
    }

    /// The lease a majority holds on `name`, with the index of the first server (in URL
    /// order) that holds it.
    async fn inspect_all(&self, name: &str) -> Result<Option<(LeaseInfo, usize)>> {
        let results = join_all(self.nodes.iter().map(|n| n.inspect(name))).await;
        let answered = results.iter().filter(|r| r.is_ok()).count();
        if answered < self.quorum {
            let (_, errors) = tally(results);
            return Err(no_majority(name, answered, self.quorum, errors));
        }
        let mut by_id: HashMap<Option<String>, Vec<(usize, RawInfo)>> = HashMap::new();
        for (i, info) in results.into_iter().enumerate() {
            if let Ok(Some(info)) = info {
                by_id
                    .entry(info.lease_id.clone())
                    .or_default()
                    .push((i, info));
            }
        }
        let Some((_, infos)) = by_id.into_iter().find(|(_, v)| v.len() >= self.quorum) else {
            return Ok(None);
        };
        let first = infos.iter().map(|(i, _)| *i).min().unwrap_or(0);
        // The lease's token is the one a majority stores (at least): the quorum-th largest
        // (a server that granted late records the lease's token once settled).
        let mut tokens: Vec<u64> = infos.iter().map(|(_, i)| i.token).collect();
        tokens.sort_unstable_by(|a, b| b.cmp(a));
        let token = tokens[self.quorum - 1];
        let expires = infos.iter().filter_map(|(_, i)| i.expires_ms).min();
        let acquired = infos.iter().map(|(_, i)| i.acquired_ms).min().unwrap_or(0);
        // (A majority is at least one server.)
        Ok(infos.into_iter().next().map(|(_, mut merged)| {
            merged.token = token;
            merged.expires_ms = expires;
            merged.acquired_ms = acquired;
            (lease_info(name, merged), first)
        }))
    }

    /// Listing: a name is listed when a majority holds it under one lease id. The servers
    /// are scanned one after the other (in URL order; one that does not answer is skipped,
    /// and more than N − quorum skipped in one call is `ProviderUnavailable`), and a name is
    /// listed from the first answering server that holds the majority's lease, never twice.
    async fn do_list(&self, request: &ListRequest) -> Result<LeasePage> {
        let mut cursor = Cursor::parse(request.cursor.as_deref())?;
        if cursor.space >= self.nodes.len() {
            return Err(stale_cursor());
        }
        let mut errors = Vec::new();
        loop {
            let node = &self.nodes[cursor.space];
            let scanned = scan_until_found(
                node,
                &[None],
                Cursor { space: 0, ..cursor },
                &request.prefix,
                request.limit,
            )
            .await;
            let (names, next) = match scanned {
                Ok(found) => found,
                Err(e) => {
                    errors.push(e);
                    if errors.len() > self.nodes.len() - self.quorum {
                        return Err(no_majority("", 0, self.quorum, errors));
                    }
                    (Vec::new(), None)
                }
            };
            let infos = join_all(names.iter().map(|n| self.inspect_all(n))).await;
            let mut leases = Vec::new();
            for info in infos {
                match info? {
                    Some((info, first)) if first == cursor.space => leases.push(info),
                    _ => {}
                }
            }
            let next = match next {
                Some(c) => Some(Cursor {
                    space: cursor.space,
                    ..c
                }),
                None if cursor.space + 1 < self.nodes.len() => Some(Cursor {
                    space: cursor.space + 1,
                    ..Cursor::START
                }),
                None => None,
            };
            match next {
                Some(c) if leases.is_empty() => cursor = c,
                next => return Ok(LeasePage::new(leases, next.map(Cursor::render))),
            }
        }
    }

    async fn do_break_lease(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        let results = join_all(self.nodes.iter().map(|n| n.break_lease(name))).await;
        let (ok, errors) = tally(results);
        if ok.len() < self.quorum {
            return Err(no_majority(name, ok.len(), self.quorum, errors));
        }
        Ok(ok.into_iter().any(|b| b))
    }
}

crate::provider::redis_lease_provider!(RedlockLeaseProvider, "redlock", |p| Some(
    p.renew_now.subscribe()
));

#[cfg(test)]
mod tests {
    use super::*;
    use leasing_abstractions::{ErrorKind, Metadata};

    fn grant() -> LeaseGrant {
        let req = AcquireRequest::new("n", Duration::from_secs(1), Metadata::new());
        LeaseGrant::new(&req, "id", 1, std::time::SystemTime::now(), Instant::now())
    }

    #[test]
    fn the_builders_debug_hides_passwords() {
        let b = RedlockLeaseProviderBuilder::new().urls([
            "redis://user:hunter2@a:6379",
            "redis://:pw-secret@b:6379",
            "redis://c:6379",
        ]);
        let d = format!("{b:?} {b:#?}");
        assert!(!d.contains("hunter2") && !d.contains("pw-secret"), "{d}");
        assert!(
            d.contains("redis://***@a:6379") && d.contains("redis://c:6379"),
            "{d}"
        );
    }

    #[test]
    fn renew_needs_a_majority() {
        let g = grant();
        let down = || Err(LeaseError::unavailable("down"));
        let decide = |r: Vec<Result<bool>>| renew_outcome(&g, &r, 5 - r.len(), 5, 3);
        assert!(matches!(
            decide(vec![Ok(true), Ok(true), Ok(true), down(), down()]),
            Some(Ok(()))
        ));
        let e = decide(vec![Ok(false), Ok(false), Ok(false), Ok(true), Ok(true)])
            .expect("decided")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Lost);
        let e = decide(vec![Ok(true), Ok(true), down(), down(), down()])
            .expect("decided")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        assert!(std::error::Error::source(&e).is_some());
        // Decided as soon as the outcome is known, without waiting for the slow servers.
        assert!(matches!(
            decide(vec![Ok(true), Ok(true), Ok(true)]),
            Some(Ok(()))
        ));
        let e = decide(vec![Ok(false), Ok(false), Ok(false)])
            .expect("decided")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Lost);
        let e = decide(vec![down(), down(), down()])
            .expect("decided")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        // Undecided: a majority may still renew, or the lease may still turn out lost.
        assert!(decide(vec![Ok(true), Ok(true)]).is_none());
        assert!(decide(vec![Ok(false), Ok(false), down()]).is_none());
        assert!(decide(vec![]).is_none());
    }

    #[test]
    fn no_majority_names_refusals_that_retrying_cannot_fix() {
        let unauthorized = || LeaseError::new(ErrorKind::Unauthorized, "WRONGPASS");
        let e = no_majority("n", 0, 2, vec![unauthorized(), unauthorized()]);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(e.lease_name(), Some("n"));
        assert!(std::error::Error::source(&e).is_some());
        let e = no_majority("", 0, 2, vec![unauthorized()]);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(e.lease_name(), None);
        // Mixed with an outage: retrying may help.
        let e = no_majority(
            "n",
            0,
            2,
            vec![unauthorized(), LeaseError::unavailable("down")],
        );
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        let e = no_majority("", 1, 2, vec![]);
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        assert_eq!(e.lease_name(), None);
        assert!(std::error::Error::source(&e).is_none());
    }

    #[tokio::test]
    async fn listing_needs_a_majority_and_a_known_cursor() {
        // Nothing listens on these ports: every scan fails.
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .unwrap_or(1)
            })
            .collect();
        let p = RedlockLeaseProvider::builder()
            .urls(ports.iter().map(|p| format!("redis://127.0.0.1:{p}")))
            .connect_timeout(Duration::from_millis(200))
            .connect_lazily()
            .await
            .expect("lazy build");
        let e = p.list(&ListRequest::new("")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        let e = p
            .list(&ListRequest::new("").with_cursor(Some("7:0".into())))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[tokio::test]
    async fn builder_rejects_bad_server_lists() {
        let e = RedlockLeaseProvider::builder().build().await.unwrap_err();
        assert_eq!(e.field(), Some("urls"));
        let e = RedlockLeaseProvider::builder()
            .urls(["redis://a:1", "redis://a:1"])
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some("urls"));
        let e = RedlockLeaseProvider::builder()
            .urls(["http://a:1"])
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some("url"));
        let e = RedlockLeaseProvider::builder()
            .urls(["redis://a:1"])
            .key_prefix("{")
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some("key_prefix"));
        let _ = RedlockLeaseProviderBuilder::from_env();
    }
}
