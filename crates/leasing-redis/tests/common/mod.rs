//! Shared helpers of the integration tests: service discovery and a private server fixture.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The value of `var`, or `None` after a loud SKIPPED line. Under
/// `LEASING_REQUIRE_SERVICES=1` a missing variable fails the test.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if required() => panic!("{var} is not set but LEASING_REQUIRE_SERVICES=1: start the servers with scripts/redis-up.sh and source target/services/redis.env"),
        _ => {
            eprintln!("SKIPPED: {var} is not set; start the servers with scripts/redis-up.sh and source target/services/redis.env");
            None
        }
    }
}

pub fn required() -> bool {
    std::env::var("LEASING_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether `redis-server` can be run; otherwise SKIPPED (or a failure when required).
pub fn have_redis_server() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !required(),
            "redis-server is not installed but LEASING_REQUIRE_SERVICES=1"
        );
        eprintln!("SKIPPED: redis-server is not installed; run scripts/redis-up.sh");
    }
    ok
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn unique(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::new_v4().simple())
}

/// A private redis-server on a free loopback port, killed on drop; `restart` keeps the port
/// (and, without persistence, forgets every key).
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "leasing-redis-fixture-{port}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let mut s = Self {
            port,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        // Generous: a machine kept busy by other builds can take far longer than an idle
        // one; a server that exits fails at once, with its log.
        let started = Instant::now();
        while std::net::TcpStream::connect(self.addr()).is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > Duration::from_secs(180) {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "fixture redis-server on {} did not start ({}); the end of its log:\n{}",
                    self.addr(),
                    exited.map_or("not listening after 180 s".to_owned(), |s| s.to_string()),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(self.addr()).is_ok()
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
