//! The servers the runner owns (and so may kill and restart): private redis-server, Azurite
//! and Cosmos emulator processes ([`leasing_testkit::services`]) on free loopback ports,
//! never the shared ones the `scripts/*-up.sh` scripts start.

use leasing_testkit::services::Service;
use std::net::SocketAddr;

/// A server the runner can stop and start again on the same address.
pub(crate) trait Server: Send {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Stops it at once (SIGKILL: no shutdown save; Azurite: SIGTERM first, to save its
    /// database).
    fn kill(&mut self);
    /// Starts it again; with `wipe`, everything it persisted is deleted first (a restart
    /// without persistence).
    fn start(&mut self, wipe: bool) -> Result<(), String>;
    /// How it ended, if it is not running although the runner did not stop it (it
    /// crashed, or a signal meant for someone else reached it).
    fn exited(&mut self) -> Option<String>;
}

impl Server for Service {
    fn addr(&self) -> SocketAddr {
        Service::addr(self)
    }

    fn kill(&mut self) {
        self.stop();
    }

    fn start(&mut self, wipe: bool) -> Result<(), String> {
        let started = if wipe {
            self.restart_wiped()
        } else {
            self.restart()
        };
        started.map_err(String::from)
    }

    fn exited(&mut self) -> Option<String> {
        Service::exited(self)
    }
}
