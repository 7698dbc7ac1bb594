//! A private Azurite blob service.

use super::fixture::Setup;
use super::{try_free_port, workspace_root, Service, ServiceError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How to start an [`AzuriteServer`]: in memory and in the system temp folder unless told
/// otherwise.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct AzuriteServerBuilder {
    setup: Setup,
    bin: Option<PathBuf>,
    persistent: bool,
}

impl AzuriteServerBuilder {
    setup_setters!();

    /// The `azurite-blob` to run; by default `LEASING_AZURITE_BIN`, else where
    /// scripts/azurite-up.sh installs it (`target/azurite/node_modules/.bin/azurite-blob`).
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// Its data in its folder (`--location`), so a [`Service::restart`] keeps the leases;
    /// stopped with SIGTERM first (Azurite saves its database on a clean shutdown, a
    /// SIGKILL can lose its last seconds of writes).
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Starts it (plain HTTP) on a free loopback port.
    ///
    /// # Errors
    ///
    /// As [`Service::start`]; missing when Azurite is not installed.
    pub fn start(self) -> Result<AzuriteServer, ServiceError> {
        let bin = self.bin.unwrap_or_else(|| {
            std::env::var_os("LEASING_AZURITE_BIN")
                .filter(|v| !v.is_empty())
                .map_or_else(
                    || workspace_root().join("target/azurite/node_modules/.bin/azurite-blob"),
                    PathBuf::from,
                )
        });
        if !bin.exists() {
            return Err(ServiceError::missing(format!(
                "Azurite is not installed at {}: scripts/azurite-up.sh installs it (LEASING_AZURITE_BIN says where)",
                bin.display()
            )));
        }
        let port = try_free_port()?;
        let dir = self.setup.dir("azurite", port)?;
        let data = dir.join("data");
        let mut command = Command::new(&bin);
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--disableTelemetry", "--silent"])
            .current_dir(&dir);
        if self.persistent {
            command.arg("--location").arg(&data);
        } else {
            command.arg("--inMemoryPersistence");
        }
        let persistent = self.persistent;
        let service = self
            .setup
            .start("Azurite", command, (port, dir, "azurite.log"), |s| {
                if persistent {
                    s.with_data(data).with_graceful_stop(Duration::from_secs(5))
                } else {
                    s
                }
            })?;
        Ok(AzuriteServer { service })
    }
}

/// A private Azurite blob service on a free loopback port (by default in memory), stopped
/// and its folder deleted on drop. It derefs to its [`Service`]: `stop`, `restart` (same
/// port; in memory, every container is gone), `addr`…
#[derive(Debug)]
pub struct AzuriteServer {
    service: Service,
}

impl AzuriteServer {
    /// The blob endpoint of the development account: `http://127.0.0.1:PORT/devstoreaccount1`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/devstoreaccount1", self.service.addr())
    }

    /// The connection string of the development account on an Azurite reached at `addr`
    /// (its own, [`Service::addr`], or a proxy's).
    #[must_use]
    pub fn connection_string_for(addr: SocketAddr) -> String {
        format!("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://{addr}")
    }
}

wraps_service!(AzuriteServer, AzuriteServerBuilder);
