//! One Redis server or one Redis Cluster: its connection, the lease scripts, and the
//! release subscriber. Shared by the single-instance provider (one server or a cluster) and
//! every Redlock node.

use crate::config::{redact_url, refresh_delay, RedisConfig, TokenCredential};
use crate::error::{map_err, timeout, Op};
use crate::releases::{plan, Releases, CHECK_PERIOD};
use futures::future::join_all;
use futures::StreamExt;
use leasing_abstractions::{LeaseError, Metadata, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{
    Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, Pipeline, RedisResult, Script,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

/// A lease script: run by SHA (`EVALSHA`), loaded with `SCRIPT LOAD` after `NOSCRIPT`.
pub(crate) struct Lua {
    script: Script,
    code: &'static str,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self {
            script: Script::new(code),
            code,
        }
    }

    fn hash(&self) -> &str {
        self.script.get_hash()
    }

    /// `EVALSHA <sha> <#keys> <keys…>`; the caller appends the arguments.
    fn evalsha(&self, keys: &[String]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.hash()).arg(keys.len()).arg(keys);
        cmd
    }

    fn load_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.code);
        cmd
    }
}

pub(crate) struct Scripts {
    pub(crate) acquire: Lua,
    pub(crate) renew: Lua,
    pub(crate) release: Lua,
    pub(crate) breaks: Lua,
    pub(crate) inspect: Lua,
    pub(crate) fence: Lua,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Lua::new(include_str!("scripts/acquire.lua")),
    renew: Lua::new(include_str!("scripts/renew.lua")),
    release: Lua::new(include_str!("scripts/release.lua")),
    breaks: Lua::new(include_str!("scripts/break.lua")),
    inspect: Lua::new(include_str!("scripts/inspect.lua")),
    fence: Lua::new(include_str!("scripts/fence.lua")),
});

/// The connection of a [`Node`]: one server through a `ConnectionManager`, or a Redis
/// Cluster through redis-rs' cluster connection, which routes every command by the slot of
/// its first key and follows `MOVED`/`ASK`. Every lease script touches only the keys of one
/// name, which share a slot thanks to the `{name}` hash tag.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    async fn query_pipe(&mut self, pipe: &Pipeline) -> RedisResult<Vec<RedisResult<bool>>> {
        match self {
            Conn::Single(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }

    /// Loads `lua` where `key` lives: the one server, or the master of `key`'s slot (the
    /// node that answered `NOSCRIPT`), not every node, so one node being down does not stop
    /// the others from reloading.
    async fn load(&mut self, lua: &Lua, key: &str) -> RedisResult<()> {
        match self {
            Conn::Single(c) => lua.load_cmd().query_async::<String>(c).await.map(drop),
            Conn::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.route_command(lua.load_cmd(), to).await.map(drop)
            }
        }
    }

    /// What renewals are grouped by into one pipeline: nothing on one server (a single
    /// pipeline), the slot on a cluster (redis-rs routes a pipeline by one slot).
    fn batch_of(&self, key: &str) -> Option<Slot> {
        match self {
            Conn::Single(_) => None,
            Conn::Cluster(_) => Some(Slot::for_key(key)),
        }
    }
}

/// Prefix of the hash fields that hold metadata.
pub(crate) const META_PREFIX: &str = "meta_";

/// What one server reports about a held name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawInfo {
    pub(crate) lease_id: Option<String>,
    pub(crate) token: u64,
    pub(crate) acquired_ms: u64,
    pub(crate) expires_ms: Option<u64>,
    pub(crate) metadata: Metadata,
}

/// One Redis server, or one Redis Cluster.
pub(crate) struct Node {
    conn: Conn,
    prefix: String,
    call_timeout: Duration,
    redacted_url: String,
    _subscriber: AbortOnDropHandle<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("url", &self.redacted_url)
            .field("key_prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Adapts a [`TokenCredential`] to redis-rs' streaming credentials: the first token at
/// once, then a fresh one `refresh_before_expiry` before each expires.
struct CredentialStream {
    credential: Arc<dyn TokenCredential>,
    before: Duration,
}

impl redis::StreamingCredentialsProvider for CredentialStream {
    fn subscribe(
        &self,
    ) -> Pin<Box<dyn futures::Stream<Item = RedisResult<redis::BasicAuth>> + Send + 'static>> {
        let credential = self.credential.clone();
        let before = self.before;
        Box::pin(futures::stream::unfold(None::<Duration>, move |wait| {
            let credential = credential.clone();
            async move {
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
                match credential.get_token().await {
                    Ok(t) => {
                        let next = refresh_delay(t.expires_at, before, SystemTime::now());
                        Some((Ok(redis::BasicAuth::new(t.username, t.token)), Some(next)))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "token credential failed; retrying in 1 s");
                        let err: redis::RedisError = (
                            redis::ErrorKind::AuthenticationFailed,
                            "token credential failed",
                            e.to_string(),
                        )
                            .into();
                        Some((Err(err), Some(Duration::from_secs(1))))
                    }
                }
            }
        }))
    }
}

/// The connection settings for `url` with the configured credentials.
fn connection_info(
    config: &RedisConfig,
    url: &str,
    auth: Option<(String, String)>,
) -> Result<ConnectionInfo> {
    let info = url
        .into_connection_info()
        .map_err(|e| map_err(e, Op::Connect, None))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    if let Some((user, token)) = auth {
        settings = settings.set_username(user).set_password(token);
    }
    Ok(info.set_redis_settings(settings))
}

/// Builds a redis-rs client for `url` with the configured credentials and TLS.
fn client(config: &RedisConfig, url: &str, auth: Option<(String, String)>) -> Result<Client> {
    let info = connection_info(config, url, auth)?;
    #[cfg(feature = "tls")]
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(ca) = &config.ca_cert_pem {
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            };
            return Client::build_with_tls(info, certs).map_err(|e| map_err(e, Op::Connect, None));
        }
    }
    Client::open(info).map_err(|e| map_err(e, Op::Connect, None))
}

impl Node {
    /// Connects to `url`. `lazy` defers the connection to the first call (Redlock nodes
    /// that are down at start-up); otherwise the server must answer now.
    pub(crate) async fn connect(
        config: &RedisConfig,
        url: &str,
        releases: Arc<Releases>,
        lazy: bool,
    ) -> Result<Self> {
        crate::config::validate_url(url)?;
        let redacted_url = redact_url(url);
        let base = client(config, url, None)?;
        let mut mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.call_timeout))
            // Fail fast while a server is down: one reconnect attempt per call, no
            // backoff inside the call (the core does the waiting and retrying).
            .set_number_of_retries(0)
            .set_min_delay(Duration::from_millis(1))
            .set_max_delay(Duration::from_millis(10));
        if let Some(credential) = &config.credential {
            mc = mc.set_credentials_provider(CredentialStream {
                credential: credential.clone(),
                before: config.refresh_before_expiry,
            });
        }
        let conn = if lazy {
            ConnectionManager::new_lazy_with_config(base, mc)
                .map_err(|e| map_err(e, Op::Connect, None))?
        } else {
            match tokio::time::timeout(
                config.connect_timeout * 2,
                ConnectionManager::new_with_config(base, mc),
            )
            .await
            {
                Ok(r) => r.map_err(|e| map_err(e, Op::Connect, None))?,
                Err(_) => return Err(timeout(Op::Connect, None, config.connect_timeout * 2)),
            }
        };
        // Idle (no connection) until a waiter asks for release notifications.
        let sub = subscriber(config.clone(), vec![url.to_owned()], releases);
        Ok(Self {
            conn: Conn::Single(conn),
            prefix: config.key_prefix.clone(),
            call_timeout: config.call_timeout,
            redacted_url,
            _subscriber: AbortOnDropHandle::new(tokio::spawn(sub)),
        })
    }

    /// Connects to the Redis Cluster that `config.cluster_urls` are nodes of (the seeds:
    /// the other nodes are discovered). At least one seed must answer now.
    pub(crate) async fn connect_cluster(
        config: &RedisConfig,
        releases: Arc<Releases>,
    ) -> Result<Self> {
        let urls = &config.cluster_urls;
        let mut seeds = Vec::with_capacity(urls.len());
        for url in urls {
            crate::config::validate_url(url)?;
            seeds.push(connection_info(config, url, None)?);
        }
        let redacted_url = urls
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(",");
        let mut builder = ClusterClientBuilder::new(seeds)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.call_timeout)
            // Retries are what follow MOVED/ASK and re-route after a topology change; a
            // few, quickly, all inside the per-call deadline (the core does the waiting).
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(1)
            .max_retry_wait(10);
        if let Some(credential) = &config.credential {
            builder = builder.set_credentials_provider(CredentialStream {
                credential: credential.clone(),
                before: config.refresh_before_expiry,
            });
        }
        #[cfg(feature = "tls")]
        {
            let _ = rustls::crypto::ring::default_provider().install_default();
            if let Some(ca) = &config.ca_cert_pem {
                builder = builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                });
            }
        }
        let client = builder.build().map_err(|e| map_err(e, Op::Connect, None))?;
        let limit = config.connect_timeout * 2;
        let conn = match tokio::time::timeout(limit, client.get_async_connection()).await {
            Ok(r) => r.map_err(cluster_connect_error)?,
            Err(_) => return Err(timeout(Op::Connect, None, limit)),
        };
        // Classic PUBLISH reaches every node of a cluster, so one subscriber connection to
        // any node hears every release; it moves to the next seed when its node fails.
        let sub = subscriber(config.clone(), urls.clone(), releases);
        Ok(Self {
            conn: Conn::Cluster(conn),
            prefix: config.key_prefix.clone(),
            call_timeout: config.call_timeout,
            redacted_url,
            _subscriber: AbortOnDropHandle::new(tokio::spawn(sub)),
        })
    }

    pub(crate) fn lease_key(&self, name: &str) -> String {
        format!("{}{{{name}}}", self.prefix)
    }

    pub(crate) fn fence_key(&self, name: &str) -> String {
        format!("{}{{{name}}}:fence", self.prefix)
    }

    fn channel(&self, name: &str) -> String {
        channel(&self.prefix, name)
    }

    async fn call<T>(
        &self,
        op: Op,
        name: &str,
        limit: Duration,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        let limit = limit.min(self.call_timeout);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(|e| map_err(e, op, Some(name))),
            Err(_) => Err(timeout(op, Some(name), limit)),
        }
    }

    /// Runs `cmd` (an `EVALSHA` of `lua` on `name`'s keys); after `NOSCRIPT`, loads the
    /// script where the name lives and runs it once more.
    async fn eval<T: FromRedisValue>(&self, lua: &Lua, name: &str, cmd: Cmd) -> RedisResult<T> {
        let mut conn = self.conn.clone();
        match conn.query(&cmd).await {
            Err(e) if is_noscript(&e) => {
                conn.load(lua, &self.lease_key(name)).await?;
                conn.query(&cmd).await
            }
            r => r,
        }
    }

    /// Runs the acquire script. `Some((token, acquired_ms))` when granted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn acquire(
        &self,
        name: &str,
        lease_id: &str,
        ttl: Duration,
        floor: u64,
        owner: &str,
        metadata: &Metadata,
        limit: Duration,
    ) -> Result<Option<(u64, u64)>> {
        let lua = &SCRIPTS.acquire;
        let mut cmd = lua.evalsha(&[self.lease_key(name), self.fence_key(name)]);
        cmd.arg(lease_id).arg(ttl_ms(ttl)).arg(floor).arg(owner);
        for (k, v) in metadata {
            cmd.arg(format!("{META_PREFIX}{k}")).arg(v);
        }
        self.call(Op::Acquire, name, limit, self.eval(lua, name, cmd))
            .await
    }

    /// Raises the fencing counter to `token` and records it (Redlock second phase).
    pub(crate) async fn fence(
        &self,
        name: &str,
        lease_id: &str,
        token: u64,
        limit: Duration,
    ) -> Result<bool> {
        let lua = &SCRIPTS.fence;
        let mut cmd = lua.evalsha(&[self.lease_key(name), self.fence_key(name)]);
        cmd.arg(lease_id).arg(token);
        self.call(Op::Acquire, name, limit, self.eval(lua, name, cmd))
            .await
    }

    /// Renews; `false` when the lease is no longer held under `lease_id`. The call is
    /// bounded by `limit`, the lease duration and `call_timeout`.
    pub(crate) async fn renew(
        &self,
        name: &str,
        lease_id: &str,
        ttl: Duration,
        limit: Duration,
    ) -> Result<bool> {
        let lua = &SCRIPTS.renew;
        let mut cmd = lua.evalsha(&[self.lease_key(name)]);
        cmd.arg(lease_id).arg(ttl_ms(ttl));
        self.call(Op::Renew, name, ttl.min(limit), self.eval(lua, name, cmd))
            .await
    }

    /// Renews many leases: one server gets one pipeline (EVALSHA each); a cluster gets one
    /// pipeline per hash slot, all sent at once over the cluster connection's multiplexed
    /// per-node connections (redis-rs routes a pipeline by a single slot). Results come back
    /// in the order of `items`. Each batch is bounded by `limit`, the shortest lease
    /// duration in it and `call_timeout`.
    pub(crate) async fn renew_many(
        &self,
        items: &[(&str, &str, Duration)],
        limit: Duration,
    ) -> Vec<Result<bool>> {
        let mut groups: HashMap<Option<Slot>, Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let batch = self.conn.batch_of(&self.lease_key(item.0));
            groups.entry(batch).or_default().push(i);
        }
        let batches: Vec<Vec<usize>> = groups.into_values().collect();
        let answers = join_all(batches.iter().map(|idx| async move {
            let batch: Vec<(&str, &str, Duration)> = idx.iter().map(|&i| items[i]).collect();
            self.renew_batch(&batch, limit).await
        }))
        .await;
        let mut results: Vec<Option<Result<bool>>> = items.iter().map(|_| None).collect();
        for (idx, answer) in batches.iter().zip(answers) {
            for (&i, r) in idx.iter().zip(answer) {
                results[i] = Some(r);
            }
        }
        results.into_iter().flatten().collect()
    }

    /// Renews the leases of one batch in one pipelined round trip (EVALSHA each; on
    /// NOSCRIPT the script is loaded where the batch lives and the batch sent once more,
    /// which is harmless: renewing twice only extends again).
    async fn renew_batch(
        &self,
        items: &[(&str, &str, Duration)],
        limit: Duration,
    ) -> Vec<Result<bool>> {
        let limit = items.iter().map(|i| i.2).min().unwrap_or(limit).min(limit);
        let first = items.first().map_or("", |i| i.0);
        let mut results = self.renew_pipeline(items, limit, first).await;
        let noscript =
            matches!(&results, Ok(v) if v.iter().any(|r| matches!(r, Err(e) if is_noscript(e))));
        if noscript {
            let mut conn = self.conn.clone();
            let key = self.lease_key(first);
            let loaded = self
                .call(Op::Renew, first, limit, async move {
                    conn.load(&SCRIPTS.renew, &key).await
                })
                .await;
            results = match loaded {
                Ok(_) => self.renew_pipeline(items, limit, first).await,
                Err(e) => Err(e),
            };
        }
        per_item(results, items)
    }

    async fn renew_pipeline(
        &self,
        items: &[(&str, &str, Duration)],
        limit: Duration,
        first: &str,
    ) -> Result<Vec<RedisResult<bool>>> {
        let mut pipe = redis::pipe();
        for (name, id, ttl) in items {
            let mut cmd = SCRIPTS.renew.evalsha(&[self.lease_key(name)]);
            cmd.arg(*id).arg(ttl_ms(*ttl));
            pipe.add_command(cmd);
        }
        pipe.ignore_errors();
        let mut conn = self.conn.clone();
        self.call(Op::Renew, first, limit, async move {
            conn.query_pipe(&pipe).await
        })
        .await
    }

    /// Releases; `true` if this call deleted the lease.
    pub(crate) async fn release(&self, name: &str, lease_id: &str) -> Result<bool> {
        let lua = &SCRIPTS.release;
        let mut cmd = lua.evalsha(&[self.lease_key(name)]);
        cmd.arg(lease_id).arg(self.channel(name)).arg(name);
        self.call(
            Op::Release,
            name,
            self.call_timeout,
            self.eval(lua, name, cmd),
        )
        .await
    }

    /// Deletes whatever holds `name`; `true` if something did.
    pub(crate) async fn break_lease(&self, name: &str) -> Result<bool> {
        let lua = &SCRIPTS.breaks;
        let mut cmd = lua.evalsha(&[self.lease_key(name)]);
        cmd.arg(self.channel(name)).arg(name);
        self.call(
            Op::Break,
            name,
            self.call_timeout,
            self.eval(lua, name, cmd),
        )
        .await
    }

    /// The holder of `name` on this server.
    pub(crate) async fn inspect(&self, name: &str) -> Result<Option<RawInfo>> {
        let lua = &SCRIPTS.inspect;
        let cmd = lua.evalsha(&[self.lease_key(name)]);
        let raw: Option<InspectReply> = self
            .call(
                Op::Inspect,
                name,
                self.call_timeout,
                self.eval(lua, name, cmd),
            )
            .await?;
        Ok(raw.map(|(fields, pttl, now_ms)| parse_info(fields, pttl, now_ms)))
    }
}

/// Fires a best-effort `release(name, lease_id)` on `node` in the background (bounded by
/// `call_timeout`; the release script compares the lease id, so it never touches another
/// holder). Used after an acquire that was, or may have been, sent and whose answer was
/// lost, failed or no longer wanted: otherwise a grant nobody knows of (a ghost) would
/// block the name until its TTL. Commands on one connection are executed in order, so the
/// release lands after the acquire it cleans up. Outside a runtime nothing is sent.
pub(crate) fn release_in_background(
    node: &Arc<Node>,
    name: &str,
    lease_id: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    let (node, name, lease_id) = (node.clone(), name.to_owned(), lease_id.to_owned());
    Some(rt.spawn(async move {
        if let Err(e) = node.release(&name, &lease_id).await {
            tracing::debug!(error = %e, "best-effort release after a failed acquire failed");
        }
    }))
}

/// Releases `lease_id` on `nodes` in the background when dropped while armed: covers an
/// acquire that failed, timed out or was cancelled after its script may have been sent.
pub(crate) struct GhostGuard<'a> {
    nodes: &'a [Arc<Node>],
    name: &'a str,
    lease_id: &'a str,
    armed: bool,
}

impl<'a> GhostGuard<'a> {
    pub(crate) fn new(nodes: &'a [Arc<Node>], name: &'a str, lease_id: &'a str) -> Self {
        Self {
            nodes,
            name,
            lease_id,
            armed: true,
        }
    }

    /// The outcome is known and handled: nothing to release on drop.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GhostGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            for node in self.nodes {
                release_in_background(node, self.name, self.lease_id);
            }
        }
    }
}

/// The inspect script's reply: the flat hash, its PTTL and the server's time (ms).
type InspectReply = (Vec<(String, String)>, i64, u64);

/// Retries inside one call of a cluster connection (redirections, re-routing).
const CLUSTER_RETRIES: u32 = 3;

/// A failed cluster start-up; seeds that are plain servers are a configuration error.
fn cluster_connect_error(e: redis::RedisError) -> LeaseError {
    if e.to_string().contains("cluster support disabled") {
        LeaseError::configuration(
            "cluster_urls",
            "the seeds are not Redis Cluster nodes (cluster support disabled); use url() for one server",
        )
    } else {
        map_err(e, Op::Connect, None)
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// One result per renewed item from a pipeline's replies.
fn per_item(
    results: Result<Vec<RedisResult<bool>>>,
    items: &[(&str, &str, Duration)],
) -> Vec<Result<bool>> {
    match results {
        // redis-rs reads one reply per command; the count is checked all the same, since
        // the core relies on one result per grant.
        Ok(v) if v.len() == items.len() => v
            .into_iter()
            .zip(items)
            .map(|(r, i)| r.map_err(|e| map_err(e, Op::Renew, Some(i.0))))
            .collect(),
        Ok(_) => items
            .iter()
            .map(|i| {
                Err(LeaseError::new(
                    leasing_abstractions::ErrorKind::Renewal,
                    "redis answered a renewal batch with the wrong number of replies",
                )
                .with_lease_name(i.0))
            })
            .collect(),
        Err(e) => items
            .iter()
            .map(|i| Err(e.clone().with_lease_name(i.0)))
            .collect(),
    }
}

/// The channel a release of `name` is announced on (hash-tagged like the lease's keys).
pub(crate) fn channel(prefix: &str, name: &str) -> String {
    format!("{prefix}{{{name}}}:released")
}

pub(crate) fn parse_info(fields: Vec<(String, String)>, pttl: i64, now_ms: u64) -> RawInfo {
    let mut info = RawInfo {
        lease_id: None,
        token: 0,
        acquired_ms: 0,
        expires_ms: u64::try_from(pttl).ok().map(|p| now_ms + p),
        metadata: Metadata::new(),
    };
    for (k, v) in fields {
        match k.as_str() {
            "leaseId" => info.lease_id = Some(v),
            "fencingToken" => info.token = v.parse().unwrap_or(0),
            "acquiredAt" => info.acquired_ms = v.parse().unwrap_or(0),
            _ => {
                if let Some(key) = k.strip_prefix(META_PREFIX) {
                    info.metadata.insert(key.to_owned(), v);
                }
            }
        }
    }
    info
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(crate) fn system_time_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Keeps one server's subscriptions equal to [`Releases::wanted`]: no connection until a
/// waiter asks, reconnecting (with a fresh token when a credential is configured) whenever
/// the subscription drops while wanted.
///
/// `urls` are alternatives (the nodes of a cluster, where a PUBLISH on any node reaches
/// all): after a failure or a dropped subscription the next one is tried.
async fn subscriber(config: RedisConfig, urls: Vec<String>, releases: Arc<Releases>) {
    let mut changed = releases.watch();
    let mut pause = Duration::from_millis(50);
    // Never empty: one URL, or the cluster's seeds (validated non-empty).
    let mut next = 0;
    loop {
        while releases.wanted().is_empty() {
            // The sender lives in `releases`, which this task holds: this cannot fail.
            let _ = changed.changed().await;
        }
        let url = &urls[next % urls.len()];
        next += 1;
        match pubsub(&config, url).await {
            Ok(conn) => {
                pause = Duration::from_millis(50);
                serve(conn, &config.key_prefix, &releases, &mut changed).await;
                tracing::debug!("release subscription dropped; reconnecting when wanted");
            }
            Err(e) => tracing::debug!(error = %e, "release subscription failed; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Subscribes and unsubscribes as waiters come and go, forwarding announcements, until the
/// connection drops.
async fn serve(
    conn: redis::aio::PubSub,
    prefix: &str,
    releases: &Releases,
    changed: &mut watch::Receiver<()>,
) {
    let (mut sink, mut stream) = conn.split();
    let mut subscribed: HashSet<String> = HashSet::new();
    loop {
        let (add, remove) = plan(&releases.wanted(), &subscribed);
        if !add.is_empty() {
            let channels: Vec<String> = add.iter().map(|n| channel(prefix, n)).collect();
            if sink.subscribe(&channels).await.is_err() {
                return;
            }
            for name in add {
                // Anything released before the subscription was active went unheard:
                // its waiters try again now.
                releases.wake(name.clone());
                subscribed.insert(name);
            }
        }
        if !remove.is_empty() {
            let channels: Vec<String> = remove.iter().map(|n| channel(prefix, n)).collect();
            if sink.unsubscribe(&channels).await.is_err() {
                return;
            }
            for name in &remove {
                subscribed.remove(name);
            }
        }
        // While subscribed, look every CHECK_PERIOD for receivers that are gone (dropping a
        // receiver signals nothing); idle, only a new waiter or the connection matters.
        let check = tokio::time::sleep(if subscribed.is_empty() {
            Duration::MAX / 4
        } else {
            CHECK_PERIOD
        });
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    if let Ok(name) = msg.get_payload::<String>() {
                        releases.wake(name);
                    }
                }
                None => return,
            },
            _ = changed.changed() => {}
            () = check => {}
        }
    }
}

async fn pubsub(config: &RedisConfig, url: &str) -> Result<redis::aio::PubSub> {
    let auth = match &config.credential {
        Some(c) => Some(
            c.get_token()
                .await
                .map(|t| (t.username, t.token))
                .map_err(|e| {
                    LeaseError::new(
                        leasing_abstractions::ErrorKind::Unauthorized,
                        format!("token credential failed: {e}"),
                    )
                })?,
        ),
        None => None,
    };
    let client = client(config, url, auth)?;
    let limit = config.connect_timeout;
    match tokio::time::timeout(limit, client.get_async_pubsub()).await {
        Ok(r) => r.map_err(|e| map_err(e, Op::Connect, None)),
        Err(_) => Err(timeout(Op::Connect, None, limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_result_per_renewed_item() {
        let d = Duration::from_secs(1);
        let items = [("a", "1", d), ("b", "2", d)];
        let wrongtype = redis::parse_redis_value(b"-WRONGTYPE x\r\n")
            .expect("parse")
            .extract_error()
            .expect_err("error reply");
        let r = per_item(Ok(vec![Ok(true), Err(wrongtype)]), &items);
        assert!(matches!(r[0], Ok(true)));
        let e = r[1].as_ref().expect_err("wrongtype");
        assert_eq!(e.kind(), leasing_abstractions::ErrorKind::Renewal);
        assert_eq!(e.lease_name(), Some("b"));
        // A short reply is an error for every item, never a shorter result list.
        let r = per_item(Ok(vec![Ok(true)]), &items);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(Result::is_err));
        let r = per_item(Err(LeaseError::unavailable("down")), &items);
        assert_eq!(r[1].as_ref().expect_err("down").lease_name(), Some("b"));
        assert_eq!(channel("lease:", "n"), "lease:{n}:released");
    }

    #[test]
    fn scripts_store_numbers_as_formatted_integers() {
        // Redis 7.2.0-7.2.4 (redis/redis#13113) turns whole Lua numbers that are multiples
        // of 1e8 into scientific notation when a script passes them to redis.call: every
        // number a script stores must go through string.format('%d', …).
        let code = include_str!("scripts/acquire.lua");
        let writes: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ");
        for bare in [
            "KEYS[2], token)",
            "'fencingToken', token,",
            "'acquiredAt', now_ms,",
        ] {
            assert!(
                !writes.contains(bare),
                "acquire.lua stores a bare number: {bare}"
            );
        }
        assert!(writes.contains("string.format('%d', token)"));
        assert!(writes.contains("string.format('%d', now_ms)"));
        // fence.lua stores its argument (a string) as it came.
        assert!(include_str!("scripts/fence.lua").contains("redis.call('SET', KEYS[2], ARGV[2])"));
    }

    #[test]
    fn parses_hash_fields() {
        let f = vec![
            ("leaseId".to_owned(), "abc".to_owned()),
            ("fencingToken".to_owned(), "42".to_owned()),
            ("acquiredAt".to_owned(), "1000".to_owned()),
            ("owner".to_owned(), "o".to_owned()),
            ("meta_region".to_owned(), "eu".to_owned()),
        ];
        let i = parse_info(f, 500, 2000);
        assert_eq!(i.lease_id.as_deref(), Some("abc"));
        assert_eq!(i.token, 42);
        assert_eq!(i.acquired_ms, 1000);
        assert_eq!(i.expires_ms, Some(2500));
        assert_eq!(i.metadata.get("region").map(String::as_str), Some("eu"));
        assert_eq!(parse_info(vec![], -1, 5).expires_ms, None);
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(
            system_time_ms(1000),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1)
        );
    }
}
