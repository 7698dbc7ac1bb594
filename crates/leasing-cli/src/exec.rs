//! `leasing exec`: acquire, run the command under the lease, stop it before the lease can
//! be anyone else's, release, and exit with the command's code.

use crate::exit::{self, CliError};
use crate::output::{human, rfc3339};
use crate::supervise::mono_ns;
use distributed_leasing::{
    environment_metadata, AcquireOptions, ErrorKind, Lease, LeaseEvent, LeaseManager, LeaseOptions,
    LeaseProvider, Metadata,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

/// `leasing exec` arguments.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  leasing exec nightly-report -- ./report.sh --full
  leasing exec --wait 5m --duration 60s --metadata owner=cron@$(hostname) db-migrate -- ./migrate up
  leasing exec --grace 20s --on-lost 'logger lease lost' billing -- ./bill.sh

The command runs in its own process group with LEASING_NAME, LEASING_LEASE_ID,
LEASING_FENCING_TOKEN (pass it to what you write to, so that it can refuse a stale holder)
and LEASING_DEADLINE (RFC 3339: when it is stopped unless the lease is renewed) in its
environment. If a renewal does not succeed in time, or the lease is lost, the group gets
SIGTERM at the safety deadline minus --grace and SIGKILL at the deadline itself, before
the backend can grant the name to anyone else; this holds even if leasing is killed or
stopped (a supervisor process enforces it). SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
SIGUSR2 are forwarded to the command; a second SIGINT kills its group.")]
pub(crate) struct ExecArgs {
    /// The lease name.
    name: String,
    /// Lease duration (renewed every third of it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long to wait for the lease: 0 tries once, `infinite` waits without limit.
    #[arg(long, default_value = "0s", value_parser = parse_wait)]
    wait: WaitFor,
    /// Metadata stored with the lease (repeatable): KEY=VALUE.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_kv)]
    metadata: Vec<(String, String)>,
    /// Time between SIGTERM and SIGKILL when the command must stop [default: the smaller
    /// of 5 s and half the slack of the duration].
    #[arg(long, value_parser = humantime::parse_duration)]
    grace: Option<Duration>,
    /// Shell command (`sh -c`) run once after the command was stopped because the lease
    /// was lost, with the same environment.
    #[arg(long = "on-lost", value_name = "CMD")]
    on_lost: Option<String>,
    /// The command and its arguments (run directly, no shell).
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// `--wait`: a duration, or no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WaitFor(Option<Duration>);

fn parse_wait(s: &str) -> Result<WaitFor, String> {
    if matches!(s, "infinite" | "forever" | "inf") {
        return Ok(WaitFor(None));
    }
    humantime::parse_duration(s)
        .map(|d| WaitFor(Some(d)))
        .map_err(|e| format!("{e} (a duration such as 30s or 5m, or `infinite`)"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

/// The threshold the command uses: the lease is trusted for 0.9 of its duration after a
/// successful renewal's send (the library's default).
const THRESHOLD: f64 = 0.9;

/// The timing of an `exec`: renewal interval, safety window and grace, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timing {
    pub(crate) interval: Duration,
    pub(crate) window: Duration,
    pub(crate) grace: Duration,
}

/// Renewed every third of the duration; trusted for 0.9 of it after a renewal; the grace
/// must fit in the slack between the two, or a renewal that is merely slow would stop the
/// command.
pub(crate) fn timing(duration: Duration, grace: Option<Duration>) -> Result<Timing, CliError> {
    let window = distributed_leasing::options::safety_window(duration, THRESHOLD);
    let interval = duration / 3;
    if interval.is_zero() || window <= interval {
        return Err(CliError::usage(format!(
            "--duration {} is too short to renew",
            humantime::format_duration(duration)
        )));
    }
    let slack = window - interval;
    let grace = grace.unwrap_or_else(|| (slack / 2).min(Duration::from_secs(5)));
    if grace >= slack {
        return Err(CliError::usage(format!(
            "--grace {g} does not fit a {d} lease: it is renewed every {i} (a third) and \
             trusted for {w} (× {THRESHOLD}) after a renewal, so a failing renewal has \
             {w} − {i} = {s} before the command must be stopped; the grace must be shorter \
             than {s} (use a longer --duration or a shorter --grace)",
            g = humantime::format_duration(grace),
            d = humantime::format_duration(duration),
            i = humantime::format_duration(interval),
            w = humantime::format_duration(window),
            s = humantime::format_duration(slack),
        )));
    }
    Ok(Timing {
        interval,
        window,
        grace,
    })
}

/// The signals forwarded to the command.
const FORWARDED: [(SignalKind, Signal); 6] = [
    (SignalKind::interrupt(), Signal::SIGINT),
    (SignalKind::terminate(), Signal::SIGTERM),
    (SignalKind::hangup(), Signal::SIGHUP),
    (SignalKind::quit(), Signal::SIGQUIT),
    (SignalKind::user_defined1(), Signal::SIGUSR1),
    (SignalKind::user_defined2(), Signal::SIGUSR2),
];

pub(crate) async fn run(
    args: ExecArgs,
    provider: Arc<dyn LeaseProvider>,
    verbose: bool,
) -> Result<u8, CliError> {
    let t = timing(args.duration, args.grace)?;
    let mut metadata: Metadata = environment_metadata(None);
    let host = metadata.get("host").cloned().unwrap_or_else(|| "?".into());
    metadata.insert(
        "owner".into(),
        format!("leasing[{}]@{host}", std::process::id()),
    );
    if let Some(p) = args.command.first() {
        let p = std::path::Path::new(p);
        let program = p.file_name().unwrap_or(p.as_os_str()).to_string_lossy();
        metadata.insert("command".into(), program.into_owned());
    }
    for (k, v) in &args.metadata {
        metadata.insert(k.clone(), v.clone());
    }
    let options = LeaseOptions::default()
        .with_default_lease_duration(args.duration)
        .with_auto_renew_interval(t.interval)
        .with_auto_renew_safety_threshold(THRESHOLD)
        .with_metadata(metadata);
    let options = match args.wait.0 {
        Some(w) => options.with_acquire_timeout(w),
        None => options.with_no_acquire_timeout(),
    };
    let manager = LeaseManager::new(provider, options)
        .map_err(|e| CliError::backend("invalid options", &e))?;

    // Waiting: SIGINT or SIGTERM stop it at once.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let lease = tokio::select! {
        r = acquire(&manager, &args.name, args.wait) => r?,
        _ = interrupt.recv() => return Err(interrupted(&args.name)),
        _ = terminate.recv() => return Err(interrupted(&args.name)),
    };
    drop((interrupt, terminate));
    if verbose {
        eprintln!(
            "leasing: acquired {} (token {}, renewed every {}, trusted {} after a renewal, grace {})",
            args.name,
            lease.fencing_token(),
            human(t.interval),
            human(t.window),
            human(t.grace)
        );
    }
    let outcome = supervise(&args, &lease, t, verbose).await;
    match outcome {
        Ok(Outcome::Exited(code)) => {
            if let Err(e) = lease.release().await {
                eprintln!(
                    "leasing: releasing {}: {e} (the backend expires it)",
                    args.name
                );
            }
            Ok(code)
        }
        Ok(Outcome::Stopped(why)) => {
            eprintln!("leasing: {}: {why}; the command was stopped", args.name);
            let _ = lease.release().await;
            if let Some(cmd) = &args.on_lost {
                run_on_lost(cmd, &args.name).await;
            }
            Ok(exit::LOST)
        }
        Err(e) => {
            let _ = lease.release().await;
            Err(e)
        }
    }
}

fn io(e: std::io::Error) -> CliError {
    CliError::new(exit::UNAVAILABLE, format!("leasing: {e}"))
}

fn interrupted(name: &str) -> CliError {
    CliError::new(
        exit::INTERRUPTED,
        format!("interrupted while waiting for {name}"),
    )
}

/// Acquires, with a progress line on a terminal while the name is held.
async fn acquire(manager: &LeaseManager, name: &str, wait: WaitFor) -> Result<Lease, CliError> {
    let progress = std::io::stderr().is_terminal() && wait.0 != Some(Duration::ZERO);
    let started = Instant::now();
    let ticker = progress.then(|| {
        let (manager, name) = (manager.clone(), name.to_owned());
        tokio::spawn(async move {
            let holder = match manager.inspect(&name).await {
                Ok(Some(i)) => i.metadata.get("owner").map_or_else(
                    || format!(" (token {})", i.fencing_token),
                    |o| format!(" (held by {o}, token {})", i.fencing_token),
                ),
                _ => String::new(),
            };
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprint!(
                    "\rleasing: waiting for {name}{holder}… {}   ",
                    human(started.elapsed())
                );
            }
        })
    });
    let result = manager.acquire_with(name, AcquireOptions::new()).await;
    if let Some(t) = ticker {
        t.abort();
        if started.elapsed() >= Duration::from_secs(1) {
            eprintln!();
        }
    }
    result.map_err(|e| match e.kind() {
        ErrorKind::Timeout => {
            let wait = wait
                .0
                .map_or("without limit".into(), |w| format!("within {}", human(w)));
            CliError::new(
                exit::NOT_ACQUIRED,
                format!("{name} was not acquired {wait}: {e}"),
            )
        }
        _ => CliError::backend(&format!("acquiring {name}"), &e),
    })
}

enum Outcome {
    /// The command exited on its own, with this code.
    Exited(u8),
    /// The command was stopped because the lease was lost or not renewed in time.
    Stopped(String),
}

/// Runs the command through the supervisor and watches the lease until it exits.
async fn supervise(
    args: &ExecArgs,
    lease: &Lease,
    t: Timing,
    verbose: bool,
) -> Result<Outcome, CliError> {
    let dir = private_dir().map_err(io)?;
    let socket = dir.path.join("s");
    let listener = UnixListener::bind(&socket).map_err(io)?;
    let exe = std::env::current_exe().map_err(io)?;
    let mut sup = tokio::process::Command::new(exe)
        .arg("__supervise")
        .arg("--socket")
        .arg(&socket)
        .arg("--grace-ms")
        .arg(t.grace.as_millis().to_string())
        .arg("--")
        .args(&args.command)
        .env("LEASING_NAME", &args.name)
        .env("LEASING_LEASE_ID", lease.lease_id())
        .env("LEASING_FENCING_TOKEN", lease.fencing_token().to_string())
        .env(
            "LEASING_DEADLINE",
            lease.expires_at().map(rfc3339).unwrap_or_default(),
        )
        .spawn()
        .map_err(io)?;
    let stream = tokio::select! {
        s = listener.accept() => s.map_err(io)?.0,
        status = sup.wait() => {
            return Ok(Outcome::Exited(status.map_or(exit::UNAVAILABLE, exit::of_status)));
        }
    };
    drop(listener);
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let mut events = lease.events();
    let mut signals = Vec::new();
    for (kind, sig) in FORWARDED {
        signals.push((signal(kind).map_err(io)?, sig));
    }
    let mut pgid: Option<Pid> = None;
    let mut pending: Vec<Signal> = Vec::new();
    let mut stopping: Option<String> = None;
    let mut interrupts = 0u32;
    // The point of no return: stop the command unless a renewal moves it.
    let mut term_at = send_deadline(&mut wr, lease, t.grace).await;
    let status = loop {
        tokio::select! {
            status = sup.wait() => break status,
            line = lines.next_line() => match line {
                Ok(Some(l)) if l.starts_with("P ") => {
                    pgid = l[2..].trim().parse::<i32>().ok().map(Pid::from_raw);
                    // Signals that came before the group was known are delivered now.
                    if let Some(p) = pgid {
                        for sig in pending.drain(..) {
                            let _ = killpg(p, sig);
                        }
                    }
                }
                Ok(Some(l)) if l == "T" => {
                    stopping.get_or_insert_with(|| "the lease was not renewed before its safety deadline".into());
                }
                _ => {}
            },
            ev = events.recv() => match ev {
                Ok(LeaseEvent::Renewed { .. }) if stopping.is_none() => {
                    term_at = send_deadline(&mut wr, lease, t.grace).await;
                }
                Ok(LeaseEvent::RenewalFailed { error, remaining, .. }) if verbose => {
                    eprintln!("leasing: renewal failed ({} left): {error}", human(remaining));
                }
                Ok(LeaseEvent::Lost { reason }) if stopping.is_none() => {
                    stopping = Some(format!("lease lost: {reason}"));
                    let _ = wr.write_all(b"S\n").await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    term_at = send_deadline(&mut wr, lease, t.grace).await;
                }
                _ => {}
            },
            reason = lease.lost(), if stopping.is_none() => {
                stopping = Some(format!("lease lost: {reason}"));
                let _ = wr.write_all(b"S\n").await;
            }
            () = tokio::time::sleep_until(term_at), if stopping.is_none() => {
                // The supervisor acts on the same instant; this says why.
                if lease.remaining_validity().is_none_or(|r| r <= t.grace) {
                    stopping = Some("the lease was not renewed in time".into());
                    let _ = wr.write_all(b"S\n").await;
                } else {
                    term_at = send_deadline(&mut wr, lease, t.grace).await;
                }
            }
            sig = next_signal(&mut signals) => {
                let sig = if sig == Signal::SIGINT {
                    interrupts += 1;
                    if interrupts >= 2 { Signal::SIGKILL } else { sig }
                } else { sig };
                match pgid {
                    Some(p) => { let _ = killpg(p, sig); }
                    None => pending.push(sig),
                }
            }
        }
    };
    // What the supervisor said before it exited (a `T` racing with its exit).
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(1), lines.next_line()).await
    {
        if l == "T" {
            stopping.get_or_insert_with(|| {
                "the lease was not renewed before its safety deadline".into()
            });
        }
    }
    let code = status.map_or(exit::UNAVAILABLE, exit::of_status);
    if let Some(p) = pgid {
        // The supervisor is gone: whatever is left of a stopped command must not run on.
        if stopping.is_some() || code > 128 {
            let _ = killpg(p, Signal::SIGKILL);
        }
    }
    Ok(match stopping {
        Some(why) => Outcome::Stopped(why),
        None => Outcome::Exited(code),
    })
}

/// Tells the supervisor the current deadlines; returns the SIGTERM instant.
async fn send_deadline(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    lease: &Lease,
    grace: Duration,
) -> Instant {
    let left = lease
        .remaining_validity()
        .unwrap_or(Duration::from_secs(86_400 * 365));
    let now_mono = mono_ns();
    let now = Instant::now();
    let kill = now_mono + left.as_nanos();
    let term = kill.saturating_sub(grace.as_nanos());
    let _ = wr.write_all(format!("D {term} {kill}\n").as_bytes()).await;
    now + left.saturating_sub(grace)
}

async fn next_signal(signals: &mut [(tokio::signal::unix::Signal, Signal)]) -> Signal {
    std::future::poll_fn(|cx| {
        for (s, sig) in signals.iter_mut() {
            if s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*sig);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn run_on_lost(cmd: &str, name: &str) {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("LEASING_NAME", name)
        .status()
        .await;
    if let Err(e) = status {
        eprintln!("leasing: --on-lost: {e}");
    }
}

/// A directory only this user can enter, removed on drop.
struct PrivateDir {
    path: std::path::PathBuf,
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn private_dir() -> std::io::Result<PrivateDir> {
    use std::os::unix::fs::DirBuilderExt;
    // Unique: this process's id and the monotonic clock's nanoseconds.
    let path = std::env::temp_dir().join(format!("leasing-{}-{}", std::process::id(), mono_ns()));
    std::fs::DirBuilder::new().mode(0o700).create(&path)?;
    Ok(PrivateDir { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_checked_with_the_arithmetic_in_the_message() {
        let t = timing(Duration::from_secs(30), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.interval, Duration::from_secs(10));
        assert_eq!(t.window, Duration::from_secs(27));
        assert_eq!(t.grace, Duration::from_secs(5));
        // Short leases get half their slack.
        let t = timing(Duration::from_secs(3), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.grace, Duration::from_millis(850));
        let e = timing(Duration::from_secs(30), Some(Duration::from_secs(17))).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("27s − 10s = 17s"), "{e}");
        assert!(timing(Duration::from_secs(30), Some(Duration::from_millis(16_999))).is_ok());
        assert_eq!(
            timing(Duration::from_nanos(2), None).unwrap_err().code,
            exit::USAGE
        );
    }

    #[test]
    fn flags_parse() {
        assert_eq!(parse_wait("infinite"), Ok(WaitFor(None)));
        assert_eq!(
            parse_wait("5m"),
            Ok(WaitFor(Some(Duration::from_secs(300))))
        );
        assert!(parse_wait("soon").is_err());
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("=x").is_err());
        assert!(parse_kv("x").is_err());
    }
}
