//! The supervisor: a small process between `leasing exec` and the command, so that the
//! command is stopped in time even when `leasing` itself cannot do it.
//!
//! `leasing exec` starts `leasing __supervise --socket PATH --grace MS -- CMD…`, which
//! connects back over a Unix socket, starts CMD in a process group of its own, tells
//! `leasing` the group (`P <pgid>`), and then obeys two kinds of message:
//!
//! - `D <term> <kill>`: the instants (CLOCK_MONOTONIC, nanoseconds) at which to send the
//!   group SIGTERM and SIGKILL unless a later `D` moves them: the lease's safety deadline
//!   minus the grace, and the deadline itself. `leasing` sends a new pair after every
//!   successful renewal. So a `leasing` that is stopped (SIGSTOP), hung or starved still
//!   has its command stopped before the lease can be granted to anyone else.
//! - `S`: stop now (SIGTERM, SIGKILL after the grace, never later than the deadline).
//!
//! When the socket closes (`leasing` died: killed, crashed), it stops the command at once
//! the same way. It reports `T` when it starts a stop on its own, and exits with the
//! command's status (128 + N for a signal death).
//!
//! The supervisor catches SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 and does
//! nothing with them: it shares `leasing`'s process group (a Ctrl-C on a terminal reaches
//! both), and `leasing` forwards each signal to the command's group itself.

use crate::exit;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

/// Arguments of the hidden `__supervise` subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct SuperviseArgs {
    /// The socket `leasing exec` listens on.
    #[arg(long)]
    socket: PathBuf,
    /// Milliseconds between SIGTERM and SIGKILL.
    #[arg(long)]
    grace_ms: u64,
    /// The command.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock `tokio::time::Instant` reads, shared by
/// every process on the machine).
pub(crate) fn mono_ns() -> u128 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            u128::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u128::try_from(t.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The farthest the supervisor ever waits: a year (no lease is renewed less often).
const FAR: Duration = Duration::from_secs(86_400 * 365);

/// The local instant of a CLOCK_MONOTONIC reading.
fn instant_of(ns: u128) -> Instant {
    let now = mono_ns();
    let ahead = u64::try_from(ns.saturating_sub(now)).unwrap_or(u64::MAX);
    Instant::now() + Duration::from_nanos(ahead).min(FAR)
}

pub(crate) fn run(args: SuperviseArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leasing: supervisor: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    ExitCode::from(rt.block_on(supervise(args)))
}

async fn supervise(args: SuperviseArgs) -> u8 {
    let stream = match UnixStream::connect(&args.socket).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("leasing: supervisor cannot reach leasing: {e}");
            return exit::UNAVAILABLE;
        }
    };
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    // Caught (so that a signal for leasing's group does not end us); the command, spawned
    // after, gets the default dispositions back at exec.
    let mut caught = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ] {
        match signal(kind) {
            Ok(s) => caught.push(s),
            Err(e) => eprintln!("leasing: supervisor: cannot catch a signal: {e}"),
        }
    }
    let (program, rest) = match args.command.split_first() {
        Some(p) => p,
        None => return exit::USAGE,
    };
    let mut child = match tokio::process::Command::new(program)
        .args(rest)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                exit::NOT_FOUND
            } else {
                exit::CANNOT_RUN
            };
            eprintln!("leasing: cannot run {}: {e}", program.to_string_lossy());
            return code;
        }
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    if let Some(p) = pgid {
        let _ = wr.write_all(format!("P {p}\n").as_bytes()).await;
    }
    let grace = Duration::from_millis(args.grace_ms);
    let mut term_at: Option<Instant> = None;
    let mut kill_at: Option<Instant> = None;
    let mut term_sent = false;
    let mut connected = true;
    loop {
        let term = term_at.filter(|_| !term_sent);
        tokio::select! {
            status = child.wait() => {
                return status.map_or(exit::UNAVAILABLE, exit::of_status);
            }
            line = lines.next_line(), if connected => {
                match line {
                    Ok(Some(l)) => {
                        let mut parts = l.split_whitespace();
                        match (parts.next(), parts.next(), parts.next()) {
                            (Some("D"), Some(t), Some(k)) => {
                                if let (Ok(t), Ok(k)) = (t.parse(), k.parse()) {
                                    term_at = Some(instant_of(t));
                                    kill_at = Some(instant_of(k));
                                }
                            }
                            (Some("S"), _, _) => {
                                stop(&mut term_sent, &mut kill_at, grace, pgid, &mut wr).await;
                            }
                            _ => {}
                        }
                    }
                    // leasing is gone (killed, crashed): nothing renews the lease any more.
                    Ok(None) | Err(_) => {
                        connected = false;
                        stop(&mut term_sent, &mut kill_at, grace, pgid, &mut wr).await;
                    }
                }
            }
            () = sleep_until_opt(term) => {
                stop(&mut term_sent, &mut kill_at, grace, pgid, &mut wr).await;
            }
            () = sleep_until_opt(kill_at) => {
                signal_group(pgid, Signal::SIGKILL);
                kill_at = None;
            }
            () = any_signal(&mut caught) => {}
        }
    }
}

/// SIGTERM to the group now (once) and SIGKILL after the grace, never later than the
/// current kill instant.
async fn stop(
    term_sent: &mut bool,
    kill_at: &mut Option<Instant>,
    grace: Duration,
    pgid: Option<Pid>,
    wr: &mut tokio::net::unix::OwnedWriteHalf,
) {
    // The grace comes from the user: saturate rather than overflow.
    let now = Instant::now();
    let by_grace = now.checked_add(grace).unwrap_or(now + FAR);
    *kill_at = Some(kill_at.map_or(by_grace, |k| k.min(by_grace)));
    if !*term_sent {
        *term_sent = true;
        let _ = wr.write_all(b"T\n").await;
        if grace.is_zero() {
            signal_group(pgid, Signal::SIGKILL);
        } else {
            signal_group(pgid, Signal::SIGTERM);
        }
    }
}

fn signal_group(pgid: Option<Pid>, sig: Signal) {
    if let Some(p) = pgid {
        let _ = killpg(p, sig);
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn any_signal(caught: &mut [tokio::signal::unix::Signal]) {
    if caught.is_empty() {
        return std::future::pending().await;
    }
    let recvs = caught.iter_mut().map(|s| Box::pin(s.recv()));
    let _ = futures_select_all(recvs).await;
}

/// Waits for the first of several futures (a small `select_all`).
async fn futures_select_all<F: std::future::Future + Unpin>(
    futs: impl Iterator<Item = F>,
) -> F::Output {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in &mut futs {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
