//! Shared helpers of the integration tests: connections, a front door, Redlock servers
//! that go away (service discovery and the private server fixture are in
//! `leasing_testkit::services`).
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)]

use std::time::{Duration, Instant};

pub use leasing_testkit::services::{free_port, service_env, RedisServer};

pub fn unique(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::new_v4().simple())
}

/// `n` private servers (no persistence, `args` added) and their URLs, or `None` after a
/// SKIPPED line when redis-server is not installed.
pub fn private_servers(n: usize, args: &[&str]) -> Option<(Vec<RedisServer>, Vec<String>)> {
    if !RedisServer::installed() {
        return None;
    }
    let servers: Vec<RedisServer> = (0..n)
        .map(|_| RedisServer::start_with(args).expect("start redis-server"))
        .collect();
    let urls = servers.iter().map(RedisServer::url).collect();
    Some((servers, urls))
}

/// A raw redis-rs connection for assertions and admin commands.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// A single-server provider on `url` with the default options; panics naming the URL if it
/// cannot connect.
pub async fn connect(url: impl Into<String>) -> leasing_redis::RedisLeaseProvider {
    let url = url.into();
    leasing_redis::RedisLeaseProvider::builder()
        .url(&url)
        .build()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// As [`connect`], with a per-call deadline of `call_timeout`.
pub async fn connect_with_timeout(
    url: impl Into<String>,
    call_timeout: Duration,
) -> leasing_redis::RedisLeaseProvider {
    let url = url.into();
    leasing_redis::RedisLeaseProvider::builder()
        .url(&url)
        .call_timeout(call_timeout)
        .build()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A TCP front door whose target can be switched, as a service host name that moves to a
/// promoted replica after a failover: new connections go to the current target; switching
/// drops the open ones.
pub struct FrontDoor {
    pub addr: std::net::SocketAddr,
    target: std::sync::Arc<std::sync::Mutex<std::net::SocketAddr>>,
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl FrontDoor {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let target = std::sync::Arc::new(std::sync::Mutex::new(target));
        let generation = std::sync::Arc::new(tokio::sync::watch::channel(0u64).0);
        let (t, g) = (target.clone(), generation.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *t.lock().expect("target");
                let mut changed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = changed.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            target,
            generation,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// New connections go to `to`; open ones are dropped.
    pub fn switch(&self, to: std::net::SocketAddr) {
        *self.target.lock().expect("target") = to;
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Waits until the replica at `url` reports its link to the primary up.
pub async fn wait_replica_synced(url: &str) {
    let mut c = raw(url).await;
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await
            .expect("info");
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "replica never synced: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Servers that answer while a Redlock provider is built (a Redlock build needs a majority
/// to answer) and are gone once `cut` is called: `n` proxies to the live server `live`,
/// addressed as `host:port` so that tests can choose how they sort.
pub struct GoneAfterBuild {
    pub urls: Vec<String>,
    proxies: Vec<leasing_testkit::proxy::FaultProxy>,
}

impl GoneAfterBuild {
    pub async fn start(n: usize, live: &str, host: &str) -> Self {
        let target: std::net::SocketAddr = live
            .trim_start_matches("redis://")
            .parse()
            .expect("a live server as redis://ip:port");
        let mut proxies = Vec::with_capacity(n);
        for _ in 0..n {
            proxies.push(
                leasing_testkit::proxy::FaultProxy::start(target)
                    .await
                    .expect("proxy"),
            );
        }
        let urls = proxies
            .iter()
            .map(|p| format!("redis://{host}:{}", p.addr().port()))
            .collect();
        Self { urls, proxies }
    }

    /// Every connection closed, new ones closed at once: the servers are down.
    pub fn cut(&self) {
        for p in &self.proxies {
            p.cut();
        }
    }
}

/// A request for `name` with duration `d` and no metadata.
pub fn req(name: &str, d: Duration) -> leasing_abstractions::AcquireRequest {
    leasing_abstractions::AcquireRequest::new(name, d, leasing_abstractions::Metadata::new())
}

/// Options that renew every third of `d` and retry a failed renewal three times.
pub fn renewing_options(d: Duration) -> leasing_abstractions::LeaseOptions {
    leasing_abstractions::LeaseOptions::default()
        .with_default_lease_duration(d)
        .with_auto_renew_interval(d / 3)
        .with_auto_renew_retry_interval(Duration::from_millis(100))
        .with_auto_renew_max_retries(3u32)
        .with_acquire_timeout(Duration::from_secs(10))
}

/// A private server, a fault proxy in front of it and a provider (per-call deadline
/// `call_timeout`) that talks through the proxy; `None` when redis-server is not installed.
pub async fn behind_proxy(
    call_timeout: Duration,
) -> Option<(
    RedisServer,
    leasing_testkit::proxy::FaultProxy,
    leasing_redis::RedisLeaseProvider,
)> {
    if !RedisServer::installed() {
        return None;
    }
    let server = RedisServer::start().expect("start redis-server");
    let proxy = leasing_testkit::proxy::FaultProxy::start(server.addr())
        .await
        .expect("proxy");
    let p = connect_with_timeout(format!("redis://{}", proxy.addr()), call_timeout).await;
    Some((server, proxy, p))
}

/// `CLUSTER KEYSLOT key` on the node of `c`.
pub async fn keyslot(c: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(c)
        .await
        .expect("keyslot")
}

/// One range of `CLUSTER SLOTS`: the slots `first..=last` and their master.
pub struct SlotRange {
    pub first: i64,
    pub last: i64,
    /// The master as `host:port`.
    pub master: String,
    pub master_id: String,
}

/// `CLUSTER SLOTS` on the node of `c`.
pub async fn cluster_slots(c: &mut redis::aio::MultiplexedConnection) -> Vec<SlotRange> {
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(c)
        .await
        .expect("cluster slots");
    ranges
        .into_iter()
        .map(|range| {
            // [first, last, [ip, port, id, …], replicas…]
            let range: Vec<redis::Value> = redis::from_redis_value(range).expect("slot range");
            let first: i64 = redis::from_redis_value(range[0].clone()).expect("first");
            let last: i64 = redis::from_redis_value(range[1].clone()).expect("last");
            let master: Vec<redis::Value> =
                redis::from_redis_value(range[2].clone()).expect("master");
            let ip: String = redis::from_redis_value(master[0].clone()).expect("ip");
            let port: i64 = redis::from_redis_value(master[1].clone()).expect("port");
            let id: String = redis::from_redis_value(master[2].clone()).expect("id");
            SlotRange {
                first,
                last,
                master: format!("{ip}:{port}"),
                master_id: id,
            }
        })
        .collect()
}

/// Whether the lease `name` has a key on the server at `url`.
pub async fn exists(url: &str, name: &str) -> bool {
    let mut c = raw(url).await;
    redis::cmd("EXISTS")
        .arg(format!("lease:{{{name}}}"))
        .query_async(&mut c)
        .await
        .expect("exists")
}

/// A Redlock provider over the first two servers of `LEASING_REDLOCK_URLS` and three more
/// (addressed on `host`) that answer the build and are down after it: the two live URLs
/// and the provider, or `None` when the variable is unset.
pub async fn redlock_without_a_majority(
    host: &str,
) -> Option<(Vec<String>, leasing_redis::RedlockLeaseProvider)> {
    let urls = service_env("LEASING_REDLOCK_URLS")?;
    let up: Vec<String> = urls.split(',').take(2).map(str::to_owned).collect();
    let mut all = up.clone();
    // Three servers that answer the build (it needs a majority) and are down after it.
    let gone = GoneAfterBuild::start(3, &up[0], host).await;
    all.extend(gone.urls.iter().cloned());
    let p = leasing_redis::RedlockLeaseProvider::builder()
        .urls(&all)
        .call_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect("build");
    gone.cut();
    Some((up, p))
}

/// A Redlock provider whose `n` servers answer the build (proxies to `live`, addressed on
/// 127.0.0.1) and are all down after it.
pub async fn redlock_all_down(n: usize, live: &str) -> leasing_redis::RedlockLeaseProvider {
    let gone = GoneAfterBuild::start(n, live, "127.0.0.1").await;
    let p = leasing_redis::RedlockLeaseProvider::builder()
        .urls(&gone.urls)
        .build()
        .await
        .expect("build");
    gone.cut();
    p
}

/// A hand-off through the release notification: `a` holds `name`, `b` waits for it with
/// 20 s polling; `settle` runs while `b` waits (it lets `b` find the name held and
/// subscribe). Asserts that `b` gets the name, with a higher token, long before the next
/// poll.
pub async fn assert_release_wakes_the_waiter<P, F>(
    a: P,
    b: P,
    name: &str,
    settle: impl FnOnce() -> F,
) where
    P: leasing_abstractions::LeaseProvider + 'static,
    F: std::future::Future<Output = ()>,
{
    let slow_polling = leasing_abstractions::LeaseOptions::default()
        .with_acquire_retry_interval(Duration::from_secs(20))
        .with_acquire_timeout(Duration::from_secs(30));
    let a = leasing_abstractions::LeaseManager::new(std::sync::Arc::new(a), slow_polling.clone())
        .expect("a");
    let b =
        leasing_abstractions::LeaseManager::new(std::sync::Arc::new(b), slow_polling).expect("b");
    let held = a.acquire(name).await.expect("acquire");
    let waiter = {
        let name = name.to_owned();
        tokio::spawn(async move {
            let l = b.acquire(&name).await.expect("waiter acquires");
            (
                tokio::time::Instant::now(),
                l.fencing_token(),
                l.release().await,
            )
        })
    };
    settle().await;
    let first = held.fencing_token();
    let released_at = tokio::time::Instant::now();
    held.release().await.expect("release");
    let (got_at, token, rel) = waiter.await.expect("join");
    rel.expect("release");
    assert!(token > first);
    // Far below the 20 s polling interval: the release notification woke the waiter.
    assert!(
        got_at - released_at < Duration::from_secs(5),
        "hand-off took {:?}: woken by polling, not by the release",
        got_at - released_at
    );
}

/// A loopback "server" that answers each command it reads with `reply`.
pub async fn answering_server(
    reply: &'static [u8],
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    // One reply per command: a command is a RESP array (`*<n>\r\n`).
                    let commands = buf[..n]
                        .split(|b| *b == b'\n')
                        .filter(|l| l.first() == Some(&b'*'))
                        .count()
                        .max(1);
                    for _ in 0..commands {
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A private server and a provider on it (per-call deadline `call_timeout`); `None` when
/// redis-server is not installed.
pub async fn private_server(
    call_timeout: Duration,
) -> Option<(RedisServer, leasing_redis::RedisLeaseProvider)> {
    if !RedisServer::installed() {
        return None;
    }
    let server = RedisServer::start().expect("start redis-server");
    let p = connect_with_timeout(server.url(), call_timeout).await;
    Some((server, p))
}
