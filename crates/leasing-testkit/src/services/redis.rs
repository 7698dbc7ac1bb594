//! A private redis-server, and Redis Cluster nodes formed into a cluster.

use super::fixture::Setup;
use super::{have_program, try_free_port, Service, ServiceError};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "scripts/redis-up.sh installs redis-server and redis-cli";

/// How to start a [`RedisServer`]: without persistence and in the system temp folder
/// unless told otherwise.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RedisServerBuilder {
    setup: Setup,
    persistent: bool,
    cluster: bool,
}

impl RedisServerBuilder {
    setup_setters!();

    /// An append-only file fsynced on every write: a kill loses nothing, a
    /// [`Service::restart`] keeps every key ([`Service::restart_wiped`] does not).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// A Redis Cluster node (not yet in a cluster: see [`form_cluster`]), its cluster bus
    /// on another free port and its cluster state in its data, so that a restart with its
    /// data rejoins the cluster.
    pub fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Starts it on a free loopback port.
    ///
    /// # Errors
    ///
    /// As [`Service::start`]; missing when redis-server is not installed.
    pub fn start(self) -> Result<RedisServer, ServiceError> {
        let port = try_free_port()?;
        let dir = self.setup.dir("redis", port)?;
        let data = dir.join("data");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--maxmemory-policy", "noeviction"])
            .args(if self.persistent {
                &["--appendonly", "yes", "--appendfsync", "always"][..]
            } else {
                &["--appendonly", "no"][..]
            })
            .arg("--dir")
            .arg(&data);
        if self.cluster {
            let bus = try_free_port()?.to_string();
            command.args(["--cluster-enabled", "yes", "--cluster-port", &bus]);
            command.args(["--cluster-config-file", "nodes.conf"]);
            command.args(["--cluster-node-timeout", "5000"]);
        }
        let service = self
            .setup
            .start("redis-server", command, (port, dir, "redis.log"), |s| {
                s.with_data(data).with_install_hint(INSTALL)
            })?;
        Ok(RedisServer { service })
    }
}

/// A private redis-server on a free loopback port (by default without persistence),
/// stopped (SIGKILL) and its folder deleted on drop. It derefs to its [`Service`]: `stop`,
/// `restart` (same port; without persistence every key is gone), `signal("STOP")`, `addr`…
#[derive(Debug)]
pub struct RedisServer {
    service: Service,
}

impl RedisServer {
    /// Whether redis-server is installed; otherwise `false` after a loud `SKIPPED:` line
    /// (see [`have_program`]).
    ///
    /// # Panics
    ///
    /// When it is not installed under `LEASING_REQUIRE_SERVICES=1`.
    #[must_use]
    pub fn installed() -> bool {
        have_program("redis-server", INSTALL)
    }

    /// One without persistence, with more redis-server arguments.
    ///
    /// # Errors
    ///
    /// As [`RedisServerBuilder::start`].
    pub fn start_with(args: &[&str]) -> Result<Self, ServiceError> {
        Self::builder().args(args.iter().copied()).start()
    }

    /// `redis://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://{}", self.service.addr())
    }
}

wraps_service!(RedisServer, RedisServerBuilder);

/// Forms a cluster of masters without replicas from fresh cluster nodes
/// ([`RedisServerBuilder::cluster_node`]; the slots split evenly, `redis-cli --cluster
/// create`, as scripts/redis-up.sh does) and waits (up to 30 s) until every node sees it
/// whole.
///
/// # Errors
///
/// When redis-cli is missing or fails, or the cluster is not whole in time.
pub fn form_cluster(nodes: &[SocketAddr]) -> Result<(), ServiceError> {
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(ToString::to_string))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ServiceError::missing(format!("cannot run redis-cli: {e}; {INSTALL}")))?;
    if !out.status.success() {
        return Err(ServiceError::failed(format!(
            "redis-cli --cluster create failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let started = Instant::now();
    for &n in nodes {
        while !cluster_state_ok(n) {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(ServiceError::failed(format!(
                    "cluster node {n} not ok after 30 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn cluster_state_ok(addr: SocketAddr) -> bool {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(["cluster", "info"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            let info = String::from_utf8_lossy(&o.stdout);
            info.contains("cluster_state:ok") && info.contains("cluster_slots_assigned:16384")
        })
}
