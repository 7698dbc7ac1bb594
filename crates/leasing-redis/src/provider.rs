//! The single-instance Redis provider.

use crate::config::{RedisConfig, RedisLeaseProviderBuilder};
use crate::node::{system_time_ms, GhostGuard, Node};
use crate::releases::Releases;
use leasing_abstractions::{
    validate_name, validate_request, AcquireRequest, BoxFuture, LeaseError, LeaseGrant, LeaseInfo,
    LeaseProvider, ProviderCapabilities, Result,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Shortest lease accepted (Redis TTLs are in milliseconds; shorter leases cannot be
/// renewed in time over a network).
pub const MIN_DURATION: Duration = Duration::from_millis(100);
/// Longest lease accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

pub(crate) fn capabilities(batch: usize) -> ProviderCapabilities {
    ProviderCapabilities::new(MIN_DURATION, MAX_DURATION).with_max_renew_batch(batch)
}

pub(crate) fn finite(req_duration: leasing_abstractions::LeaseDuration) -> Duration {
    // validate_request has rejected infinite durations (capabilities say no).
    req_duration.as_finite().unwrap_or(MAX_DURATION)
}

/// Leases on one Redis server, or on one Redis Cluster
/// ([`cluster_urls`](RedisLeaseProviderBuilder::cluster_urls); every key of a name shares
/// one hash slot through the `{<name>}` tag, and redis-rs' cluster connection routes each
/// script to the master of that slot, following `MOVED`/`ASK`).
///
/// Storage: one hash per lease at `{prefix}{<name>}` with fields `leaseId`,
/// `fencingToken`, `owner`, `acquiredAt` (server ms) and `meta_<key>`, with a PEXPIRE TTL;
/// the fencing counter at `{prefix}{<name>}:fence` (no TTL). All writes are Lua scripts
/// run by SHA. Releases of names someone found held are announced on
/// `{prefix}{<name>}:released`, which a provider subscribes only while one of its callers
/// waits for that name.
///
/// # Example
/// ```no_run
/// # async fn f() -> leasing_abstractions::Result<()> {
/// use leasing_abstractions::{LeaseManager, LeaseOptions};
/// use leasing_redis::RedisLeaseProvider;
/// use std::sync::Arc;
/// let provider = RedisLeaseProvider::builder().url("redis://127.0.0.1:6379").build().await?;
/// let manager = LeaseManager::new(Arc::new(provider), LeaseOptions::default())?;
/// let lease = manager.acquire("invoice-batch-42").await?;
/// lease.release().await?;
/// # Ok(()) }
/// ```
pub struct RedisLeaseProvider {
    node: [Arc<Node>; 1],
    config: RedisConfig,
    owner: String,
    releases: Arc<Releases>,
}

impl std::fmt::Debug for RedisLeaseProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaseProvider")
            .field("config", &self.config)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl RedisLeaseProvider {
    /// A builder with the defaults.
    pub fn builder() -> RedisLeaseProviderBuilder {
        RedisLeaseProviderBuilder::new()
    }

    /// Builds a provider for `LEASING_REDIS_URL` (default `redis://127.0.0.1:6379`).
    ///
    /// # Errors
    /// As [`RedisLeaseProviderBuilder::build`].
    pub async fn from_env() -> Result<Self> {
        RedisLeaseProviderBuilder::from_env().build().await
    }

    pub(crate) async fn from_config(config: RedisConfig) -> Result<Self> {
        config.validate()?;
        let releases = Arc::new(Releases::new());
        let node = if config.cluster_urls.is_empty() {
            Node::connect(&config, &config.url, releases.clone(), false).await?
        } else {
            Node::connect_cluster(&config, releases.clone()).await?
        };
        Ok(Self {
            node: [Arc::new(node)],
            owner: owner_id(),
            config,
            releases,
        })
    }

    /// The configuration (secrets redacted in its `Debug`).
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }
}

pub(crate) fn owner_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    format!(
        "{host}/{}/{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

impl RedisLeaseProvider {
    async fn do_try_acquire(&self, request: &AcquireRequest) -> Result<Option<LeaseGrant>> {
        validate_request(request, &self.capabilities())?;
        let ttl = finite(request.duration);
        let lease_id = uuid::Uuid::new_v4().simple().to_string();
        let sent_at = Instant::now();
        // From here on the script may reach the server: if the answer is lost (error,
        // timeout, cancellation), release the possible grant in the background.
        let guard = GhostGuard::new(&self.node, &request.name, &lease_id);
        let got = self.node[0]
            .acquire(
                &request.name,
                &lease_id,
                ttl,
                0,
                &self.owner,
                &request.metadata,
                self.config.call_timeout,
            )
            .await?;
        guard.disarm();
        Ok(got.map(|(token, acquired_ms)| {
            LeaseGrant::new(
                request,
                lease_id,
                token,
                system_time_ms(acquired_ms),
                sent_at,
            )
        }))
    }

    async fn do_renew(&self, grant: &LeaseGrant) -> Result<()> {
        let ttl = finite(grant.duration);
        if self.node[0]
            .renew(&grant.name, &grant.lease_id, ttl, self.config.call_timeout)
            .await?
        {
            Ok(())
        } else {
            Err(lost(grant))
        }
    }

    async fn do_renew_many(&self, grants: &[Arc<LeaseGrant>]) -> Vec<Result<()>> {
        let items: Vec<(&str, &str, Duration)> = grants
            .iter()
            .map(|g| (g.name.as_str(), g.lease_id.as_str(), finite(g.duration)))
            .collect();
        self.node[0]
            .renew_many(&items, self.config.call_timeout)
            .await
            .into_iter()
            .zip(grants)
            .map(|(r, g)| match r {
                Ok(true) => Ok(()),
                Ok(false) => Err(lost(g)),
                Err(e) => Err(e.with_lease_id(&g.lease_id)),
            })
            .collect()
    }

    async fn do_release(&self, grant: &LeaseGrant) -> Result<()> {
        self.node[0]
            .release(&grant.name, &grant.lease_id)
            .await
            .map(drop)
            .map_err(|e| e.with_lease_id(&grant.lease_id))
    }

    async fn do_inspect(&self, name: &str) -> Result<Option<LeaseInfo>> {
        validate_name(name)?;
        Ok(self.node[0].inspect(name).await?.map(|i| {
            LeaseInfo::new(
                name,
                i.lease_id,
                i.token,
                system_time_ms(i.acquired_ms),
                i.expires_ms.map(system_time_ms),
                i.metadata,
            )
        }))
    }

    async fn do_break_lease(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        self.node[0].break_lease(name).await
    }
}

impl LeaseProvider for RedisLeaseProvider {
    fn provider_name(&self) -> &'static str {
        "redis"
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

pub(crate) fn lost(grant: &LeaseGrant) -> LeaseError {
    LeaseError::lost(
        "the lease is no longer held under this lease id (expired, released, broken or taken over)",
    )
    .with_lease_name(&grant.name)
    .with_lease_id(&grant.lease_id)
}
