//! Private servers the runner owns (and so may kill and restart): redis-server, Azurite and
//! the patched Cosmos emulator on free loopback ports, never the shared ones the
//! `scripts/*-up.sh` scripts start.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server the runner can stop and start again on the same address.
pub(crate) trait Server: Send {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Stops it at once (SIGKILL: no shutdown save).
    fn kill(&mut self);
    /// Starts it again; with `wipe`, everything it persisted is deleted first (a restart
    /// without persistence).
    fn start(&mut self, wipe: bool) -> Result<(), String>;
    /// How it ended, if it is not running although the runner did not stop it (it
    /// crashed, or a signal meant for someone else reached it).
    fn exited(&mut self) -> Option<String>;
}

fn exited(child: &mut Option<Child>) -> Option<String> {
    match child.as_mut().map(Child::try_wait) {
        Some(Ok(Some(status))) => Some(status.to_string()),
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_listening(addr: SocketAddr, up: bool) -> Result<(), String> {
    let started = Instant::now();
    while TcpStream::connect(addr).is_ok() != up {
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "server on {addr} did not {} in 10 s",
                if up { "start" } else { "stop" }
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// How long a server may take to start listening: generous, because a machine kept busy
/// by other builds can take far longer than an idle one (a fixed 10 s failed a CI run).
const START_BOUND: Duration = Duration::from_secs(180);

/// Waits until the server just spawned as `child` listens on `addr`. Fails at once if it
/// exits, or after [`START_BOUND`]; either way with the end of its log.
fn wait_started(addr: SocketAddr, child: &mut Option<Child>, log: &Path) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        let why = match exited(child) {
            Some(status) => Some(format!("exited ({status}) before listening")),
            None if started.elapsed() > START_BOUND => {
                Some(format!("did not listen within {} s", START_BOUND.as_secs()))
            }
            None => None,
        };
        if let Some(why) = why {
            return Err(format!("server on {addr} {why}{}", log_tail(log)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of a server's log, to say why it did not come up.
fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n  ");
            format!("; the end of {}:\n  {tail}", log.display())
        }
        Err(e) => format!("; no log at {}: {e}", log.display()),
    }
}

/// Opens (appending) the log file a server writes its output to.
fn log_file(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// A private redis-server with an append-only file fsynced on every write, so a kill loses
/// nothing unless the restart wipes it.
#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    dir: PathBuf,
    /// More arguments (a cluster node's).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Where the server writes its output (kept across restarts with data).
    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    pub(crate) fn start_new(dir: PathBuf) -> Result<Self, String> {
        Self::start_with(dir, Vec::new())
    }

    /// A node of a Redis Cluster (not yet joined to one: see [`form_cluster`]), its
    /// cluster bus on another free port, its cluster state (`nodes.conf`) in its folder,
    /// so a restart with its data rejoins the cluster.
    pub(crate) fn start_cluster_node(dir: PathBuf) -> Result<Self, String> {
        let bus = free_port()?.to_string();
        let extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--cluster-port",
            &bus,
        ];
        Self::start_with(dir, extra.iter().map(|a| (*a).to_owned()).collect())
    }

    fn start_with(dir: PathBuf, extra: Vec<String>) -> Result<Self, String> {
        let port = free_port()?;
        let dir = dir.join(format!("redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut s = Self {
            port,
            dir,
            extra,
            child: None,
        };
        s.start(false)?;
        Ok(s)
    }
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

/// Forms a cluster of masters without replicas from fresh cluster nodes (the slots split
/// evenly, `redis-cli --cluster create`, as scripts/redis-up.sh does) and waits until every
/// node sees it whole.
pub(crate) fn form_cluster(nodes: &[SocketAddr]) -> Result<(), String> {
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(ToString::to_string))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run redis-cli (scripts/redis-up.sh installs it): {e}"))?;
    if !created.success() {
        return Err(format!("redis-cli --cluster create failed: {created}"));
    }
    let started = Instant::now();
    for &n in nodes {
        while !cluster_state_ok(n) {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("cluster node {n} not ok after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

impl Server for RedisServer {
    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn exited(&mut self) -> Option<String> {
        exited(&mut self.child)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = wait_listening(self.addr(), false);
    }

    fn start(&mut self, wipe: bool) -> Result<(), String> {
        self.kill();
        if wipe {
            for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--maxmemory-policy", "noeviction"])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log_file(&self.log()))
            .stderr(log_file(&self.log()))
            .spawn()
            .map_err(|e| {
                format!("cannot run redis-server (scripts/redis-up.sh installs it): {e}")
            })?;
        self.child = Some(child);
        let log = self.log();
        wait_started(self.addr(), &mut self.child, &log)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Azurite blob service keeping its data in a folder (`--location`), so a
/// restart keeps leases unless it wipes the folder. Stopped with SIGTERM (Azurite saves
/// its database on a clean shutdown; a SIGKILL can lose its last seconds of writes, which
/// would be a restart without persistence).
#[derive(Debug)]
pub(crate) struct AzuriteServer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl AzuriteServer {
    /// `azurite-blob` from `LEASING_AZURITE_BIN` or where scripts/azurite-up.sh installs it.
    fn bin() -> Result<PathBuf, String> {
        let bin = std::env::var_os("LEASING_AZURITE_BIN").map_or_else(
            || {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/azurite/node_modules/.bin/azurite-blob")
            },
            PathBuf::from,
        );
        if bin.exists() {
            Ok(bin)
        } else {
            Err(format!(
                "{} not found: run scripts/azurite-up.sh (it installs Azurite)",
                bin.display()
            ))
        }
    }

    pub(crate) fn start_new(dir: PathBuf) -> Result<Self, String> {
        let port = free_port()?;
        let dir = dir.join(format!("azurite-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut s = Self {
            port,
            dir,
            bin: Self::bin()?,
            child: None,
        };
        s.start(false)?;
        Ok(s)
    }

    /// The connection string of the development account on this server.
    pub(crate) fn connection_string(addr: SocketAddr) -> String {
        format!("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://{addr}")
    }
}

impl Server for AzuriteServer {
    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn exited(&mut self) -> Option<String> {
        exited(&mut self.child)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = i32::try_from(c.id()).ok().map(nix::unistd::Pid::from_raw) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            let started = Instant::now();
            while matches!(c.try_wait(), Ok(None)) && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = wait_listening(self.addr(), false);
    }

    fn start(&mut self, wipe: bool) -> Result<(), String> {
        self.kill();
        let data = self.dir.join("data");
        if wipe {
            let _ = std::fs::remove_dir_all(&data);
        }
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let child = Command::new(&self.bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
            ])
            .arg("--location")
            .arg(&data)
            .args(["--disableTelemetry", "--silent"])
            .current_dir(&self.dir)
            .stdout(log_file(&self.dir.join("azurite.log")))
            .stderr(log_file(&self.dir.join("azurite.log")))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let log = self.dir.join("azurite.log");
        wait_started(self.addr(), &mut self.child, &log)
    }
}

impl Drop for AzuriteServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private patched Cosmos DB emulator (`@vercel/cosmosdb-server` through
/// `scripts/cosmos-emulator/launch.js`, installed by scripts/cosmos-up.sh), plain HTTP on
/// loopback, advertising the port of the `FaultProxy` in front of it so that the SDK keeps
/// talking through the proxy after reading the account's metadata. It keeps everything in
/// memory: any restart is a restart without its data.
#[derive(Debug)]
pub(crate) struct CosmosServer {
    port: u16,
    advertise: u16,
    dir: PathBuf,
    launcher: PathBuf,
    modules: PathBuf,
    child: Option<Child>,
}

impl CosmosServer {
    /// The emulator's well-known key (public; it accepts any key).
    const KEY: &'static str =
        "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

    /// Starts one on `port`, advertising `advertise` (the proxy's port) as its endpoint.
    /// The launcher and the npm package come from `LEASING_COSMOS_EMULATOR_LAUNCHER` and
    /// `LEASING_COSMOS_EMULATOR_MODULES` or where scripts/cosmos-up.sh puts them.
    pub(crate) fn start_new(dir: PathBuf, port: u16, advertise: u16) -> Result<Self, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let from_env = |var: &str, default: PathBuf| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or(default, PathBuf::from)
        };
        let launcher = from_env(
            "LEASING_COSMOS_EMULATOR_LAUNCHER",
            root.join("scripts/cosmos-emulator/launch.js"),
        );
        let modules = from_env(
            "LEASING_COSMOS_EMULATOR_MODULES",
            root.join("target/cosmos-emulator/node_modules"),
        );
        if !modules.join("@vercel/cosmosdb-server").exists() {
            return Err(format!(
                "{} has no @vercel/cosmosdb-server: run scripts/cosmos-up.sh (it installs the emulator)",
                modules.display()
            ));
        }
        let dir = dir.join(format!("cosmos-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut s = Self {
            port,
            advertise,
            dir,
            launcher,
            modules,
            child: None,
        };
        s.start(true)?;
        Ok(s)
    }

    /// The connection string of the emulator's account at `addr`.
    pub(crate) fn connection_string(addr: SocketAddr) -> String {
        format!("AccountEndpoint=http://{addr}/;AccountKey={};", Self::KEY)
    }
}

impl Server for CosmosServer {
    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn exited(&mut self) -> Option<String> {
        exited(&mut self.child)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = wait_listening(self.addr(), false);
    }

    /// In memory only: every start is without the data (`wipe` or not).
    fn start(&mut self, _wipe: bool) -> Result<(), String> {
        self.kill();
        let log = log_file(&self.dir.join("emulator.log"));
        let child = Command::new("node")
            .arg(&self.launcher)
            .arg(&self.modules)
            .args(["--port", &self.port.to_string(), "--host", "127.0.0.1"])
            .args(["--no-ssl", "--advertise-port", &self.advertise.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run node (scripts/cosmos-up.sh needs it): {e}"))?;
        self.child = Some(child);
        let log = self.dir.join("emulator.log");
        wait_started(self.addr(), &mut self.child, &log)
    }
}

impl Drop for CosmosServer {
    fn drop(&mut self) {
        self.kill();
    }
}
