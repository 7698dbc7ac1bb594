//! The servers integration tests and the chaos runner talk to: where the shared ones are
//! ([`service_env`], SKIPPED lines, `LEASING_REQUIRE_SERVICES=1`), and private ones a test
//! owns and so may stop, pause and restart ([`RedisServer`], [`AzuriteServer`],
//! [`CosmosEmulator`]), on free loopback ports.
//!
//! Every private server is a [`Service`]: a process spawned with its output in a log file,
//! waited for until its port accepts a connection (up to `LEASING_SERVICE_START_TIMEOUT_SECS`,
//! 180 s by default, since a machine kept busy by other builds is slow; at once when the
//! process exits), killed on drop. A start that fails says what it waited for and shows
//! the end of the server's log.
//!
//! ```no_run
//! use leasing_testkit::services::{skip_if_missing, RedisServer};
//! // SKIPPED when redis-server is not installed (a failure under LEASING_REQUIRE_SERVICES=1).
//! let Some(mut server) = skip_if_missing(RedisServer::start()) else { return };
//! let url = server.url();
//! server.restart().expect("restart"); // same port, no data (no persistence)
//! # drop(url);
//! ```

#[macro_use]
mod fixture;

mod azurite;
mod cosmos;
mod env;
mod error;
mod process;
mod redis;

pub use azurite::{AzuriteServer, AzuriteServerBuilder};
pub use cosmos::{CosmosEmulator, CosmosEmulatorBuilder, COSMOS_EMULATOR_KEY};
pub use env::{have_program, required, service_env, skip_if_missing};
pub use error::ServiceError;
pub use process::{start_timeout, Service, START_TIMEOUT_VAR};
pub use redis::{form_cluster, RedisServer, RedisServerBuilder};

use std::path::PathBuf;

/// A loopback port nothing listens on right now (the OS picks it).
///
/// # Panics
///
/// When no socket can be bound on 127.0.0.1 at all.
#[must_use]
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("{e}"))
}

fn try_free_port() -> Result<u16, ServiceError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ServiceError::failed(format!("no free loopback port: {e}")))
}

/// The workspace root (where `scripts/*-up.sh` install things under `target/`).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[cfg(test)]
mod tests;
