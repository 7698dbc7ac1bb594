//! `leasing exec`: acquire, run the command under the lease, stop it before the lease can
//! be anyone else's, release, and exit with the command's code.

use crate::exit::{self, CliError};
use crate::output::{human, rfc3339};
use crate::supervise::mono_ns;
use distributed_leasing::{
    environment_metadata, AcquireOptions, ErrorKind, Lease, LeaseError, LeaseEvent, LeaseManager,
    LeaseOptions, LeaseProvider, Metadata,
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
    let window = distributed_leasing::safety_window(duration, THRESHOLD);
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

/// The signals forwarded to the command, besides SIGINT and SIGTERM (caught from the
/// start, as they also stop the wait for the lease).
const FORWARDED: [(SignalKind, Signal); 4] = [
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
    // The program's file name, never its arguments (clap requires a program).
    metadata.extend(args.command.first().map(|p| {
        let p = std::path::Path::new(p);
        let program = p.file_name().unwrap_or(p.as_os_str()).to_string_lossy();
        ("command".to_owned(), program.into_owned())
    }));
    metadata.extend(args.metadata.iter().cloned());
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

    // Waiting: SIGINT or SIGTERM stop it at once. Once the lease is held, the same two
    // streams keep what arrives for the command: a SIGTERM from systemd while the
    // supervisor starts is forwarded as soon as the command's group is known.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io("catching SIGINT"))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io("catching SIGTERM"))?;
    let lease = tokio::select! {
        r = acquire(&manager, &args.name, args.wait) => r?,
        _ = interrupt.recv() => return Err(interrupted(&args.name)),
        _ = terminate.recv() => return Err(interrupted(&args.name)),
    };
    let early = [(interrupt, Signal::SIGINT), (terminate, Signal::SIGTERM)];
    let outcome = supervise(&args, &lease, t, verbose, early).await;
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

/// A local I/O failure while `doing` something (`main` prefixes `leasing: `).
fn io(doing: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> CliError {
    move |e| CliError::new(exit::UNAVAILABLE, format!("exec: {doing}: {e}"))
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
    result.map_err(|e| acquire_error(name, wait, &e))
}

/// Why an acquisition failed, as an exit code: 75 only when the name was held (the last
/// attempt met `Conflict`); a backend that failed or did not answer until `--wait` ran
/// out is unavailable (69), not "held by someone else".
fn acquire_error(name: &str, wait: WaitFor, e: &LeaseError) -> CliError {
    let doing = format!("acquiring {name}");
    if e.kind() != ErrorKind::Timeout {
        return CliError::backend(&doing, e);
    }
    // The last attempt's error is the timeout's source.
    let last = std::error::Error::source(e).and_then(|s| s.downcast_ref::<LeaseError>());
    match last.map(LeaseError::kind) {
        Some(ErrorKind::Conflict) | None => {
            let wait = wait
                .0
                .map_or("without limit".into(), |w| format!("within {}", human(w)));
            CliError::new(
                exit::NOT_ACQUIRED,
                format!("{name} was not acquired {wait}: {e}"),
            )
        }
        Some(_) => CliError::new(exit::UNAVAILABLE, format!("{doing}: {e}")),
    }
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
    early: [(tokio::signal::unix::Signal, Signal); 2],
) -> Result<Outcome, CliError> {
    // Every forwarded signal is caught before the command starts: none is lost (or ends
    // `leasing` by its default action) while the supervisor starts.
    let mut signals = Vec::from(early);
    for (kind, sig) in FORWARDED {
        signals.push((
            signal(kind).map_err(io(format!("catching {}", sig.as_str())))?,
            sig,
        ));
    }
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
    let dir = private_dir().map_err(io(format!(
        "creating a private directory in {}",
        std::env::temp_dir().display()
    )))?;
    let socket = dir.path.join("s");
    let listener = UnixListener::bind(&socket).map_err(io("listening for the supervisor"))?;
    let exe = std::env::current_exe().map_err(io("finding the leasing executable"))?;
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
        .map_err(io("starting the supervisor"))?;
    let stream = tokio::select! {
        s = listener.accept() => s.map_err(io("accepting the supervisor"))?.0,
        status = sup.wait() => {
            return Ok(Outcome::Exited(status.map_or(exit::UNAVAILABLE, exit::of_status)));
        }
    };
    drop(listener);
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let mut events = lease.events();
    let mut forward = Forwarder::default();
    let mut stopping: Option<String> = None;
    // The point of no return: stop the command unless a renewal moves it.
    let mut term_at = send_deadline(&mut wr, lease, t.grace).await;
    let status = loop {
        tokio::select! {
            status = sup.wait() => break status,
            line = lines.next_line() => {
                // Nothing at the end of the stream (the supervisor is exiting).
                let line = line.ok().flatten().unwrap_or_default();
                for (p, sig) in on_report(&line, &mut forward, &mut stopping) {
                    let _ = killpg(p, sig);
                }
            }
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
                for (p, sig) in forward.received(sig) {
                    let _ = killpg(p, sig);
                }
            }
        }
    };
    // What the supervisor said before it exited (a `T` racing with its exit); no signal
    // is sent to a group whose supervisor is gone.
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(1), lines.next_line()).await
    {
        let _ = on_report(&l, &mut forward, &mut stopping);
    }
    let code = status.map_or(exit::UNAVAILABLE, exit::of_status);
    if let Some(p) = forward.group {
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

/// A line from the supervisor: `P <pgid>`, the command's group (returns the signals queued
/// until then, to send now), or `T`, it started stopping the command at its own deadline
/// (the reason, unless one is known already). Anything else is ignored.
fn on_report(
    line: &str,
    forward: &mut Forwarder,
    stopping: &mut Option<String>,
) -> Vec<(Pid, Signal)> {
    match (line, line.strip_prefix("P ")) {
        (_, Some(pgid)) => forward.group_is(pgid),
        ("T", None) => {
            stopping.get_or_insert_with(|| {
                "the lease was not renewed before its safety deadline".into()
            });
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Where the signals `leasing` receives go: to the command's process group once the
/// supervisor has reported it, queued until then; a second SIGINT becomes SIGKILL.
#[derive(Debug, Default)]
struct Forwarder {
    group: Option<Pid>,
    pending: Vec<Signal>,
    interrupts: u32,
}

impl Forwarder {
    /// `sig` arrived: what to send to whom now (nothing while the group is unknown).
    fn received(&mut self, sig: Signal) -> Vec<(Pid, Signal)> {
        let sig = if sig == Signal::SIGINT {
            self.interrupts += 1;
            if self.interrupts >= 2 {
                Signal::SIGKILL
            } else {
                sig
            }
        } else {
            sig
        };
        self.pending.push(sig);
        self.flush()
    }

    /// The supervisor reported the group (`P <pgid>`): the signals queued so far, to send.
    fn group_is(&mut self, pgid: &str) -> Vec<(Pid, Signal)> {
        self.group = pgid.trim().parse::<i32>().ok().map(Pid::from_raw);
        self.flush()
    }

    fn flush(&mut self) -> Vec<(Pid, Signal)> {
        self.group
            .map(|p| self.pending.drain(..).map(|s| (p, s)).collect())
            .unwrap_or_default()
    }
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
    fn a_duration_whose_window_ends_before_the_first_renewal_is_refused() {
        // 3 ms: renewed every 1 ms, but trusted for less than that (the clock-drift
        // allowance takes 2 ms).
        let d = Duration::from_millis(3);
        assert!(distributed_leasing::safety_window(d, THRESHOLD) <= d / 3);
        let e = timing(d, None).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert_eq!(e.message, "--duration 3ms is too short to renew");
        // Zero grace fits any lease that can be renewed.
        let t = timing(Duration::from_secs(1), Some(Duration::ZERO)).unwrap();
        assert_eq!(t.grace, Duration::ZERO);
        assert_eq!(t.interval, Duration::from_nanos(333_333_333));
    }

    #[test]
    fn signals_wait_for_the_group_and_a_second_interrupt_kills() {
        let mut f = Forwarder::default();
        // Before the supervisor reports the group: queued, in order.
        assert!(f.received(Signal::SIGTERM).is_empty());
        assert!(f.received(Signal::SIGINT).is_empty());
        assert!(f.received(Signal::SIGINT).is_empty());
        let p = Pid::from_raw(4242);
        assert_eq!(
            f.group_is(" 4242"),
            vec![
                (p, Signal::SIGTERM),
                (p, Signal::SIGINT),
                (p, Signal::SIGKILL)
            ]
        );
        // Then at once; every SIGINT after the first is SIGKILL.
        assert_eq!(f.received(Signal::SIGUSR1), vec![(p, Signal::SIGUSR1)]);
        assert_eq!(f.received(Signal::SIGINT), vec![(p, Signal::SIGKILL)]);
        assert!(f.pending.is_empty());
        // A first SIGINT once the group is known is passed as it is.
        let mut f = Forwarder::default();
        assert!(f.group_is("17").is_empty());
        assert_eq!(
            f.received(Signal::SIGINT),
            vec![(Pid::from_raw(17), Signal::SIGINT)]
        );
        // A garbled report names no group: nothing is sent to a made-up one.
        let mut f = Forwarder::default();
        assert!(f.group_is("x").is_empty());
        assert!(f.received(Signal::SIGHUP).is_empty());
        assert_eq!(f.group, None);
    }

    #[test]
    fn only_a_held_name_is_not_acquired_a_failing_backend_is_unavailable() {
        let timeout = |cause: Option<LeaseError>| {
            let e = LeaseError::new(ErrorKind::Timeout, "not acquired within 2s (3 attempts)");
            match cause {
                Some(c) => e.with_source(c),
                None => e,
            }
        };
        let wait = WaitFor(Some(Duration::from_secs(2)));
        let held = LeaseError::new(ErrorKind::Conflict, "the name is held by another owner");
        let e = acquire_error("job", wait, &timeout(Some(held)));
        assert_eq!(e.code, exit::NOT_ACQUIRED);
        assert!(
            e.message.starts_with("job was not acquired within 2s: "),
            "{e}"
        );
        let e = acquire_error("job", WaitFor(None), &timeout(None));
        assert_eq!(e.code, exit::NOT_ACQUIRED);
        assert!(
            e.message
                .starts_with("job was not acquired without limit: "),
            "{e}"
        );
        // The backend failed every attempt: unavailable, whatever --wait was.
        let down = LeaseError::unavailable("connection refused");
        let e = acquire_error("job", wait, &timeout(Some(down)));
        assert_eq!(e.code, exit::UNAVAILABLE);
        assert_eq!(
            e.message,
            "acquiring job: timeout: not acquired within 2s (3 attempts)"
        );
        // Not a timeout: by its kind.
        let e = acquire_error("job", wait, &LeaseError::configuration("name", "bad"));
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.starts_with("acquiring job: "), "{e}");
    }

    #[test]
    fn supervisor_reports_set_the_group_and_the_reason() {
        let (mut f, mut stopping) = (Forwarder::default(), None);
        assert!(f.received(Signal::SIGHUP).is_empty());
        for other in ["", "t", "T x", "X 1", "P"] {
            assert!(
                on_report(other, &mut f, &mut stopping).is_empty(),
                "{other:?}"
            );
        }
        assert_eq!((f.group, &stopping), (None, &None));
        assert_eq!(
            on_report("P 99", &mut f, &mut stopping),
            vec![(Pid::from_raw(99), Signal::SIGHUP)]
        );
        assert!(on_report("T", &mut f, &mut stopping).is_empty());
        assert_eq!(
            stopping.as_deref(),
            Some("the lease was not renewed before its safety deadline")
        );
        // A reason known first (the backend said the lease is gone) is kept.
        let mut stopping = Some("lease lost: broken".to_owned());
        let _ = on_report("T", &mut f, &mut stopping);
        assert_eq!(stopping.as_deref(), Some("lease lost: broken"));
    }

    #[test]
    fn local_failures_say_what_was_being_done() {
        let e = io("listening for the supervisor")(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        ));
        assert_eq!(e.code, exit::UNAVAILABLE);
        assert_eq!(
            e.message,
            "exec: listening for the supervisor: permission denied"
        );
        let e = interrupted("job");
        assert_eq!(e.code, exit::INTERRUPTED);
        assert_eq!(e.message, "interrupted while waiting for job");
    }

    #[test]
    fn flags_parse() {
        for forever in ["infinite", "forever", "inf"] {
            assert_eq!(parse_wait(forever), Ok(WaitFor(None)));
        }
        assert_eq!(parse_wait("0s"), Ok(WaitFor(Some(Duration::ZERO))));
        assert!(parse_wait("soon").unwrap_err().contains("`infinite`"));
        assert_eq!(
            parse_wait("5m"),
            Ok(WaitFor(Some(Duration::from_secs(300))))
        );
        assert!(parse_wait("soon").is_err());
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_kv("a="), Ok(("a".into(), String::new())));
        assert!(parse_kv("=x").is_err());
        assert!(parse_kv("x").is_err());
    }
}
