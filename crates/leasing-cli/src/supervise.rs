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
    let mut caught: Vec<_> = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ]
    .into_iter()
    .filter_map(|kind| {
        signal(kind)
            .inspect_err(|e| eprintln!("leasing: supervisor: cannot catch a signal: {e}"))
            .ok()
    })
    .collect();
    // clap requires a program.
    let mut command = args.command.into_iter();
    let program = command.next().unwrap_or_default();
    let mut child = match tokio::process::Command::new(&program)
        .args(command)
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
    // Known right after the spawn (the child is not reaped yet).
    let report = pgid.map(|p| format!("P {p}\n")).unwrap_or_default();
    let _ = wr.write_all(report.as_bytes()).await;
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
                    Ok(Some(l)) => match message(&l) {
                        Some(Message::Deadlines { term, kill }) => {
                            term_at = Some(instant_of(term));
                            kill_at = Some(instant_of(kill));
                        }
                        Some(Message::Stop) => {
                            stop(&mut term_sent, &mut kill_at, grace, pgid, &mut wr).await;
                        }
                        None => {}
                    },
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

/// What `leasing` tells the supervisor.
#[derive(Debug, PartialEq)]
enum Message {
    /// `D <term> <kill>`: the SIGTERM and SIGKILL instants (CLOCK_MONOTONIC, ns).
    Deadlines { term: u128, kill: u128 },
    /// `S`: stop now.
    Stop,
}

/// One line from `leasing`; `None` for anything else (ignored).
fn message(line: &str) -> Option<Message> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("D"), Some(t), Some(k)) => Some(Message::Deadlines {
            term: t.parse().ok()?,
            kill: k.parse().ok()?,
        }),
        (Some("S"), _, _) => Some(Message::Stop),
        _ => None,
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

/// The next of the caught signals (never, if none could be caught).
async fn any_signal(caught: &mut [tokio::signal::unix::Signal]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_anything_else_is_ignored() {
        assert_eq!(
            message("D 10 20"),
            Some(Message::Deadlines { term: 10, kill: 20 })
        );
        assert_eq!(
            message("D 340282366920938463463374607431768211455 1"),
            Some(Message::Deadlines {
                term: u128::MAX,
                kill: 1
            })
        );
        assert_eq!(message("S"), Some(Message::Stop));
        assert_eq!(message("S extra"), Some(Message::Stop));
        for other in ["", "D", "D 1", "D x 2", "D 1 -2", "T", "P 12", "s"] {
            assert_eq!(message(other), None, "{other:?}");
        }
    }

    #[test]
    fn monotonic_readings_map_to_instants_never_beyond_a_year() {
        let before = Instant::now();
        // Already past: now.
        let past = instant_of(0);
        assert!(past >= before);
        assert!(past <= Instant::now());
        // Far beyond the clock's range: capped at a year from now.
        let far = instant_of(u128::MAX);
        assert!(far >= before + FAR);
        assert!(far <= Instant::now() + FAR);
        // Ahead by an hour.
        let hour = instant_of(mono_ns() + 3_600_000_000_000);
        assert!(hour >= before + Duration::from_secs(3600));
        assert!(hour < before + FAR);
    }

    #[test]
    fn with_no_caught_signal_none_ever_comes() {
        use std::future::Future;
        let mut none: [tokio::signal::unix::Signal; 0] = [];
        let mut next = std::pin::pin!(any_signal(&mut none));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        assert!(next.as_mut().poll(&mut cx).is_pending());
    }
}
