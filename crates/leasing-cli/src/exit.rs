//! Exit codes and the one error type of the command.

use distributed_leasing::{ErrorKind, LeaseError};
use std::fmt;

/// `status`: the name is free; `health`: the backend is not healthy.
pub(crate) const NEGATIVE: u8 = 1;
/// Usage or configuration: a bad flag, a missing or malformed backend, bad credentials.
pub(crate) const USAGE: u8 = 2;
/// The backend could not be reached or failed (sysexits' EX_UNAVAILABLE).
pub(crate) const UNAVAILABLE: u8 = 69;
/// `exec`: the lease was not acquired within `--wait`, the name being held (sysexits'
/// EX_TEMPFAIL).
pub(crate) const NOT_ACQUIRED: u8 = 75;
/// `exec`: the lease was lost (or could not be renewed in time) and the command was stopped.
pub(crate) const LOST: u8 = 76;
/// The command could not be started (permission, not executable).
pub(crate) const CANNOT_RUN: u8 = 126;
/// The command was not found.
pub(crate) const NOT_FOUND: u8 = 127;
/// `exec`: interrupted (SIGINT or SIGTERM) while waiting for the lease.
pub(crate) const INTERRUPTED: u8 = 130;

/// The exit codes, as `--help` shows them.
pub(crate) const HELP: &str = "\
Exit codes:
  0    success (exec: the command's own code, passed through; signal deaths as 128+N)
  1    status: the name is free; health: the backend is not healthy
  2    usage or configuration (bad flag, missing or malformed backend, bad credentials)
  69   the backend is unavailable (exec: also when it failed every attempt within --wait)
  75   exec: the lease was not acquired within --wait (the name was held)
  76   exec: the lease was lost, or not renewed in time, and the command was stopped
  126  exec: the command could not be run;  127: the command was not found
  130  exec: interrupted (SIGINT/SIGTERM) while waiting for the lease";

/// What went wrong, and the exit code that says so.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// A backend error, its exit code by kind. `doing` says what was tried.
    pub(crate) fn backend(doing: &str, e: &LeaseError) -> Self {
        let code = match e.kind() {
            ErrorKind::InvalidArgument | ErrorKind::Configuration | ErrorKind::Unauthorized => {
                USAGE
            }
            _ => UNAVAILABLE,
        };
        // The library's messages never carry secrets (connection strings, keys, tokens).
        Self::new(code, format!("{doing}: {e}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An exit code for a process status: its code, or 128 + the signal that killed it.
pub(crate) fn of_status(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + (s & 0x7f)).unwrap_or(255),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn statuses_map_to_codes() {
        assert_eq!(of_status(std::process::ExitStatus::from_raw(0)), 0);
        assert_eq!(of_status(std::process::ExitStatus::from_raw(3 << 8)), 3);
        // Killed by SIGKILL (9) and by SIGTERM (15).
        assert_eq!(of_status(std::process::ExitStatus::from_raw(9)), 137);
        assert_eq!(of_status(std::process::ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn backend_errors_map_by_kind() {
        let e = LeaseError::configuration("url", "bad");
        assert_eq!(CliError::backend("connecting", &e).code, USAGE);
        let e = LeaseError::unavailable("down");
        let c = CliError::backend("connecting", &e);
        assert_eq!(c.code, UNAVAILABLE);
        assert!(c.to_string().starts_with("connecting: "), "{c}");
        assert_eq!(CliError::usage("x").code, USAGE);
    }
}
