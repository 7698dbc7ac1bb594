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

mod cluster_fence;
mod renew;

use cluster_fence::{slot_tag, ClusterFence};

/// One Redis server, or one Redis Cluster.
pub(crate) struct Node {
    pub(crate) conn: Conn,
    pub(crate) prefix: String,
    /// How long a fencing counter outlives its last grant, in ms.
    retention_ms: u64,
    /// Identity checks and the restart fence (one server; in cluster mode no identity
    /// checks: a renewal on a promoted node that lacks the lease finds no key, `Lost`).
    identity: Option<Arc<Identity>>,
    /// The restart fence in cluster mode, checked inside the acquire script on the node
    /// that grants (see [`ClusterFence`]); `None` on one server and when the fence is off.
    cluster_fence: Option<ClusterFence>,
    redacted_url: String,
    _subscriber: AbortOnDropHandle<()>,
    /// One server: notices at once when the server closes the connection (see
    /// [`watch`](crate::watcher::watch)); `None` in cluster mode.
    _watcher: Option<AbortOnDropHandle<()>>,
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

/// The connection failed (not the server refusing a command: also the transport's
/// response timeout): the server may have restarted or been replaced.
fn is_connection(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// A failed call as the core sees it.
fn into_error(e: RedisError, op: Op, name: &str) -> LeaseError {
    map_err(e, op, (!name.is_empty()).then_some(name))
}

/// Marks the server suspect when dropped while armed: a call that failed on its connection,
/// or that was dropped before it answered (its deadline passed: the core, or Redlock's
/// per-server budget, dropped the future), makes the next call ask who the server is.
struct Unanswered<'a>(Option<&'a Identity>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            id.suspect();
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
        renew_now: &tokio::sync::broadcast::Sender<()>,
        lazy: bool,
    ) -> Result<Self> {
        crate::config::validate_url(url)?;
        let redacted_url = redact_url(url);
        let base = client(config, url, None)?;
        let mut mc = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            // The most one command waits for its reply; the call's deadline is the core's.
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
        let identity = Arc::new(Identity::new(config.restart_fence));
        let watcher = crate::watcher::watch(
            config.clone(),
            url.to_owned(),
            Arc::clone(&identity),
            renew_now.clone(),
            conn.clone(),
        );
        let node = Self {
            conn: Conn::Single(conn),
            prefix: config.key_prefix.clone(),
            retention_ms: ttl_ms(config.fence_retention),
            identity: Some(identity),
            cluster_fence: None,
            redacted_url,
            _subscriber: AbortOnDropHandle::new(tokio::spawn(sub)),
            _watcher: Some(AbortOnDropHandle::new(tokio::spawn(watcher))),
        };
        if !lazy {
            // Who the server is, and whether it is inside its restart fence.
            node.check(Op::Connect, "")
                .await
                .map_err(|e| at_server(e, &node.redacted_url))?;
        }
        Ok(node)
    }

    /// Tries a lazily connected node (Redlock) now, within `limit`: a server that refuses
    /// the settings (`SELECT` of a database that does not exist) is a `Configuration`
    /// error, found at build rather than as an `Unexpected` error on every call. A server
    /// that is down, fenced or refuses the credentials is not an error here (it may come
    /// up later, and the operations report it): it is returned as `Ok(Some(why))`, so that
    /// the caller can require a majority to answer.
    pub(crate) async fn probe(&self, limit: Duration) -> Result<Option<LeaseError>> {
        // PING, not the identity check: its INFO treats an `ERR` reply as "INFO refused".
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = self.raw_call(conn.query::<String>(&cmd));
        match tokio::time::timeout(limit, ping).await {
            Ok(Err(e)) => match into_error(e, Op::Connect, "") {
                e if e.kind() == leasing_abstractions::ErrorKind::Configuration => Err(e),
                e => Ok(Some(e)),
            },
            Err(_) => Ok(Some(timeout(Op::Connect, None, limit))),
            Ok(Ok(_)) => Ok(None),
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
            // few, quickly, all inside the call's deadline (the core does the waiting).
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
            retention_ms: ttl_ms(config.fence_retention),
            identity: None,
            _watcher: None,
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

    /// Runs `fut`. No timeout of its own: the call's deadline is the core's (it drops the
    /// call when it passes), and each command waits for its reply at most the transport's
    /// response timeout (`call_timeout`). A connection failure, or the call being dropped
    /// before it answered, makes the next call check who the server is first.
    async fn raw_call<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
        let mut unanswered = Unanswered(self.identity.as_deref());
        let r = fut.await;
        if !matches!(&r, Err(e) if is_connection(e)) {
            unanswered.0 = None;
        }
        r
    }

    pub(crate) async fn call<T>(
        &self,
        op: Op,
        name: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        self.raw_call(fut)
            .await
            .map_err(|e| into_error(e, op, name))
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
    async fn check(&self, op: Op, name: &str) -> Result<()> {
        let Some(id) = &self.identity else {
            return Ok(());
        };
        if !id.check_due() {
            return Ok(());
        }
        let mut cmd = redis::cmd("INFO");
        cmd.arg("server").arg("replication");
        let mut conn = self.conn.clone();
        let text: String = match self.raw_call(conn.query(&cmd)).await {
            Ok(t) => t,
            // Not allowed (ACL) or not known (renamed): the checks are off for this server.
            Err(e) if info_refused(&e) => {
                tracing::warn!(
                    url = %self.redacted_url,
                    "INFO refused: restart and failover detection are off for this server"
                );
                id.disable();
                return Ok(());
            }
            // Down, busy, loading…: the check stays due.
            Err(e) => return Err(into_error(e, op, name)),
        };
        let info = ServerInfo::parse(&text);
        let promoted_for = if info.master && info.promoted && !id.fence.is_zero() {
            let key = format!("{}promoted:{}", self.prefix, info.replid);
            let cmd = SCRIPTS.promoted.evalsha(&[key.as_str()]);
            let (at, now): (u64, u64) = self
                .call(op, name, self.eval(&SCRIPTS.promoted, &key, cmd))
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

    /// Runs `lua` on `key` (loading it after `NOSCRIPT`): for the scripts of
    /// [`RedisFencedResource`](crate::RedisFencedResource).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        op: Op,
        lua: &Lua,
        key: &str,
        cmd: Cmd,
    ) -> Result<T> {
        self.call(op, key, self.eval(lua, key, cmd)).await
    }

    /// Runs one command on `key`'s server.
    pub(crate) async fn query<T: FromRedisValue>(&self, op: Op, key: &str, cmd: &Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        self.call(op, key, conn.query(cmd)).await
    }

    /// The node's epoch (0 in cluster mode).
    pub(crate) fn epoch(&self) -> u64 {
        self.identity.as_ref().map_or(0, |i| i.epoch())
    }

    /// Runs the acquire script. `Some` when granted.
    pub(crate) async fn acquire(&self, a: Acquire<'_>) -> Result<Option<Granted>> {
        self.check(Op::Acquire, a.name).await?;
        if let Some(left) = self.identity.as_ref().and_then(|i| i.fenced_for()) {
            return Err(LeaseError::unavailable(format!(
                "restart fence: the server restarted or changed recently and grants nothing for another {left:?}"
            ))
            .with_lease_name(a.name));
        }
        if let Some(fence) = &self.cluster_fence {
            return self.acquire_fenced(a, fence).await;
        }
        let epoch = self.epoch();
        let lua = &SCRIPTS.acquire;
        let key = self.lease_key(a.name);
        let mut cmd = lua.evalsha(&[&key, &self.fence_key(a.name)]);
        cmd.arg(a.lease_id)
            .arg(ttl_ms(a.ttl))
            .arg(a.floor)
            .arg(self.retention_ms)
            .arg(a.rest);
        let got: Option<(u64, u64)> = self
            .call(Op::Acquire, a.name, self.eval(lua, &key, cmd))
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
        fence: &ClusterFence,
    ) -> Result<Option<Granted>> {
        let lua = &SCRIPTS.acquire_fenced;
        let key = self.lease_key(a.name);
        let mut cmd = lua.evalsha(&[&key, &self.fence_key(a.name), &self.promoted_key(&key)]);
        cmd.arg(a.lease_id)
            .arg(ttl_ms(a.ttl))
            .arg(a.floor)
            .arg(self.retention_ms)
            .arg(a.rest)
            .arg(fence.fence_ms)
            .arg(fence.marker_ttl_ms);
        let reply: Option<Vec<u64>> = self
            .call(Op::Acquire, a.name, self.eval(lua, &key, cmd))
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
    pub(crate) async fn fence(&self, name: &str, lease_id: &str, token: u64) -> Result<bool> {
        let lua = &SCRIPTS.fence;
        let key = self.lease_key(name);
        let mut cmd = lua.evalsha(&[&key, &self.fence_key(name)]);
        cmd.arg(id_match(lease_id))
            .arg(token)
            .arg(self.retention_ms);
        self.call(Op::Acquire, name, self.eval(lua, &key, cmd))
            .await
    }

    /// Whether a grant of `epoch` was made on a server this node no longer talks to.
    fn outdated(&self, epoch: Option<u64>) -> bool {
        epoch.is_some_and(|e| e != self.epoch())
    }

    /// Releases; `true` if this call deleted the lease.
    pub(crate) async fn release(&self, name: &str, lease_id: &str) -> Result<bool> {
        let lua = &SCRIPTS.release;
        let key = self.lease_key(name);
        let mut cmd = lua.evalsha(&[key.as_str()]);
        cmd.arg(id_match(lease_id))
            .arg(self.channel(name))
            .arg(name);
        self.call(Op::Release, name, self.eval(lua, &key, cmd))
            .await
    }

    /// Deletes whatever holds `name`; `true` if something did.
    pub(crate) async fn break_lease(&self, name: &str) -> Result<bool> {
        let lua = &SCRIPTS.breaks;
        let key = self.lease_key(name);
        let mut cmd = lua.evalsha(&[key.as_str()]);
        cmd.arg(self.channel(name)).arg(name);
        self.call(Op::Break, name, self.eval(lua, &key, cmd)).await
    }

    /// The holder of `name` on this server.
    pub(crate) async fn inspect(&self, name: &str) -> Result<Option<RawInfo>> {
        let lua = &SCRIPTS.inspect;
        let key = self.lease_key(name);
        let cmd = lua.evalsha(&[key.as_str()]);
        let raw: Option<InspectReply> = self
            .call(Op::Inspect, name, self.eval(lua, &key, cmd))
            .await?;
        Ok(raw.map(|(value, pttl, now_ms)| parse(&value, pttl, now_ms)))
    }
}

/// The inspect script's reply: the record, its PTTL and the server's time (ms).
pub(crate) type InspectReply = (Vec<u8>, i64, u64);

/// Retries inside one call of a cluster connection (redirections, re-routing).
const CLUSTER_RETRIES: u32 = 3;

/// `INFO` is refused for good: not permitted (`NOPERM`), or not a known command (an `ERR
/// unknown command` reply: renamed or disabled). Any other `ERR` may pass (the check stays
/// due and is made again), so it never switches the checks off.
fn info_refused(e: &RedisError) -> bool {
    match e.kind() {
        redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => true,
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => e
            .detail()
            .is_some_and(|d| d.to_ascii_lowercase().contains("unknown command")),
        _ => false,
    }
}

pub(crate) fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
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
        assert!(info_refused(&wire(
            "ERR unknown command 'info', with args beginning with: "
        )));
        // Another ERR may pass: the checks stay on and the check is made again.
        assert!(!info_refused(&wire("ERR max number of clients reached")));
        assert!(!info_refused(&wire("ERR")));
        assert!(!info_refused(&wire("BUSY Redis is busy running a script")));
        assert!(!info_refused(&wire("LOADING Redis is loading the dataset")));
    }
}
