//! One Redis server or one Redis Cluster: the lease operations on its connection.
//! Shared by the single-instance provider (one server or a cluster) and every Redlock node.

use crate::config::{redact_url, RedisConfig};
use crate::connection::{client, connection_info, Conn};
use crate::credential::CredentialStream;
use crate::error::{at_server, cluster_connect_error, map_err, timeout, Op};
use crate::identity::{Identity, Seen, ServerInfo};
use crate::record::{id_match, parse, ttl_ms, RawInfo};
use crate::releases::Releases;
use crate::scripts::{Lua, SCRIPTS};
use crate::subscriber::{channel, subscriber};
use futures::future::join_all;
use leasing_abstractions::{LeaseError, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_routing::Slot;
use redis::{Cmd, FromRedisValue, RedisError, RedisResult};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio_util::task::AbortOnDropHandle;

/// One Redis server, or one Redis Cluster.
pub(crate) struct Node {
    pub(crate) conn: Conn,
    pub(crate) prefix: String,
    pub(crate) call_timeout: Duration,
    /// How long a fencing counter outlives its last grant, in ms.
    retention_ms: u64,
    /// Identity checks and the restart fence (one server; in cluster mode no identity
    /// checks: a renewal on a promoted node that lacks the lease finds no key, `Lost`).
    identity: Option<Identity>,
    /// The restart fence in cluster mode, checked inside the acquire script on the node
    /// that grants (see [`ClusterFence`]); `None` on one server and when the fence is off.
    cluster_fence: Option<ClusterFence>,
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

/// An acquire on one node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acquire<'a> {
    pub(crate) name: &'a str,
    pub(crate) lease_id: &'a str,
    pub(crate) ttl: Duration,
    /// Tokens are above this (Redlock's first server's token; 0 otherwise).
    pub(crate) floor: u64,
    /// Owner and metadata, encoded ([`crate::record::encode_rest`]).
    pub(crate) rest: &'a [u8],
}

/// What a granted acquire returns: the token, the server's time of the grant (ms), and
/// the node's epoch the grant belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) token: u64,
    pub(crate) acquired_ms: u64,
    pub(crate) epoch: u64,
}

/// A renewal on one node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renewal<'a> {
    pub(crate) name: &'a str,
    pub(crate) lease_id: &'a str,
    pub(crate) ttl: Duration,
    /// The node's epoch when the lease was granted there, if known.
    pub(crate) epoch: Option<u64>,
}

/// A failed call before it is mapped: the redis error, or our own deadline.
enum Failure {
    Redis(RedisError),
    Timeout(Duration),
}

impl Failure {
    /// The connection failed (not the server refusing a command): the server may have
    /// restarted or been replaced.
    fn is_connection(&self) -> bool {
        match self {
            Failure::Timeout(_) => true,
            Failure::Redis(e) => {
                e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
            }
        }
    }

    /// A fast connection failure (dropped or refused, not a deadline): worth one retry once
    /// the server answers again.
    fn is_fast_connection_failure(&self) -> bool {
        matches!(self, Failure::Redis(_)) && self.is_connection()
    }

    fn into_error(self, op: Op, name: &str) -> LeaseError {
        let name = (!name.is_empty()).then_some(name);
        match self {
            Failure::Redis(e) => map_err(e, op, name),
            Failure::Timeout(after) => timeout(op, name, after),
        }
    }
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
                config.connect_timeout.saturating_mul(2),
                ConnectionManager::new_with_config(base, mc),
            )
            .await
            {
                Ok(r) => r.map_err(|e| at_server(map_err(e, Op::Connect, None), &redacted_url))?,
                Err(_) => {
                    return Err(at_server(
                        timeout(Op::Connect, None, config.connect_timeout.saturating_mul(2)),
                        &redacted_url,
                    ))
                }
            }
        };
        // Idle (no connection) until a waiter asks for release notifications.
        let sub = subscriber(config.clone(), vec![url.to_owned()], releases);
        let node = Self {
            conn: Conn::Single(conn),
            prefix: config.key_prefix.clone(),
            call_timeout: config.call_timeout,
            retention_ms: ttl_ms(config.fence_retention),
            identity: Some(Identity::new(config.restart_fence)),
            cluster_fence: None,
            redacted_url,
            _subscriber: AbortOnDropHandle::new(tokio::spawn(sub)),
        };
        if !lazy {
            // Who the server is, and whether it is inside its restart fence.
            node.check(Op::Connect, "", config.call_timeout)
                .await
                .map_err(|e| at_server(e, &node.redacted_url))?;
        }
        Ok(node)
    }

    /// Tries a lazily connected node (Redlock) now, within `limit`: a server that refuses
    /// the settings (`SELECT` of a database that does not exist) is a `Configuration`
    /// error, found at build rather than as an `Acquisition` error on every call. A server
    /// that is down, fenced or refuses the credentials is not an error here (it may come
    /// up later, and the operations report it): it is returned as `Ok(Some(why))`, so that
    /// the caller can require a majority to answer.
    pub(crate) async fn probe(&self, limit: Duration) -> Result<Option<LeaseError>> {
        // PING, not the identity check: its INFO treats an `ERR` reply as "INFO refused".
        let mut conn = self.conn.clone();
        match self
            .raw_call(limit, conn.query::<String>(&redis::cmd("PING")))
            .await
        {
            Err(f) => match f.into_error(Op::Connect, "") {
                e if e.kind() == leasing_abstractions::ErrorKind::Configuration => Err(e),
                e => Ok(Some(e)),
            },
            Ok(_) => Ok(None),
        }
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
        let limit = config.connect_timeout.saturating_mul(2);
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
            retention_ms: ttl_ms(config.fence_retention),
            identity: None,
            cluster_fence: ClusterFence::new(config),
            redacted_url,
            _subscriber: AbortOnDropHandle::new(tokio::spawn(sub)),
        })
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    pub(crate) fn lease_key(&self, name: &str) -> String {
        format!("{}{{{name}}}", self.prefix)
    }

    pub(crate) fn fence_key(&self, name: &str) -> String {
        format!("{}{{{name}}}:fence", self.prefix)
    }

    /// The cluster-mode promotion marker of the hash slot of `lease_key`: one per slot,
    /// `{prefix}{<slot tag>}:promoted` (a different hash tag, the same slot; see
    /// [`slot_tag`]).
    pub(crate) fn promoted_key(&self, lease_key: &str) -> String {
        format!("{}{{{}}}:promoted", self.prefix, slot_tag(lease_key))
    }

    fn channel(&self, name: &str) -> String {
        channel(&self.prefix, name)
    }

    /// Runs `fut` within `limit` (and `call_timeout`); a connection failure makes the next
    /// call check who the server is first.
    async fn raw_call<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> std::result::Result<T, Failure> {
        let limit = limit.min(self.call_timeout);
        let failure = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => Failure::Redis(e),
            Err(_) => Failure::Timeout(limit),
        };
        if failure.is_connection() {
            self.identity.iter().for_each(Identity::suspect);
        }
        Err(failure)
    }

    pub(crate) async fn call<T>(
        &self,
        op: Op,
        name: &str,
        limit: Duration,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        self.raw_call(limit, fut)
            .await
            .map_err(|f| f.into_error(op, name))
    }

    /// Runs `cmd` (an `EVALSHA` of `lua` on `key`); after `NOSCRIPT`, loads the script
    /// where the key lives and runs it once more.
    async fn eval<T: FromRedisValue>(&self, lua: &Lua, key: &str, cmd: Cmd) -> RedisResult<T> {
        let mut conn = self.conn.clone();
        match conn.query(&cmd).await {
            Err(e) if is_noscript(&e) => {
                conn.load(lua, key).await?;
                conn.query(&cmd).await
            }
            r => r,
        }
    }

    /// When a connection failed since the last check (or nothing was checked yet), asks the
    /// server who it is: a changed server advances the epoch (grants of older epochs are
    /// lost) and may start the restart fence. A server that refuses `INFO` turns the checks
    /// off for this node.
    async fn check(&self, op: Op, name: &str, limit: Duration) -> Result<()> {
        let Some(id) = &self.identity else {
            return Ok(());
        };
        if !id.check_due() {
            return Ok(());
        }
        let mut cmd = redis::cmd("INFO");
        cmd.arg("server").arg("replication");
        let mut conn = self.conn.clone();
        let text: String = match self.raw_call(limit, conn.query(&cmd)).await {
            Ok(t) => t,
            // Not allowed (ACL) or not known (renamed): the checks are off for this server.
            Err(Failure::Redis(e)) if info_refused(&e) => {
                tracing::warn!(
                    url = %self.redacted_url,
                    "INFO refused: restart and failover detection are off for this server"
                );
                id.disable();
                return Ok(());
            }
            // Down, busy, loading…: the check stays due.
            Err(f) => return Err(f.into_error(op, name)),
        };
        let info = ServerInfo::parse(&text);
        let promoted_for = if info.master && info.promoted && !id.fence.is_zero() {
            let key = format!("{}promoted:{}", self.prefix, info.replid);
            let cmd = SCRIPTS.promoted.evalsha(std::slice::from_ref(&key));
            let (at, now): (u64, u64) = self
                .call(op, name, limit, self.eval(&SCRIPTS.promoted, &key, cmd))
                .await?;
            Some(Duration::from_millis(now.saturating_sub(at)))
        } else {
            None
        };
        if id.record(&info, promoted_for) == Seen::Changed {
            tracing::warn!(
                url = %self.redacted_url,
                "the server changed (restart or failover): leases granted there before are lost"
            );
        }
        Ok(())
    }

    /// Runs `lua` on `key` (loading it after `NOSCRIPT`) within `limit` and the node's call
    /// timeout: for the scripts of [`RedisFencedResource`](crate::RedisFencedResource).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        op: Op,
        lua: &Lua,
        key: &str,
        cmd: Cmd,
        limit: Duration,
    ) -> Result<T> {
        self.call(op, key, limit, self.eval(lua, key, cmd)).await
    }

    /// Runs one command on `key`'s server within `limit` and the node's call timeout.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        op: Op,
        key: &str,
        cmd: &Cmd,
        limit: Duration,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        self.call(op, key, limit, conn.query(cmd)).await
    }

    /// The node's epoch (0 in cluster mode).
    pub(crate) fn epoch(&self) -> u64 {
        self.identity.as_ref().map_or(0, Identity::epoch)
    }

    /// Runs the acquire script. `Some` when granted.
    pub(crate) async fn acquire(&self, a: Acquire<'_>, limit: Duration) -> Result<Option<Granted>> {
        self.check(Op::Acquire, a.name, limit).await?;
        if let Some(left) = self.identity.as_ref().and_then(Identity::fenced_for) {
            return Err(LeaseError::unavailable(format!(
                "restart fence: the server restarted or changed recently and grants nothing for another {left:?}"
            ))
            .with_lease_name(a.name));
        }
        if let Some(fence) = &self.cluster_fence {
            return self.acquire_fenced(a, limit, fence).await;
        }
        let epoch = self.epoch();
        let lua = &SCRIPTS.acquire;
        let key = self.lease_key(a.name);
        let mut cmd = lua.evalsha(&[key.clone(), self.fence_key(a.name)]);
        cmd.arg(a.lease_id)
            .arg(ttl_ms(a.ttl))
            .arg(a.floor)
            .arg(self.retention_ms)
            .arg(a.rest);
        let got: Option<(u64, u64)> = self
            .call(Op::Acquire, a.name, limit, self.eval(lua, &key, cmd))
            .await?;
        Ok(got.map(|(token, acquired_ms)| Granted {
            token,
            acquired_ms,
            epoch,
        }))
    }

    /// The acquire of cluster mode with a restart fence: the acquire script behind the
    /// fence check (`cluster_fence.lua`), one `EVALSHA` on the node that grants.
    async fn acquire_fenced(
        &self,
        a: Acquire<'_>,
        limit: Duration,
        fence: &ClusterFence,
    ) -> Result<Option<Granted>> {
        let lua = &SCRIPTS.acquire_fenced;
        let key = self.lease_key(a.name);
        let mut cmd = lua.evalsha(&[key.clone(), self.fence_key(a.name), self.promoted_key(&key)]);
        cmd.arg(a.lease_id)
            .arg(ttl_ms(a.ttl))
            .arg(a.floor)
            .arg(self.retention_ms)
            .arg(a.rest)
            .arg(fence.fence_ms)
            .arg(fence.marker_ttl_ms);
        let reply: Option<Vec<u64>> = self
            .call(Op::Acquire, a.name, limit, self.eval(lua, &key, cmd))
            .await?;
        fence
            .decode(reply)
            .map_err(|e| e.with_lease_name(a.name))
            .map(|got| {
                got.map(|(token, acquired_ms)| Granted {
                    token,
                    acquired_ms,
                    epoch: 0,
                })
            })
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
        let key = self.lease_key(name);
        let mut cmd = lua.evalsha(&[key.clone(), self.fence_key(name)]);
        cmd.arg(id_match(lease_id))
            .arg(token)
            .arg(self.retention_ms);
        self.call(Op::Acquire, name, limit, self.eval(lua, &key, cmd))
            .await
    }

    /// Whether a grant of `epoch` was made on a server this node no longer talks to.
    fn outdated(&self, epoch: Option<u64>) -> bool {
        epoch.is_some_and(|e| e != self.epoch())
    }

    /// Renews; `false` when the lease is no longer held under `lease_id` (or was granted by
    /// a server that has since been replaced). The call is bounded by `limit`, the lease
    /// duration and `call_timeout`. A connection that turns out dropped is retried at once
    /// (up to three times, 10–90 ms apart, within the deadline), so a holder learns of a
    /// restart within a round trip of the server's return.
    pub(crate) async fn renew(&self, r: Renewal<'_>, limit: Duration) -> Result<bool> {
        let limit = r.ttl.min(limit);
        let started = tokio::time::Instant::now();
        let mut retried = 0;
        loop {
            if let Err(e) = self.check(Op::Renew, r.name, limit).await {
                if retry_reconnect(&mut retried, started, limit, e.is_retryable()).await {
                    continue;
                }
                return Err(e);
            }
            if self.outdated(r.epoch) {
                return Ok(false);
            }
            let lua = &SCRIPTS.renew;
            let key = self.lease_key(r.name);
            let mut cmd = lua.evalsha(std::slice::from_ref(&key));
            cmd.arg(id_match(r.lease_id)).arg(ttl_ms(r.ttl));
            match self.raw_call(limit, self.eval(lua, &key, cmd)).await {
                Ok(v) => return Ok(v),
                Err(f) => {
                    let fast = f.is_fast_connection_failure();
                    if !retry_reconnect(&mut retried, started, limit, fast).await {
                        return Err(f.into_error(Op::Renew, r.name));
                    }
                }
            }
        }
    }

    /// Renews many leases: one server gets one pipeline (EVALSHA each); a cluster gets one
    /// pipeline per hash slot, all sent at once over the cluster connection's multiplexed
    /// per-node connections (redis-rs routes a pipeline by a single slot). Results come back
    /// in the order of `items`. Each batch is bounded by `limit`, the shortest lease
    /// duration in it and `call_timeout`.
    pub(crate) async fn renew_many(
        &self,
        items: &[Renewal<'_>],
        limit: Duration,
    ) -> Vec<Result<bool>> {
        let mut groups: HashMap<Option<Slot>, Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let batch = self.conn.batch_of(&self.lease_key(item.name));
            groups.entry(batch).or_default().push(i);
        }
        let batches: Vec<Vec<usize>> = groups.into_values().collect();
        let answers = join_all(batches.iter().map(|idx| async move {
            let batch: Vec<Renewal<'_>> = idx.iter().map(|&i| items[i]).collect();
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
    /// which is harmless: renewing twice only extends again). A pipeline that fails on a
    /// dropped connection is sent again at once, as in [`renew`](Self::renew).
    async fn renew_batch(&self, items: &[Renewal<'_>], limit: Duration) -> Vec<Result<bool>> {
        let limit = items
            .iter()
            .map(|i| i.ttl)
            .min()
            .unwrap_or(limit)
            .min(limit);
        let first = items.first().map_or("", |i| i.name);
        let started = tokio::time::Instant::now();
        let mut retried = 0;
        let raw = loop {
            if let Err(e) = self.check(Op::Renew, first, limit).await {
                if retry_reconnect(&mut retried, started, limit, e.is_retryable()).await {
                    continue;
                }
                return items
                    .iter()
                    .map(|i| Err(e.clone().with_lease_name(i.name)))
                    .collect();
            }
            let live: Vec<Renewal<'_>> = items
                .iter()
                .filter(|i| !self.outdated(i.epoch))
                .copied()
                .collect();
            if live.is_empty() {
                break Ok((live, Vec::new()));
            }
            let mut results = self.renew_pipeline(&live, limit).await;
            let noscript = matches!(&results, Ok(v) if v.iter().any(|r| matches!(r, Err(e) if is_noscript(e))));
            if noscript {
                let mut conn = self.conn.clone();
                let key = self.lease_key(first);
                results = match self.raw_call(limit, conn.load(&SCRIPTS.renew, &key)).await {
                    Ok(()) => self.renew_pipeline(&live, limit).await,
                    Err(f) => Err(f),
                };
            }
            match results {
                Err(f)
                    if retry_reconnect(
                        &mut retried,
                        started,
                        limit,
                        f.is_fast_connection_failure(),
                    )
                    .await => {}
                r => break r.map(|v| (live, v)),
            }
        };
        match raw {
            Ok((live, replies)) => {
                // Outdated grants are lost without asking; the others take their reply.
                let mut replies = per_item(Ok(replies), &live).into_iter();
                items
                    .iter()
                    .map(|i| {
                        if self.outdated(i.epoch) {
                            Ok(false)
                        } else {
                            replies.next().unwrap_or(Ok(false))
                        }
                    })
                    .collect()
            }
            Err(f) => {
                let e = f.into_error(Op::Renew, first);
                items
                    .iter()
                    .map(|i| Err(e.clone().with_lease_name(i.name)))
                    .collect()
            }
        }
    }

    async fn renew_pipeline(
        &self,
        items: &[Renewal<'_>],
        limit: Duration,
    ) -> std::result::Result<Vec<RedisResult<bool>>, Failure> {
        let mut pipe = redis::pipe();
        for r in items {
            let mut cmd = SCRIPTS.renew.evalsha(&[self.lease_key(r.name)]);
            cmd.arg(id_match(r.lease_id)).arg(ttl_ms(r.ttl));
            pipe.add_command(cmd);
        }
        pipe.ignore_errors();
        let mut conn = self.conn.clone();
        self.raw_call(limit, async move { conn.query_pipe(&pipe).await })
            .await
    }

    /// Releases; `true` if this call deleted the lease.
    pub(crate) async fn release(&self, name: &str, lease_id: &str) -> Result<bool> {
        let lua = &SCRIPTS.release;
        let key = self.lease_key(name);
        let mut cmd = lua.evalsha(std::slice::from_ref(&key));
        cmd.arg(id_match(lease_id))
            .arg(self.channel(name))
            .arg(name);
        self.call(
            Op::Release,
            name,
            self.call_timeout,
            self.eval(lua, &key, cmd),
        )
        .await
    }

    /// Deletes whatever holds `name`; `true` if something did.
    pub(crate) async fn break_lease(&self, name: &str) -> Result<bool> {
        let lua = &SCRIPTS.breaks;
        let key = self.lease_key(name);
        let mut cmd = lua.evalsha(std::slice::from_ref(&key));
        cmd.arg(self.channel(name)).arg(name);
        self.call(
            Op::Break,
            name,
            self.call_timeout,
            self.eval(lua, &key, cmd),
        )
        .await
    }

    /// The holder of `name` on this server.
    pub(crate) async fn inspect(&self, name: &str) -> Result<Option<RawInfo>> {
        let lua = &SCRIPTS.inspect;
        let key = self.lease_key(name);
        let cmd = lua.evalsha(std::slice::from_ref(&key));
        let raw: Option<InspectReply> = self
            .call(
                Op::Inspect,
                name,
                self.call_timeout,
                self.eval(lua, &key, cmd),
            )
            .await?;
        Ok(raw.map(|(value, pttl, now_ms)| parse(&value, pttl, now_ms)))
    }
}

/// The restart fence in Redis Cluster mode.
///
/// On one server the fence is decided by the client (`INFO` after a connection failure,
/// see [`Identity`]). That does not carry over to a cluster: redis-rs' cluster connection
/// hides which node answers, and after a failover a redirected command sees no error, so an
/// `INFO` sent before the acquire may reach another node than the acquire itself. Instead
/// the check runs inside the acquire script (`cluster_fence.lua` prepended to
/// `acquire.lua`), atomically on the master that grants: `INFO` is allowed in scripts
/// (not `noscript`; checked on Redis 7.0). Its promotion marker is per hash slot
/// (`{prefix}{<slot tag>}:promoted`, `<replid>|<first notice ms>`, see [`slot_tag`]): a
/// cluster script may only touch keys of its keys' slot, so a server-wide marker as on
/// one server is out of reach, but every name of a slot shares the slot's marker. Per
/// slot, the fence after a promotion starts when a name of that slot is first acquired
/// there: never earlier than the promotion, so never shorter than on one server, and a
/// name first used long after the promotion in a slot already in use is not fenced again.
///
/// Only used when the fence is on: with it off, cluster acquires run the plain script
/// (no `INFO`, no extra key), so the default costs nothing extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClusterFence {
    /// The fence (ms).
    fence_ms: u64,
    /// How long a promotion marker outlives the last acquire in its slot on the node (ms):
    /// the fencing counter's retention, at least the fence. An expired marker only fences
    /// the slot once more at its next acquire (first notice again), which is safe.
    marker_ttl_ms: u64,
}

impl ClusterFence {
    fn new(config: &RedisConfig) -> Option<Self> {
        if config.restart_fence.is_zero() {
            return None;
        }
        let fence_ms = ttl_ms(config.restart_fence);
        // Built here, at connect, rather than in the first acquire (a few ms, once).
        LazyLock::force(&SLOT_TAGS);
        Some(Self {
            fence_ms,
            marker_ttl_ms: ttl_ms(config.fence_retention).max(fence_ms),
        })
    }

    /// The fenced acquire script's reply: nil when held, `{token, acquired ms}` when
    /// granted, `{0, fenced until ms, server now ms}` when the node is inside its fence
    /// (`ProviderUnavailable`, retried by the core). Token 0 is never granted (tokens are
    /// at least the server clock in µs, or above a Redlock floor).
    fn decode(&self, reply: Option<Vec<u64>>) -> Result<Option<(u64, u64)>> {
        match reply.as_deref() {
            None => Ok(None),
            Some(&[token, acquired_ms]) if token > 0 => Ok(Some((token, acquired_ms))),
            Some(&[0, until_ms, now_ms]) => {
                let left = Duration::from_millis(until_ms.saturating_sub(now_ms));
                Err(LeaseError::unavailable(format!(
                    "restart fence: the cluster node serving this name restarted less than {fence:?} ago, or was promoted from a replica less than {fence:?} before this name's hash slot was first used there; it grants nothing until {until_ms} ms Unix time on its clock (another {left:?})",
                    fence = Duration::from_millis(self.fence_ms)
                )))
            }
            Some(other) => Err(LeaseError::new(
                leasing_abstractions::ErrorKind::Acquisition,
                format!(
                    "redis acquire answered with an unexpected reply of {} numbers",
                    other.len()
                ),
            )),
        }
    }
}

/// The number of Redis Cluster hash slots.
const SLOTS: usize = 16384;

/// The hash tag of every slot's promotion marker: for slot `s` the smallest number whose
/// decimal digits hash to `s` (CRC16 as redis-rs and Redis compute it). Every slot is
/// covered by 0 … 109757, so a tag has at most six digits. Deterministic, so every client
/// (and version) names a slot's marker alike. Built once, when a cluster provider with a
/// restart fence is built.
static SLOT_TAGS: LazyLock<HashMap<Slot, u32>> = LazyLock::new(|| {
    let mut tags = HashMap::with_capacity(SLOTS);
    let mut digits = String::new();
    let mut i = 0u32;
    while tags.len() < SLOTS {
        digits.clear();
        write!(digits, "{i}").expect("a String takes any write");
        tags.entry(Slot::for_key(&digits)).or_insert(i);
        i += 1;
    }
    tags
});

/// The hash tag of the promotion marker of `key`'s slot: a key `{<tag>}…` lives in the
/// same slot as `key`, so a script may declare both.
fn slot_tag(key: &str) -> u32 {
    SLOT_TAGS[&Slot::for_key(key)]
}

/// The inspect script's reply: the record, its PTTL and the server's time (ms).
pub(crate) type InspectReply = (Vec<u8>, i64, u64);

/// A renewal that fails on a dropped or refused connection (or whose identity check fails
/// retryably) is sent again up to this many times, 10, 40 and 90 ms apart, within its
/// deadline: the connection manager reconnects after the first failure, so a holder learns
/// of a restarted server within a round trip of its return.
const RECONNECT_RETRIES: u32 = 3;

/// Whether to try again after a failure (`retryable`); pauses first.
async fn retry_reconnect(
    retried: &mut u32,
    started: tokio::time::Instant,
    limit: Duration,
    retryable: bool,
) -> bool {
    if !retryable || *retried >= RECONNECT_RETRIES || started.elapsed() >= limit {
        return false;
    }
    *retried += 1;
    tokio::time::sleep(Duration::from_millis(10) * *retried * *retried).await;
    true
}

/// Retries inside one call of a cluster connection (redirections, re-routing).
const CLUSTER_RETRIES: u32 = 3;

/// `INFO` is refused for good: not permitted, or not a known command (an `ERR` reply).
fn info_refused(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            redis::ServerErrorKind::NoPerm | redis::ServerErrorKind::ResponseError
        )
    )
}

pub(crate) fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// One result per renewed item from a pipeline's replies.
fn per_item(results: Result<Vec<RedisResult<bool>>>, items: &[Renewal<'_>]) -> Vec<Result<bool>> {
    match results {
        // redis-rs reads one reply per command; the count is checked all the same, since
        // the core relies on one result per grant.
        Ok(v) if v.len() == items.len() => v
            .into_iter()
            .zip(items)
            .map(|(r, i)| r.map_err(|e| map_err(e, Op::Renew, Some(i.name))))
            .collect(),
        Ok(_) => items
            .iter()
            .map(|i| {
                Err(LeaseError::new(
                    leasing_abstractions::ErrorKind::Renewal,
                    "redis answered a renewal batch with the wrong number of replies",
                )
                .with_lease_name(i.name))
            })
            .collect(),
        Err(e) => items
            .iter()
            .map(|i| Err(e.clone().with_lease_name(i.name)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_refused_only_for_good() {
        let wire = |reply: &str| {
            redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
                .expect("parse")
                .extract_error()
                .expect_err("an error reply")
        };
        assert!(info_refused(&wire("NOPERM no permissions to run 'info'")));
        assert!(info_refused(&wire("ERR unknown command 'INFO'")));
        assert!(!info_refused(&wire("BUSY Redis is busy running a script")));
        assert!(!info_refused(&wire("LOADING Redis is loading the dataset")));
    }

    #[test]
    fn one_result_per_renewed_item() {
        let d = Duration::from_secs(1);
        let item = |name| Renewal {
            name,
            lease_id: "1",
            ttl: d,
            epoch: None,
        };
        let items = [item("a"), item("b")];
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
        for bare in ["KEYS[2], token,", "'|' .. token ..", "'|' .. now_ms .."] {
            assert!(
                !writes.contains(bare),
                "acquire.lua stores a bare number: {bare}"
            );
        }
        assert!(writes.contains("string.format('%d', token)"));
        assert!(writes.contains("string.format('%d', now_ms)"));
        assert!(writes.contains("redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4], 'GET')"));
        assert!(writes.contains("redis.call('SET', KEYS[2], token_s, 'PX', ARGV[4])"));
        // fence.lua stores its argument (a string) as it came.
        assert!(include_str!("scripts/fence.lua")
            .contains("redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])"));
        assert!(include_str!("scripts/promoted.lua").contains("string.format('%d', now)"));
        assert!(include_str!("scripts/cluster_fence.lua")
            .contains("replid .. '|' .. string.format('%d', fnow)"));
    }

    #[test]
    fn every_slot_has_a_short_marker_tag_in_that_slot() {
        assert_eq!(SLOT_TAGS.len(), SLOTS);
        assert_eq!(Slot::new(SLOTS as u16), None, "{SLOTS} slots");
        let mut seen = std::collections::HashSet::new();
        for n in 0..SLOTS as u16 {
            let slot = Slot::new(n).expect("a slot");
            let tag = *SLOT_TAGS.get(&slot).expect("every slot has a tag");
            assert_eq!(
                Slot::for_key(tag.to_string()),
                slot,
                "tag {tag} of slot {n}"
            );
            assert!(seen.insert(tag), "tag {tag} twice");
        }
        // The smallest number per slot: deterministic, at most six digits.
        assert_eq!(SLOT_TAGS.values().max(), Some(&109_757));
        assert_eq!(slot_tag("0"), 0);
        // A marker `{prefix}{<tag>}:promoted` is in the lease's slot, under another tag.
        for name in ["a", "job-42", "prod:eu::billing:invoice%3A42", "123"] {
            let lease = format!("lease:{{{name}}}");
            let marker = format!("lease:{{{}}}:promoted", slot_tag(&lease));
            assert_eq!(Slot::for_key(&marker), Slot::for_key(&lease), "{name}");
            assert_eq!(slot_tag(&lease), slot_tag(name), "the hash tag decides");
        }
    }

    #[test]
    fn the_cluster_fence_is_off_by_default_and_decodes_its_replies() {
        let off = RedisConfig::default();
        assert_eq!(
            ClusterFence::new(&off),
            None,
            "off: the plain acquire script"
        );
        let on = RedisConfig {
            restart_fence: Duration::from_secs(3),
            fence_retention: Duration::from_millis(10),
            ..RedisConfig::default()
        };
        let f = ClusterFence::new(&on).expect("on");
        assert_eq!(f.fence_ms, 3000);
        assert_eq!(
            f.marker_ttl_ms, 3000,
            "a marker outlives at least the fence"
        );
        let long = RedisConfig {
            fence_retention: Duration::from_secs(86_400),
            ..on
        };
        let f = ClusterFence::new(&long).expect("on");
        assert_eq!(f.marker_ttl_ms, 86_400_000, "…and the counter's retention");

        assert_eq!(f.decode(None).expect("held"), None);
        assert_eq!(
            f.decode(Some(vec![1_700_000_000_000_000, 1_700_000_000_000]))
                .expect("granted"),
            Some((1_700_000_000_000_000, 1_700_000_000_000))
        );
        let e = f
            .decode(Some(vec![0, 1_700_000_002_500, 1_700_000_000_000]))
            .expect_err("fenced");
        assert_eq!(
            e.kind(),
            leasing_abstractions::ErrorKind::ProviderUnavailable
        );
        assert!(e.is_retryable());
        assert!(
            e.message().contains("restart fence")
                && e.message().contains("until 1700000002500 ms")
                && e.message().contains("another 2.5s"),
            "{e}"
        );
        for odd in [vec![], vec![0, 1], vec![1, 2, 3], vec![1]] {
            let e = f.decode(Some(odd)).expect_err("unexpected");
            assert_eq!(
                e.kind(),
                leasing_abstractions::ErrorKind::Acquisition,
                "{e}"
            );
        }
    }
}
