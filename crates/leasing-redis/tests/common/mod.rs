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
