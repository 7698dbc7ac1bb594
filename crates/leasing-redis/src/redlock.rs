//! Redlock: a lease on a majority of N independent Redis servers.

use crate::config::{common_setters, redact_url, RedisConfig};
use crate::node::{system_time_ms, Node, RawInfo};
use crate::provider::{capabilities, finite, lost, owner_id};
use crate::releases::Releases;
use futures::future::join_all;
use leasing_abstractions::{
    clock_drift, validate_name, validate_request, AcquireRequest, BoxFuture, LeaseError,
    LeaseGrant, LeaseInfo, LeaseProvider, ProviderCapabilities, Result,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Environment variable [`RedlockLeaseProviderBuilder::from_env`] reads the URLs from
/// (comma-separated).
pub const URLS_ENV: &str = "LEASING_REDLOCK_URLS";

/// Builds a [`RedlockLeaseProvider`].
#[derive(Debug, Clone, Default)]
pub struct RedlockLeaseProviderBuilder {
    urls: Vec<String>,
    config: RedisConfig,
}

impl RedlockLeaseProviderBuilder {
    /// A builder without servers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder over the comma-separated URLs of `LEASING_REDLOCK_URLS`.
    pub fn from_env() -> Self {
        Self::new().urls(std::env::var(URLS_ENV).unwrap_or_default().split(','))
    }

    /// The servers (independent instances, not replicas). Every client must use the same
    /// set; order does not matter (they are sorted).
    pub fn urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.urls = urls
            .into_iter()
            .map(|u| u.as_ref().trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        self
    }

    common_setters!();

    /// Validates the configuration and creates one lazily connected client per server
    /// (a server that is down at start-up does not stop the build).
    ///
    /// # Errors
    /// `Configuration` for no servers, a duplicate or malformed URL, or a bad field.
    pub async fn build(mut self) -> Result<RedlockLeaseProvider> {
        if self.urls.is_empty() {
            return Err(LeaseError::configuration(
                "urls",
                "at least one server is needed (an odd number ≥ 3 is recommended)",
            ));
        }
        self.urls.sort();
        if self.urls.windows(2).any(|w| w[0] == w[1]) {
            return Err(LeaseError::configuration(
                "urls",
                "the same server is listed twice",
            ));
        }
        self.config.url = self.urls[0].clone();
        self.config.validate()?;
        let releases = Arc::new(Releases::new());
        let mut nodes = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            nodes.push(Node::connect(&self.config, url, releases.clone(), true).await?);
        }
        Ok(RedlockLeaseProvider {
            quorum: nodes.len() / 2 + 1,
            nodes,
            urls: self.urls.iter().map(|u| redact_url(u)).collect(),
            config: self.config,
            owner: owner_id(),
            releases,
        })
    }
}

/// Redlock over N independent Redis servers, with fencing tokens that increase across
/// any majority.
///
/// * Acquire: the servers are tried in a fixed order until one answers (it serialises
///   contenders, so concurrent acquirers do not split the vote); when it grants, the others
///   are asked in parallel. A grant needs a majority and remaining validity
///   `duration − elapsed − drift > 0`; otherwise every server is cleaned up.
/// * Fencing: each server returns `max(its counter + 1, floor + 1)`; the client takes the
///   maximum `T` and, unless a majority already returned `T`, raises the counters of the
///   servers it holds to `T`. A grant is returned only once a majority stores ≥ `T`, so
///   the next grant's majority intersects it in a server whose counter is ≥ `T`.
/// * Renew and release go to every server; the lease is lost when a majority says so.
pub struct RedlockLeaseProvider {
    nodes: Vec<Node>,
    quorum: usize,
    urls: Vec<String>,
    config: RedisConfig,
    owner: String,
    releases: Arc<Releases>,
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

fn no_majority(name: &str, answered: usize, quorum: usize, errors: Vec<LeaseError>) -> LeaseError {
    let mut e = LeaseError::unavailable(format!(
        "only {answered} Redlock servers answered; a majority of {quorum} is needed"
    ))
    .with_lease_name(name);
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

    fn remaining(sent_at: Instant, validity: Duration) -> Duration {
        validity.saturating_sub(sent_at.elapsed())
    }

    async fn cleanup(&self, name: &str, lease_id: &str) {
        let _ = join_all(self.nodes.iter().map(|n| n.release(name, lease_id))).await;
    }

    async fn acquire_inner(
        &self,
        request: &AcquireRequest,
        lease_id: &str,
        sent_at: Instant,
    ) -> Result<Option<LeaseGrant>> {
        let name = request.name.as_str();
        let ttl = finite(request.duration);
        let validity = ttl.saturating_sub(clock_drift(ttl));
        let md = &request.metadata;
        let n = self.nodes.len();
        let mut errors = Vec::new();
        // Phase A: the first server that answers decides between contenders; give up as
        // soon as too many have failed for a majority to remain possible.
        let mut first = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if errors.len() > n - self.quorum {
                break;
            }
            let limit = Self::remaining(sent_at, validity);
            match node
                .acquire(name, lease_id, ttl, 0, &self.owner, md, limit)
                .await
            {
                Ok(Some(t)) => {
                    first = Some((i, t));
                    break;
                }
                Ok(None) => return Ok(None),
                Err(e) => errors.push(e),
            }
        }
        let Some((first_idx, (first_token, acquired_ms))) = first else {
            return Err(no_majority(name, 0, self.quorum, errors));
        };
        // Phase B: the others in parallel, never below the first server's token.
        let limit = Self::remaining(sent_at, validity);
        let floor = first_token.saturating_sub(1);
        let others = join_all(
            self.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != first_idx)
                .map(|(i, node)| async move {
                    (
                        i,
                        node.acquire(name, lease_id, ttl, floor, &self.owner, md, limit)
                            .await,
                    )
                }),
        )
        .await;
        let mut held: Vec<(usize, u64)> = vec![(first_idx, first_token)];
        let mut answered = 1;
        for (i, r) in others {
            match r {
                Ok(Some((t, _))) => {
                    held.push((i, t));
                    answered += 1;
                }
                Ok(None) => answered += 1,
                Err(e) => errors.push(e),
            }
        }
        if held.len() < self.quorum {
            self.cleanup(name, lease_id).await;
            return if answered < self.quorum {
                Err(no_majority(name, answered, self.quorum, errors))
            } else {
                Ok(None)
            };
        }
        // Phase C: make a majority store the chosen token.
        let token = held.iter().map(|h| h.1).max().unwrap_or(first_token);
        let mut confirmed = held.iter().filter(|h| h.1 == token).count();
        if confirmed < self.quorum {
            let limit = Self::remaining(sent_at, validity);
            let raised = join_all(
                held.iter()
                    .filter(|h| h.1 < token)
                    .map(|h| self.nodes[h.0].fence(name, lease_id, token, limit)),
            )
            .await;
            confirmed += raised.into_iter().filter(|r| matches!(r, Ok(true))).count();
        }
        if confirmed < self.quorum || Self::remaining(sent_at, validity).is_zero() {
            self.cleanup(name, lease_id).await;
            return Err(LeaseError::unavailable(format!(
                "Redlock acquisition of a majority did not complete within the validity budget of {validity:?}"
            ))
            .with_lease_name(name));
        }
        Ok(Some(LeaseGrant::new(
            request,
            lease_id,
            token,
            system_time_ms(acquired_ms),
            sent_at,
        )))
    }
}

/// Whether a renewal/release/inspect round reached a majority; per-server outcomes.
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

fn renew_outcome(
    grant: &LeaseGrant,
    results: Vec<Result<bool>>,
    n: usize,
    quorum: usize,
) -> Result<()> {
    let (ok, errors) = tally(results);
    let renewed = ok.iter().filter(|r| **r).count();
    let refused = ok.len() - renewed;
    if renewed >= quorum {
        Ok(())
    } else if refused > n - quorum {
        Err(lost(grant))
    } else {
        Err(no_majority(&grant.name, ok.len(), quorum, errors).with_lease_id(&grant.lease_id))
    }
}

impl RedlockLeaseProvider {
    async fn do_try_acquire(&self, request: &AcquireRequest) -> Result<Option<LeaseGrant>> {
        validate_request(request, &self.capabilities())?;
        let lease_id = uuid::Uuid::new_v4().simple().to_string();
        let sent_at = Instant::now();
        self.acquire_inner(request, &lease_id, sent_at).await
    }

    async fn do_renew(&self, grant: &LeaseGrant) -> Result<()> {
        let ttl = finite(grant.duration);
        let results = join_all(
            self.nodes
                .iter()
                .map(|n| n.renew(&grant.name, &grant.lease_id, ttl)),
        )
        .await;
        renew_outcome(grant, results, self.nodes.len(), self.quorum)
    }

    async fn do_renew_many(&self, grants: &[Arc<LeaseGrant>]) -> Vec<Result<()>> {
        let items: Vec<(&str, &str, Duration)> = grants
            .iter()
            .map(|g| (g.name.as_str(), g.lease_id.as_str(), finite(g.duration)))
            .collect();
        let per_node = join_all(self.nodes.iter().map(|n| n.renew_many(&items))).await;
        let mut per_grant: Vec<Vec<Result<bool>>> = grants.iter().map(|_| Vec::new()).collect();
        for node_results in per_node {
            for (slot, r) in per_grant.iter_mut().zip(node_results) {
                slot.push(r);
            }
        }
        grants
            .iter()
            .zip(per_grant)
            .map(|(g, results)| renew_outcome(g, results, self.nodes.len(), self.quorum))
            .collect()
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
        let results = join_all(self.nodes.iter().map(|n| n.inspect(name))).await;
        let (ok, errors) = tally(results);
        if ok.len() < self.quorum {
            return Err(no_majority(name, ok.len(), self.quorum, errors));
        }
        let mut by_id: HashMap<Option<String>, Vec<RawInfo>> = HashMap::new();
        for info in ok.into_iter().flatten() {
            by_id.entry(info.lease_id.clone()).or_default().push(info);
        }
        let Some((id, infos)) = by_id.into_iter().find(|(_, v)| v.len() >= self.quorum) else {
            return Ok(None);
        };
        let token = infos.iter().map(|i| i.token).max().unwrap_or(0);
        let expires = infos.iter().filter_map(|i| i.expires_ms).min();
        let acquired = infos.iter().map(|i| i.acquired_ms).min().unwrap_or(0);
        let metadata = infos
            .into_iter()
            .next()
            .map(|i| i.metadata)
            .unwrap_or_default();
        Ok(Some(LeaseInfo::new(
            name,
            id,
            token,
            system_time_ms(acquired),
            expires.map(system_time_ms),
            metadata,
        )))
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

impl LeaseProvider for RedlockLeaseProvider {
    fn provider_name(&self) -> &'static str {
        "redlock"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        capabilities(self.config.max_renew_batch)
    }

    fn release_notifications(&self, name: &str) -> Option<broadcast::Receiver<String>> {
        Some(self.releases.receiver(name))
    }

    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(self.do_try_acquire(request))
    }

    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.do_renew(grant))
    }

    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(self.do_renew_many(grants))
    }

    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.do_release(grant))
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(self.do_inspect(name))
    }

    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.do_break_lease(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasing_abstractions::{ErrorKind, Metadata};

    fn grant() -> LeaseGrant {
        let req = AcquireRequest::new("n", Duration::from_secs(1), Metadata::new());
        LeaseGrant::new(&req, "id", 1, std::time::SystemTime::now(), Instant::now())
    }

    #[test]
    fn renew_needs_a_majority() {
        let g = grant();
        let down = || Err(LeaseError::unavailable("down"));
        assert!(
            renew_outcome(&g, vec![Ok(true), Ok(true), Ok(true), down(), down()], 5, 3).is_ok()
        );
        let e = renew_outcome(
            &g,
            vec![Ok(false), Ok(false), Ok(false), Ok(true), Ok(true)],
            5,
            3,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Lost);
        let e =
            renew_outcome(&g, vec![Ok(true), Ok(true), down(), down(), down()], 5, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        assert!(std::error::Error::source(&e).is_some());
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
