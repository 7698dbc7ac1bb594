//! A private patched Cosmos DB emulator (`@vercel/cosmosdb-server` through
//! `scripts/cosmos-emulator/launch.js`, both installed by scripts/cosmos-up.sh).

use super::fixture::Setup;
use super::{try_free_port, workspace_root, Service, ServiceError};
use crate::proxy::FaultProxy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

/// The emulator's well-known account key (public; the local emulator accepts any key).
pub const COSMOS_EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

/// How to start a [`CosmosEmulator`]: on a free port, advertising itself, in the system
/// temp folder unless told otherwise.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CosmosEmulatorBuilder {
    setup: Setup,
    launcher: Option<PathBuf>,
    modules: Option<PathBuf>,
    port: Option<u16>,
    advertise_port: Option<u16>,
}

impl CosmosEmulatorBuilder {
    setup_setters!();

    /// The launcher script node runs and the `node_modules` that holds
    /// `@vercel/cosmosdb-server`; by default `LEASING_COSMOS_EMULATOR_LAUNCHER` and
    /// `LEASING_COSMOS_EMULATOR_MODULES`, else where scripts/cosmos-up.sh puts them
    /// (`scripts/cosmos-emulator/launch.js`, `target/cosmos-emulator/node_modules`).
    pub fn installed_at(
        mut self,
        launcher: impl Into<PathBuf>,
        modules: impl Into<PathBuf>,
    ) -> Self {
        self.launcher = Some(launcher.into());
        self.modules = Some(modules.into());
        self
    }

    /// Advertise `port` (a proxy's in front of it) as its endpoint in the account's
    /// metadata, so that the SDK keeps talking through the proxy after its first call.
    pub fn advertise_port(mut self, port: u16) -> Self {
        self.advertise_port = Some(port);
        self
    }

    /// Starts it (plain HTTP, in memory: any restart loses every database).
    ///
    /// # Errors
    ///
    /// As [`Service::start`]; missing when node or the emulator package is not installed.
    pub fn start(self) -> Result<CosmosEmulator, ServiceError> {
        let from_env = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or_else(|| workspace_root().join(default), PathBuf::from)
        };
        let launcher = self.launcher.unwrap_or_else(|| {
            from_env(
                "LEASING_COSMOS_EMULATOR_LAUNCHER",
                "scripts/cosmos-emulator/launch.js",
            )
        });
        let modules = self.modules.unwrap_or_else(|| {
            from_env(
                "LEASING_COSMOS_EMULATOR_MODULES",
                "target/cosmos-emulator/node_modules",
            )
        });
        if !modules.join("@vercel/cosmosdb-server").exists() {
            return Err(ServiceError::missing(format!(
                "the Cosmos emulator is not installed: {} has no @vercel/cosmosdb-server; scripts/cosmos-up.sh installs it",
                modules.display()
            )));
        }
        let port = match self.port {
            Some(port) => port,
            None => try_free_port()?,
        };
        let dir = self.setup.dir("cosmos", port)?;
        let mut command = Command::new("node");
        command.arg(&launcher).arg(&modules).args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--no-ssl",
        ]);
        if let Some(advertise) = self.advertise_port {
            command.args(["--advertise-port", &advertise.to_string()]);
        }
        let service = self.setup.start(
            "the Cosmos emulator",
            command,
            (port, dir, "emulator.log"),
            |s| s.with_install_hint("scripts/cosmos-up.sh needs node"),
        )?;
        Ok(CosmosEmulator { service })
    }

    /// Starts it behind a [`FaultProxy`] it advertises as its endpoint (the proxy first,
    /// on a free port, then the emulator on another); clients reach it through
    /// [`CosmosEmulator::connection_string_for`] the proxy's address.
    ///
    /// # Errors
    ///
    /// As [`CosmosEmulatorBuilder::start`], or when the proxy cannot start.
    pub async fn start_behind_proxy(self) -> Result<(CosmosEmulator, FaultProxy), ServiceError> {
        let port = try_free_port()?;
        let proxy = FaultProxy::start(([127, 0, 0, 1], port).into())
            .await
            .map_err(|e| ServiceError::failed(format!("proxy: {e}")))?;
        let builder = Self {
            port: Some(port),
            ..self.advertise_port(proxy.addr().port())
        };
        let emulator = tokio::task::spawn_blocking(move || builder.start())
            .await
            .map_err(|e| ServiceError::failed(format!("starting the emulator: {e}")))??;
        Ok((emulator, proxy))
    }
}

/// A private patched Cosmos DB emulator on a loopback port, killed and its folder deleted
/// on drop. It derefs to its [`Service`]: `stop`, `restart` (same port, every database
/// gone), `signal("STOP")`, `addr`…
#[derive(Debug)]
pub struct CosmosEmulator {
    service: Service,
}

impl CosmosEmulator {
    /// The connection string of its account.
    #[must_use]
    pub fn connection_string(&self) -> String {
        Self::connection_string_for(self.service.addr())
    }

    /// The connection string of the emulator's account reached at `addr` (a proxy's).
    #[must_use]
    pub fn connection_string_for(addr: SocketAddr) -> String {
        format!("AccountEndpoint=http://{addr}/;AccountKey={COSMOS_EMULATOR_KEY};")
    }
}

wraps_service!(CosmosEmulator, CosmosEmulatorBuilder);
