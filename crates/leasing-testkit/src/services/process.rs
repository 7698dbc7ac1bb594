//! The core every private server shares: spawn, wait until its port answers, stop (on
//! drop too), restart on the same port.

use super::ServiceError;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that bounds how long a start may take, in whole seconds (default 180).
pub const START_TIMEOUT_VAR: &str = "LEASING_SERVICE_START_TIMEOUT_SECS";

/// Generous: a machine kept busy by other builds can take far longer than an idle one (a
/// fixed 10 s failed a loaded CI run).
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);

/// How much of a server's log a failed start shows.
const LOG_TAIL_LINES: usize = 40;

/// How long a stop waits for the port to close.
const STOP_BOUND: Duration = Duration::from_secs(10);

/// How long a start may wait for a server's port: [`START_TIMEOUT_VAR`] or 180 s.
///
/// # Errors
///
/// When the variable is set to anything but a positive whole number of seconds.
pub fn start_timeout() -> Result<Duration, ServiceError> {
    parse_start_timeout(std::env::var(START_TIMEOUT_VAR).ok().as_deref())
}

pub(super) fn parse_start_timeout(value: Option<&str>) -> Result<Duration, ServiceError> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_START_TIMEOUT),
        Some(v) => match v.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(ServiceError::failed(format!(
                "{START_TIMEOUT_VAR}={v:?} is not a positive whole number of seconds"
            ))),
        },
    }
}

/// A server process on a loopback address: spawned with its stdout and stderr appended to
/// a log file, waited for until its address accepts a TCP connection, killed on drop.
///
/// A start fails at once when the process exits, or when nothing answers within the bound
/// ([`start_timeout`], or [`Service::with_start_timeout`]); the error says what was run and
/// waited for and shows the last 40 lines of the log. [`Service::restart`] starts it again
/// on the same address.
#[derive(Debug)]
pub struct Service {
    name: String,
    command: Command,
    addr: SocketAddr,
    log: PathBuf,
    dir: Option<PathBuf>,
    data: Option<PathBuf>,
    grace: Option<Duration>,
    start_timeout: Option<Duration>,
    install_hint: String,
    child: Option<Child>,
}

impl Service {
    /// A server `name` (as messages call it) run by `command`, listening on `addr`, its
    /// output appended to `log`. Not started yet: see [`Service::start`].
    pub fn new(
        name: impl Into<String>,
        command: Command,
        addr: SocketAddr,
        log: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.into(),
            command,
            addr,
            log: log.into(),
            dir: None,
            data: None,
            grace: None,
            start_timeout: None,
            install_hint: String::new(),
            child: None,
        }
    }

    /// A folder the server owns: deleted when it is dropped.
    #[must_use]
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Where it keeps its data: created before each start, emptied by
    /// [`Service::restart_wiped`].
    #[must_use]
    pub fn with_data(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data = Some(dir.into());
        self
    }

    /// Stop it with SIGTERM first (a clean shutdown, e.g. to save its data), and SIGKILL
    /// only when it is still running after `grace`.
    #[must_use]
    pub fn with_graceful_stop(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Bound each start by `bound` instead of [`start_timeout`].
    #[must_use]
    pub fn with_start_timeout(mut self, bound: Duration) -> Self {
        self.start_timeout = Some(bound);
        self
    }

    /// How to install the program, said when it cannot be found.
    #[must_use]
    pub fn with_install_hint(mut self, hint: impl Into<String>) -> Self {
        self.install_hint = hint.into();
        self
    }

    /// Leave its folder when dropped.
    pub(super) fn keep_dir(&mut self) {
        self.dir = None;
    }

    /// Where it listens.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its log (stdout and stderr, appended across restarts).
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts it (stopping it first if it runs) and waits until its address accepts a
    /// connection.
    ///
    /// # Errors
    ///
    /// [`ServiceError::is_missing`] when its program cannot be found; otherwise when its
    /// address is taken, the process exits, or nothing answers within the bound.
    pub fn start(&mut self) -> Result<(), ServiceError> {
        self.stop();
        let bound = match self.start_timeout {
            Some(bound) => bound,
            None => start_timeout()?,
        };
        if connects(self.addr) {
            return Err(ServiceError::failed(format!(
                "{} cannot start on {}: something else already listens there",
                self.name, self.addr
            )));
        }
        if let Some(data) = &self.data {
            std::fs::create_dir_all(data)
                .map_err(|e| ServiceError::failed(format!("{}: {e}", data.display())))?;
        }
        let (out, err) = log_file(&self.log)?;
        let child = self
            .command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                let what = format!(
                    "cannot run {} ({:?}): {e}",
                    self.name,
                    self.command.get_program()
                );
                match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        ServiceError::missing(format!("{what}; {}", self.install_hint))
                    }
                    _ => ServiceError::failed(what),
                }
            })?;
        self.child = Some(child);
        self.wait_started(bound)
    }

    fn wait_started(&mut self, bound: Duration) -> Result<(), ServiceError> {
        let started = Instant::now();
        let why = loop {
            let up = connects(self.addr);
            if let Some(status) = self.exited() {
                break format!("it exited ({status})");
            }
            if up {
                return Ok(());
            }
            if started.elapsed() >= bound {
                break format!(
                    "nothing answered within {bound:?} (the bound is {START_TIMEOUT_VAR})"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stop();
        Err(ServiceError::failed(format!(
            "{} did not start: waited for {} to accept a TCP connection, and {why}.\n  ran: {:?}\n{}",
            self.name,
            self.addr,
            self.command,
            log_tail(&self.log, LOG_TAIL_LINES)
        )))
    }

    /// Stops it (SIGKILL, or SIGTERM first with [`Service::with_graceful_stop`]) and waits
    /// (up to 10 s) until its port is closed. Nothing happens when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(grace) = self.grace {
            terminate(&child);
            let started = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && started.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let started = Instant::now();
        while connects(self.addr) && started.elapsed() < STOP_BOUND {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it and starts it again on the same address, with whatever data it kept.
    ///
    /// # Errors
    ///
    /// As [`Service::start`].
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.start()
    }

    /// Stops it, deletes its data (see [`Service::with_data`]) and starts it again: a
    /// restart without persistence.
    ///
    /// # Errors
    ///
    /// As [`Service::start`].
    pub fn restart_wiped(&mut self) -> Result<(), ServiceError> {
        self.stop();
        if let Some(data) = &self.data {
            let _ = std::fs::remove_dir_all(data);
        }
        self.start()
    }

    /// How it ended, when it is not running although it was started and not stopped (it
    /// crashed, or was killed by someone else).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    /// Sends the signal `name` (`STOP`, `CONT`, `SIGTERM`…) to the server process.
    ///
    /// # Panics
    ///
    /// When it is not running, `name` is no signal, or the signal cannot be sent.
    #[cfg(unix)]
    pub fn signal(&self, name: &str) {
        let signal: nix::sys::signal::Signal = format!("SIG{}", name.trim_start_matches("SIG"))
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not a signal: {e}"));
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        let pid = pid_of(child);
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill -{name} {pid}: {e}"));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(unix)]
fn pid_of(child: &Child) -> nix::unistd::Pid {
    // A pid always fits: the kernel's are below 2^22.
    nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

#[cfg(unix)]
fn terminate(child: &Child) {
    let _ = nix::sys::signal::kill(pid_of(child), nix::sys::signal::Signal::SIGTERM);
}

#[cfg(not(unix))]
fn terminate(_: &Child) {}

fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// The log opened for appending, once for stdout and once for stderr.
fn log_file(log: &Path) -> Result<(Stdio, Stdio), ServiceError> {
    let cannot = |e: std::io::Error| ServiceError::failed(format!("log {}: {e}", log.display()));
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(cannot)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(cannot)?;
    let err = out.try_clone().map_err(cannot)?;
    Ok((out.into(), err.into()))
}

/// The last `n` lines of `log`, introduced by where they come from.
pub(super) fn log_tail(log: &Path, n: usize) -> String {
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(n)..];
            if tail.is_empty() {
                format!("  its log {} is empty", log.display())
            } else {
                format!(
                    "  the last {} lines of its log {}:\n    {}",
                    tail.len(),
                    log.display(),
                    tail.join("\n    ")
                )
            }
        }
        Err(e) => format!("  no log at {}: {e}", log.display()),
    }
}
