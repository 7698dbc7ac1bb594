//! Shared helpers of the integration tests: service discovery, providers, a private
//! emulator fixture.
#![allow(dead_code, unreachable_pub, missing_docs)]

use leasing_cosmos::{CosmosLeaseProvider, CosmosLeaseProviderBuilder};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOW: &str =
    "start the emulator with scripts/cosmos-up.sh and source target/services/cosmos.env";

/// The value of `var`, or `None` after a loud SKIPPED line. Under
/// `LEASING_REQUIRE_SERVICES=1` a missing variable fails the test.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if required() => panic!("{var} is not set but LEASING_REQUIRE_SERVICES=1: {HOW}"),
        _ => {
            eprintln!("SKIPPED: {var} is not set; {HOW}");
            None
        }
    }
}

pub fn required() -> bool {
    std::env::var("LEASING_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The shared emulator's connection string, or `None` (SKIPPED).
pub fn connection_string() -> Option<String> {
    service_env("LEASING_COSMOS_CONNECTION_STRING")
}

pub fn unique(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::new_v4().simple())
}

/// A builder on the shared emulator with a database of its own for this test.
pub fn builder(cs: &str, database: &str) -> CosmosLeaseProviderBuilder {
    CosmosLeaseProvider::builder()
        .connection_string(cs)
        .database(database)
        .call_timeout(Duration::from_secs(10))
}

pub async fn provider(cs: &str, database: &str) -> CosmosLeaseProvider {
    builder(cs, database)
        .build()
        .await
        .expect("connect to the emulator")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A private patched emulator on a free port (in memory), killed on drop; `restart`
/// keeps the port and forgets every database, as a real outage with data loss would.
pub struct Emulator {
    pub port: u16,
    pub proxy: Option<leasing_testkit::proxy::FaultProxy>,
    args: Vec<String>,
    child: Option<Child>,
}

impl Emulator {
    /// `None` (SKIPPED) when the launcher settings are not in the environment.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// With extra launcher flags (`--multi-write`…).
    pub fn start_with(args: &[&str]) -> Option<Self> {
        service_env("LEASING_COSMOS_EMULATOR_LAUNCHER")?;
        let mut e = Self {
            port: free_port(),
            proxy: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        e.spawn();
        Some(e)
    }

    /// Behind a `FaultProxy`, which the emulator advertises as its endpoint.
    pub async fn start_with_proxy() -> Option<Self> {
        service_env("LEASING_COSMOS_EMULATOR_LAUNCHER")?;
        let port = free_port();
        let proxy = leasing_testkit::proxy::FaultProxy::start(([127, 0, 0, 1], port).into())
            .await
            .expect("proxy");
        let mut e = Self {
            port,
            args: vec!["--advertise-port".into(), proxy.addr().port().to_string()],
            proxy: Some(proxy),
            child: None,
        };
        e.spawn();
        Some(e)
    }

    fn spawn(&mut self) {
        let launcher = std::env::var("LEASING_COSMOS_EMULATOR_LAUNCHER").expect("launcher");
        let modules = std::env::var("LEASING_COSMOS_EMULATOR_MODULES").expect("modules");
        let child = Command::new("node")
            .arg(launcher)
            .arg(modules)
            .args([
                "--port",
                &self.port.to_string(),
                "--host",
                "127.0.0.1",
                "--no-ssl",
            ])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log_file(self.port))
            .spawn()
            .expect("spawn node");
        self.child = Some(child);
        // Generous: a machine kept busy by other builds can take far longer than an idle
        // one; an emulator that exits fails at once.
        let deadline = Instant::now() + Duration::from_secs(180);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the private emulator on port {} did not start ({exited:?}); its log: {}",
                self.port,
                log_path(self.port).display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`…) to the emulator process.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn connection_string(&self) -> String {
        format!("AccountEndpoint={};AccountKey={};", self.endpoint(), KEY)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The private emulator's log (its stderr), under the system temp dir.
fn log_path(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("leasing-cosmos-emulator-{port}.log"))
}

fn log_file(port: u16) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(port))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// The emulator's well-known key (public; the local emulator accepts any key).
pub const KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";
