//! The single-instance Redis provider.

use crate::builder::RedisLeaseProviderBuilder;
use crate::config::RedisConfig;
use crate::ghost::GhostGuard;
use crate::listing::{scan_until_found, stale_cursor, Cursor};
use crate::node::{Acquire, Node, Renewal};
use crate::record::{encode_rest, system_time_ms, RawInfo};
use crate::releases::Releases;
use leasing_abstractions::{
    validate_name, AcquireRequest, BoxFuture, LeaseError, LeaseGrant, LeaseInfo, LeasePage,
    LeaseProvider, ListRequest, ProviderCapabilities, Result,
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
    ProviderCapabilities::new(MIN_DURATION, MAX_DURATION)
        .with_max_renew_batch(batch)
        .with_listing(true)
}

/// The node epoch a grant was made in, from its version (see [`crate::identity`]); one
/// number per node, comma-separated.
pub(crate) fn grant_epochs(grant: &LeaseGrant) -> Vec<Option<u64>> {
    grant
        .version
        .get()
        .map(|v| v.split(',').map(|e| e.parse().ok()).collect())
        .unwrap_or_default()
}

/// A lease as `inspect` and `list` report it.
pub(crate) fn lease_info(name: &str, i: RawInfo) -> LeaseInfo {
    LeaseInfo::new(
        name,
        i.lease_id,
        i.token,
        system_time_ms(i.acquired_ms),
        i.expires_ms.map(system_time_ms),
        i.metadata,
    )
}

pub(crate) fn finite(req_duration: leasing_abstractions::LeaseDuration) -> Duration {
    // validate_request has rejected infinite durations (capabilities say no).
    req_duration.as_finite().unwrap_or(MAX_DURATION)
}

/// Signals a watcher may queue before a manager reads them (more is one renewal round).
pub(crate) const RENEW_NOW_CAPACITY: usize = 4;

/// Leases on one Redis server, or on one Redis Cluster
/// ([`cluster_urls`](RedisLeaseProviderBuilder::cluster_urls); every key of a name shares
/// one hash slot through the `{<name>}` tag, and redis-rs' cluster connection routes each
/// script to the master of that slot, following `MOVED`/`ASK`).
///
/// Storage: one string per lease at `{prefix}{<name>}` holding the lease id, fencing
/// token, acquired-at (server ms), owner and metadata, with a PX TTL; the fencing counter
/// at `{prefix}{<name>}:fence`, which expires [`fence_retention`](crate::RedisConfig::fence_retention)
/// after the name's last grant. Tokens are `max(counter + 1, server clock in µs)`. All
/// writes are Lua scripts run by SHA. Releases of names someone found held are announced on
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
    /// Sent by the node's watcher when its server answers again after going away; `None`
    /// in cluster mode (no watcher there).
    renew_now: Option<broadcast::Sender<()>>,
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

    /// Builds a provider from `LEASING_REDIS_URL` and `LEASING_REDIS_RESTART_FENCE` (see
    /// [`RedisLeaseProviderBuilder::from_env`]).
    ///
    /// # Errors
    /// As [`RedisLeaseProviderBuilder::build`].
    pub async fn from_env() -> Result<Self> {
        RedisLeaseProviderBuilder::from_env().build().await
    }

    pub(crate) async fn from_config(config: RedisConfig) -> Result<Self> {
        let config = config.saturated();
        config.validate()?;
        crate::config::warn_if_unfenced(&config);
        let releases = Arc::new(Releases::new());
        let (node, renew_now) = if config.cluster_urls.is_empty() {
            let renew_now = broadcast::channel(RENEW_NOW_CAPACITY).0;
            let node = Node::connect(&config, &config.url, releases.clone(), &renew_now, false);
            (node.await?, Some(renew_now))
        } else {
            (
                Node::connect_cluster(&config, releases.clone()).await?,
                None,
            )
        };
        Ok(Self {
            node: [Arc::new(node)],
            owner: leasing_abstractions::owner_id(),
            config,
            releases,
            renew_now,
        })
    }

    /// The configuration (secrets redacted in its `Debug`).
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The connection to the server (or cluster), shared with fenced resources.
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node[0]
    }
}

impl RedisLeaseProvider {
    async fn do_try_acquire(&self, request: &AcquireRequest) -> Result<Option<LeaseGrant>> {
        // The core validated the request; the name is checked again because it becomes a
        // key (a '{' or '}' would break the key mapping).
        validate_name(&request.name)?;
        let lease_id = uuid::Uuid::new_v4().simple().to_string();
        let rest = encode_rest(&self.owner, &request.metadata);
        let sent_at = Instant::now();
        // From here on the script may reach the server: if the answer is lost (error,
        // timeout, cancellation), release the possible grant in the background.
        let guard = GhostGuard::new(&self.node, &request.name, &lease_id);
        let got = self.node[0]
            .acquire(Acquire {
                name: &request.name,
                lease_id: &lease_id,
                ttl: finite(request.duration),
                floor: 0,
                rest: &rest,
            })
            .await?;
        guard.disarm();
        Ok(got.map(|g| {
            LeaseGrant::new(
                request,
                lease_id,
                g.token,
                system_time_ms(g.acquired_ms),
                sent_at,
            )
            .with_version(g.epoch.to_string())
        }))
    }

    fn renewal<'a>(grant: &'a LeaseGrant) -> Renewal<'a> {
        Renewal {
            name: &grant.name,
            lease_id: &grant.lease_id,
            ttl: finite(grant.duration),
            epoch: grant_epochs(grant).first().copied().flatten(),
        }
    }

    async fn do_renew(&self, grant: &LeaseGrant) -> Result<()> {
        if self.node[0].renew(Self::renewal(grant)).await? {
            Ok(())
        } else {
            Err(lost(grant))
        }
    }

    async fn do_renew_many(&self, grants: &[Arc<LeaseGrant>]) -> Vec<Result<()>> {
        let items: Vec<Renewal<'_>> = grants.iter().map(|g| Self::renewal(g)).collect();
        self.node[0]
            .renew_many(&items)
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
        Ok(self.node[0]
            .inspect(name)
            .await?
            .map(|i| lease_info(name, i)))
    }

    async fn do_list(&self, request: &ListRequest) -> Result<LeasePage> {
        let node = &self.node[0];
        let spaces = node.scan_spaces().await?;
        let mut cursor = Cursor::parse(request.cursor.as_deref())?;
        if cursor.space >= spaces.len() {
            return Err(stale_cursor());
        }
        loop {
            let (names, next) =
                scan_until_found(node, &spaces, cursor, &request.prefix, request.limit).await?;
            // SCAN found the keys; each is read with its TTL (it may have gone since).
            let infos = futures::future::join_all(names.iter().map(|n| node.inspect(n))).await;
            let mut leases = Vec::with_capacity(names.len());
            for (name, info) in names.iter().zip(infos) {
                if let Some(i) = info? {
                    leases.push(lease_info(name, i));
                }
            }
            match next {
                Some(c) if leases.is_empty() => cursor = c,
                next => return Ok(LeasePage::new(leases, next.map(Cursor::render))),
            }
        }
    }

    async fn do_break_lease(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        self.node[0].break_lease(name).await
    }
}

/// The `LeaseProvider` impl of a Redis provider: its name, its renew-now sender, and the
/// operations forwarded (boxed) to its `do_*` methods. Shared by the single-server and
/// Redlock providers, which differ only in those.
macro_rules! redis_lease_provider {
    ($ty:ty, $name:literal, |$this:ident| $renew_now:expr) => {
        impl LeaseProvider for $ty {
            fn provider_name(&self) -> &'static str {
                $name
            }
            fn capabilities(&self) -> ProviderCapabilities {
                $crate::provider::capabilities(self.config.max_renew_batch)
            }
            fn renew_now_signals(&self) -> Option<broadcast::Receiver<()>> {
                let $this = self;
                $renew_now
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
            fn renew_many<'a>(
                &'a self,
                grants: &'a [Arc<LeaseGrant>],
            ) -> BoxFuture<'a, Vec<Result<()>>> {
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
            fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
                Box::pin(self.do_list(request))
            }
        }
    };
}
pub(crate) use redis_lease_provider;

redis_lease_provider!(RedisLeaseProvider, "redis", |p| p
    .renew_now
    .as_ref()
    .map(broadcast::Sender::subscribe));

pub(crate) fn lost(grant: &LeaseGrant) -> LeaseError {
    LeaseError::lost(
        "the lease is no longer held under this lease id (expired, released, broken or taken over)",
    )
    .with_lease_name(&grant.name)
    .with_lease_id(&grant.lease_id)
}
