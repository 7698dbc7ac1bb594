//! One Redis server: its connection, the lease scripts, and the release subscriber.
//! Shared by the single-instance provider and every Redlock node.

use crate::config::{redact_url, refresh_delay, RedisConfig, TokenCredential};
use crate::error::{map_err, timeout, Op};
use crate::releases::{plan, Releases, CHECK_PERIOD};
use futures::StreamExt;
use leasing_abstractions::{LeaseError, Metadata, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, RedisResult, Script};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) renew: Script,
    pub(crate) release: Script,
    pub(crate) breaks: Script,
    pub(crate) inspect: Script,
    pub(crate) fence: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Script::new(include_str!("scripts/acquire.lua")),
    renew: Script::new(include_str!("scripts/renew.lua")),
    release: Script::new(include_str!("scripts/release.lua")),
    breaks: Script::new(include_str!("scripts/break.lua")),
    inspect: Script::new(include_str!("scripts/inspect.lua")),
    fence: Script::new(include_str!("scripts/fence.lua")),
});

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

/// One Redis server.
pub(crate) struct Node {
    conn: ConnectionManager,
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

/// Builds a redis-rs client for `url` with the configured credentials and TLS.
fn client(config: &RedisConfig, url: &str, auth: Option<(String, String)>) -> Result<Client> {
    let mut info = url
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
    info = info.set_redis_settings(settings);
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
        let sub = subscriber(config.clone(), url.to_owned(), releases);
        Ok(Self {
            conn,
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
        let mut inv = SCRIPTS.acquire.prepare_invoke();
        inv.key(self.lease_key(name))
            .key(self.fence_key(name))
            .arg(lease_id)
            .arg(ttl_ms(ttl))
            .arg(floor)
            .arg(owner);
        for (k, v) in metadata {
            inv.arg(format!("{META_PREFIX}{k}")).arg(v);
        }
        let mut conn = self.conn.clone();
        self.call(Op::Acquire, name, limit, async move {
            inv.invoke_async::<Option<(u64, u64)>>(&mut conn).await
        })
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
        let mut inv = SCRIPTS.fence.prepare_invoke();
        inv.key(self.lease_key(name))
            .key(self.fence_key(name))
            .arg(lease_id)
            .arg(token);
        let mut conn = self.conn.clone();
        self.call(Op::Acquire, name, limit, async move {
            inv.invoke_async::<bool>(&mut conn).await
        })
        .await
    }

    /// Renews; `false` when the lease is no longer held under `lease_id`.
    pub(crate) async fn renew(&self, name: &str, lease_id: &str, ttl: Duration) -> Result<bool> {
        let mut inv = SCRIPTS.renew.prepare_invoke();
        inv.key(self.lease_key(name)).arg(lease_id).arg(ttl_ms(ttl));
        let mut conn = self.conn.clone();
        self.call(Op::Renew, name, ttl, async move {
            inv.invoke_async::<bool>(&mut conn).await
        })
        .await
    }

    /// Renews many leases in one pipelined round trip (EVALSHA each; on NOSCRIPT the
    /// script is loaded and the batch sent once more, which is harmless: renewing twice
    /// only extends again).
    pub(crate) async fn renew_many(&self, items: &[(&str, &str, Duration)]) -> Vec<Result<bool>> {
        let limit = items.iter().map(|i| i.2).min().unwrap_or(self.call_timeout);
        let first = items.first().map_or("", |i| i.0);
        let mut results = self.renew_pipeline(items, limit, first).await;
        let noscript = matches!(&results, Ok(v) if v.iter().any(|r| matches!(r, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))));
        if noscript {
            let mut conn = self.conn.clone();
            let loaded = self
                .call(Op::Renew, first, limit, async move {
                    SCRIPTS.renew.load_async(&mut conn).await
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
            pipe.cmd("EVALSHA")
                .arg(SCRIPTS.renew.get_hash())
                .arg(1)
                .arg(self.lease_key(name))
                .arg(*id)
                .arg(ttl_ms(*ttl));
        }
        pipe.ignore_errors();
        let mut conn = self.conn.clone();
        self.call(Op::Renew, first, limit, async move {
            pipe.query_async::<Vec<RedisResult<bool>>>(&mut conn).await
        })
        .await
    }

    /// Releases; `true` if this call deleted the lease.
    pub(crate) async fn release(&self, name: &str, lease_id: &str) -> Result<bool> {
        let mut inv = SCRIPTS.release.prepare_invoke();
        inv.key(self.lease_key(name))
            .arg(lease_id)
            .arg(self.channel(name))
            .arg(name);
        let mut conn = self.conn.clone();
        self.call(Op::Release, name, self.call_timeout, async move {
            inv.invoke_async::<bool>(&mut conn).await
        })
        .await
    }

    /// Deletes whatever holds `name`; `true` if something did.
    pub(crate) async fn break_lease(&self, name: &str) -> Result<bool> {
        let mut inv = SCRIPTS.breaks.prepare_invoke();
        inv.key(self.lease_key(name))
            .arg(self.channel(name))
            .arg(name);
        let mut conn = self.conn.clone();
        self.call(Op::Break, name, self.call_timeout, async move {
            inv.invoke_async::<bool>(&mut conn).await
        })
        .await
    }

    /// The holder of `name` on this server.
    pub(crate) async fn inspect(&self, name: &str) -> Result<Option<RawInfo>> {
        let mut inv = SCRIPTS.inspect.prepare_invoke();
        inv.key(self.lease_key(name));
        let mut conn = self.conn.clone();
        let raw = self
            .call(Op::Inspect, name, self.call_timeout, async move {
                inv.invoke_async::<Option<(Vec<(String, String)>, i64, u64)>>(&mut conn)
                    .await
            })
            .await?;
        Ok(raw.map(|(fields, pttl, now_ms)| parse_info(fields, pttl, now_ms)))
    }
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
async fn subscriber(config: RedisConfig, url: String, releases: Arc<Releases>) {
    let mut changed = releases.watch();
    let mut pause = Duration::from_millis(50);
    loop {
        while releases.wanted().is_empty() {
            // The sender lives in `releases`, which this task holds: this cannot fail.
            let _ = changed.changed().await;
        }
        match pubsub(&config, &url).await {
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
