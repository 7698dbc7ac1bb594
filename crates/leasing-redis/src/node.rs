//! One Redis server: its connection, the lease scripts, and the release subscriber.
//! Shared by the single-instance provider and every Redlock node.

use crate::config::{redact_url, refresh_delay, RedisConfig, TokenCredential};
use crate::error::{map_err, timeout, Op};
use futures::StreamExt;
use leasing_abstractions::{LeaseError, Metadata, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, RedisResult, Script};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, watch};
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
    channel: String,
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
        notify: broadcast::Sender<String>,
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
            ConnectionManager::new_lazy_with_config(base.clone(), mc)
                .map_err(|e| map_err(e, Op::Connect, None))?
        } else {
            match tokio::time::timeout(
                config.connect_timeout * 2,
                ConnectionManager::new_with_config(base.clone(), mc),
            )
            .await
            {
                Ok(r) => r.map_err(|e| map_err(e, Op::Connect, None))?,
                Err(_) => return Err(timeout(Op::Connect, None, config.connect_timeout * 2)),
            }
        };
        let channel = format!("{}released", config.key_prefix);
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let sub = subscriber(
            config.clone(),
            url.to_owned(),
            channel.clone(),
            notify,
            ready_tx,
        );
        let handle = AbortOnDropHandle::new(tokio::spawn(sub));
        let node = Self {
            conn,
            prefix: config.key_prefix.clone(),
            channel,
            call_timeout: config.call_timeout,
            redacted_url,
            _subscriber: handle,
        };
        if !lazy {
            // Wait (bounded) for the subscription so the first waiter does not miss a release.
            let _ = tokio::time::timeout(config.connect_timeout, ready_rx.wait_for(|r| *r)).await;
        }
        Ok(node)
    }

    pub(crate) fn lease_key(&self, name: &str) -> String {
        format!("{}{{{name}}}", self.prefix)
    }

    pub(crate) fn fence_key(&self, name: &str) -> String {
        format!("{}{{{name}}}:fence", self.prefix)
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
        match results {
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
            .arg(&self.channel)
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
        inv.key(self.lease_key(name)).arg(&self.channel).arg(name);
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

/// Forwards release announcements into `notify`, reconnecting (with a fresh token when a
/// credential is configured) whenever the subscription drops.
async fn subscriber(
    config: RedisConfig,
    url: String,
    channel: String,
    notify: broadcast::Sender<String>,
    ready: watch::Sender<bool>,
) {
    let mut pause = Duration::from_millis(50);
    loop {
        if let Ok(mut stream) = subscribe(&config, &url, &channel).await {
            let _ = ready.send(true);
            pause = Duration::from_millis(50);
            while let Some(msg) = stream.next().await {
                if let Ok(name) = msg.get_payload::<String>() {
                    let _ = notify.send(name);
                }
            }
            tracing::debug!("release subscription dropped; reconnecting");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn subscribe(
    config: &RedisConfig,
    url: &str,
    channel: &str,
) -> Result<redis::aio::PubSubStream> {
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
    let fut = async move {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| map_err(e, Op::Connect, None)),
        Err(_) => Err(timeout(Op::Connect, None, limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
