#![allow(clippy::unwrap_used)]
//! `leasing exec` as a built binary against real servers: the lease in the command's
//! environment, exit codes, no overlap between two `exec`s, and the command stopped
//! before anyone else can hold the lease when the lease is broken, cut off from the
//! backend, or when `leasing` itself is killed or stopped.

#[macro_use]
mod common;

use common::*;
use std::process::Stdio;
use std::time::Duration;

per_backend!(runs_the_command_with_the_lease_and_passes_its_exit_code: redis, redlock, blob, cosmos);
per_backend!(two_execs_never_overlap: redis, redlock, blob, cosmos);
per_backend!(a_broken_lease_stops_the_command: redis, redlock, blob, cosmos);
per_backend!(killing_leasing_kills_the_command_before_the_next_holder_starts: redis, redlock, blob, cosmos);
per_backend!(a_command_outlives_its_first_deadlines_while_renewals_succeed: redis, redlock, cosmos);

fn runs_the_command_with_the_lease_and_passes_its_exit_code(b: &Backend) {
    let n = name(b.label);
    let out = temp("env");
    let mut c = leasing(b);
    c.args(["exec", "--duration", b.duration, "--metadata", "team=ops", &n, "--"])
        .args([
            "sh",
            "-c",
            &format!(
                "echo \"$LEASING_NAME $LEASING_LEASE_ID $LEASING_FENCING_TOKEN $LEASING_DEADLINE\" > {o}; \
                 \"$LEASING_BIN\" status --json \"$LEASING_NAME\" > {o}.status; \
                 \"$LEASING_BIN\" list --json --prefix \"$LEASING_NAME\" > {o}.list; exit 7",
                o = out.display()
            ),
        ]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let env = std::fs::read_to_string(&out).unwrap();
    let parts: Vec<&str> = env.split_whitespace().collect();
    assert_eq!(parts.len(), 4, "{env}");
    assert_eq!(parts[0], n);
    let token: u64 = parts[2].parse().unwrap();
    assert!(token > 0);
    assert!(parts[3].ends_with('Z') && parts[3].contains('T'), "{env}");
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.status", out.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(status["name"], n.as_str());
    assert_eq!(status["fencing_token"], token);
    assert_eq!(status["metadata"]["team"], "ops");
    assert_eq!(status["metadata"]["command"], "sh");
    assert!(
        status["owner"].as_str().unwrap().starts_with("leasing["),
        "{status}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.list", out.display())).unwrap())
            .unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["fencing_token"], token);
    // Released when the command exits: free now.
    let mut c = leasing(b);
    c.args(["status", &n]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("free"));
}

/// A command that runs for several lease durations: every successful renewal moves the
/// supervisor's deadlines, so it is never stopped; it keeps its grant (same token) to
/// the end and its own exit code is passed on.
fn a_command_outlives_its_first_deadlines_while_renewals_succeed(b: &Backend) {
    let n = name(b.label);
    let out = temp("renewed");
    let mut c = leasing(b);
    // 6 s: renewed every 2 s, trusted 5.4 s after each renewal; the first SIGTERM would
    // be due about 4.5 s after the start. The command runs 10 s.
    c.args(["exec", "--duration", "6s", &n, "--", "sh", "-c"])
        .arg(format!(
            "echo \"$LEASING_FENCING_TOKEN\" > {o}; sleep 10; \
             \"$LEASING_BIN\" status --json \"$LEASING_NAME\" > {o}.status; exit 4",
            o = out.display()
        ));
    let o = run(c);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let token: u64 = std::fs::read_to_string(&out)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.status", out.display())).unwrap(),
    )
    .unwrap();
    // Still held, by the same grant, after 10 s of a 6 s lease: renewed.
    assert_eq!(status["fencing_token"], token, "{status}");
    assert_eq!(status["name"], n.as_str(), "{status}");
}

fn two_execs_never_overlap(b: &Backend) {
    let n = name(b.label);
    let log = temp("overlap");
    let mut children = Vec::new();
    for i in 0..3 {
        let mut c = leasing(b);
        c.args(["exec", "--wait", "5m", "--duration", b.duration, &n, "--"])
            .args([
                "sh",
                "-c",
                &format!(
                    "echo \"in {i} $(date +%s%N) $LEASING_FENCING_TOKEN\" >> {l}; sleep 0.3; echo \"out {i} $(date +%s%N) $LEASING_FENCING_TOKEN\" >> {l}",
                    l = log.display()
                ),
            ])
            .stdin(Stdio::null());
        children.push(c.spawn().unwrap());
    }
    for mut ch in children {
        assert!(wait(&mut ch).success());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 6, "{text}");
    let mut last_token = 0u64;
    for pair in rows.chunks(2) {
        // Each holder's "in" is followed by its own "out" before anyone else's "in".
        assert_eq!((pair[0][0], pair[1][0]), ("in", "out"), "{text}");
        assert_eq!(pair[0][1], pair[1][1], "{text}");
        let token: u64 = pair[0][3].parse().unwrap();
        assert!(token > last_token, "tokens must increase: {text}");
        last_token = token;
    }
}

fn a_broken_lease_stops_the_command(b: &Backend) {
    let n_trials = if b.label == "blob" { 1 } else { trials() };
    let mut measured = Vec::new();
    for _ in 0..n_trials {
        measured.push(break_once(b));
    }
    report(b.label, "break", &mut measured);
}

/// Breaks a held lease once; returns (break to the command's death, the backend's time
/// left on the lease at the break), in ms.
fn break_once(b: &Backend) -> (f64, f64) {
    let n = name(b.label);
    let log = temp("broken");
    let mut c = leasing(b);
    c.args(["exec", "--duration", b.duration, "--on-lost"])
        .arg(format!(
            "echo \"onlost $LEASING_NAME $(date +%s%N)\" >> {}",
            log.display()
        ))
        .args([&n, "--"])
        .args(stubborn_writer(&log, "holder"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let mut holder = c.spawn().unwrap();
    wait_for_line(&log, "alive", &mut holder);
    let left = backend_time_left(b, &n);
    let mut c = leasing(b);
    c.args(["break", "--yes", &n]);
    let broken_at = now_ns();
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("broken"));
    let status = wait(&mut holder);
    let mut err = String::new();
    std::io::Read::read_to_string(holder.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(76), "{err}");
    assert!(err.contains("the command was stopped"), "{err}");
    let l = lines(&log);
    let last_alive = last_alive(&l);
    let on_lost = l.iter().find(|x| x.0 == "onlost").expect("--on-lost ran");
    assert_eq!(on_lost.1, n);
    assert!(
        on_lost.2 > last_alive,
        "--on-lost runs after the command is dead"
    );
    assert_command_dead(&log, "the command must be dead");
    (last_alive.saturating_sub(broken_at) as f64 / 1e6, left)
}

/// The backend's time left on `n`'s lease, ms (`status --json`; 0 when it does not say).
fn backend_time_left(b: &Backend, n: &str) -> f64 {
    let mut c = leasing(b);
    c.args(["status", "--json", n]);
    let v: serde_json::Value = serde_json::from_slice(&run(c).stdout).unwrap();
    v["remaining_ms"].as_f64().unwrap_or(0.0)
}

/// Prints p50 and max of (loss to death) beside the time the backend had left then.
fn report(label: &str, how: &str, m: &mut [(f64, f64)]) {
    m.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p50 = m[m.len() / 2];
    let max = m[m.len() - 1];
    println!(
        "{label}: {how}, {} trials: loss to the command's death p50 {:.0} ms (backend time left then {:.0} ms), max {:.0} ms (time left {:.0} ms)",
        m.len(),
        p50.0,
        p50.1,
        max.0,
        max.1
    );
}

fn killing_leasing_kills_the_command_before_the_next_holder_starts(b: &Backend) {
    let n = name(b.label);
    let log = temp("killed");
    let mut c = leasing(b);
    c.args(["exec", "--duration", b.duration, &n, "--"])
        .args(stubborn_writer(&log, "holder"))
        .stdin(Stdio::null());
    let mut holder = c.spawn().unwrap();
    wait_for_line(&log, "alive", &mut holder);
    let killed_at = now_ns();
    holder.kill().unwrap();
    let _ = holder.wait();
    // The next holder, waiting for the lease to expire on the backend.
    run_next_holder(b, b.duration, &n, &log);
    let (last_alive, next) = alive_before_next(
        &log,
        "the killed holder's command wrote after the next holder started",
    );
    assert_command_dead(&log, "the command must be dead");
    println!(
        "{}: SIGKILL of leasing to the command's death {:.0} ms; next holder started {:.0} ms after",
        b.label,
        (last_alive.saturating_sub(killed_at)) as f64 / 1e6,
        (next - last_alive) as f64 / 1e6
    );
}

/// A stopped `leasing` (SIGSTOP) cannot renew; its supervisor stops the command at the
/// safety deadline all the same, before the backend can grant the name again.
#[test]
fn a_stopped_leasing_still_has_its_command_stopped_in_time() {
    let Some(b) = backend("redis") else { return };
    let n = name("stopped");
    let log = temp("stopped");
    let mut c = leasing(&b);
    c.args(["exec", "--duration", "3s", &n, "--"])
        .args(stubborn_writer(&log, "holder"))
        .stdin(Stdio::null());
    let mut holder = c.spawn().unwrap();
    wait_for_line(&log, "alive", &mut holder);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(holder.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    run_next_holder(&b, "3s", &n, &log);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(wait(&mut holder).code(), Some(76));
    alive_before_next(&log, "the stopped holder's command outlived its lease");
}

per_backend!(a_network_cut_stops_the_command_before_the_next_holder_starts: redis, redlock, blob, cosmos);

/// How the holder reaches the backend through fault proxies: its `--backend` value and
/// extra environment. Everything else (the contender, `status`) goes to the backend
/// directly.
struct Route {
    proxies: Vec<leasing_testkit::proxy::FaultProxy>,
    spec: String,
    env: Vec<(&'static str, String)>,
}

impl Route {
    fn command(&self) -> std::process::Command {
        let mut c = bare();
        c.env("LEASING_BACKEND", &self.spec);
        for k in ["NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"] {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn partition(&self) {
        for p in &self.proxies {
            p.partition();
        }
    }

    fn cut(&self) {
        for p in &self.proxies {
            p.cut();
        }
    }

    fn restore(&self) {
        for p in &self.proxies {
            p.restore();
        }
    }

    fn accepted(&self) -> u64 {
        self.proxies.iter().map(|p| p.accepted()).sum()
    }
}

async fn proxy(target: &str) -> leasing_testkit::proxy::FaultProxy {
    let target: std::net::SocketAddr = target.parse().unwrap();
    leasing_testkit::proxy::FaultProxy::start(target)
        .await
        .unwrap()
}

/// A route through one proxy per server of `b`.
async fn route(b: &Backend) -> Route {
    let host_port = |url: &str| {
        url.trim()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned()
    };
    match b.label {
        "redis" => {
            let p = proxy(&host_port(&b.spec)).await;
            Route {
                spec: format!("redis://{}", p.addr()),
                proxies: vec![p],
                env: Vec::new(),
            }
        }
        "redlock" => {
            let mut proxies = Vec::new();
            for url in b.spec.split(',') {
                proxies.push(proxy(&host_port(url)).await);
            }
            Route {
                spec: proxies
                    .iter()
                    .map(|p| format!("redis://{}", p.addr()))
                    .collect::<Vec<_>>()
                    .join(","),
                proxies,
                env: Vec::new(),
            }
        }
        "blob" => {
            // Azurite's well-known development account (public).
            const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
            let p = proxy("127.0.0.1:10000").await;
            Route {
                spec: format!(
                    "blob:AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://{}/devstoreaccount1",
                    p.addr()
                ),
                proxies: vec![p],
                env: Vec::new(),
            }
        }
        "cosmos" => {
            // The Cosmos SDK sends every request after its first to the endpoint the
            // account advertises (the emulator's own address), so a proxy in the
            // connection string would be bypassed. The holder's requests go through the
            // proxy as an HTTP proxy instead (the Cosmos driver honours HTTP_PROXY when
            // allowed to), with the same connection string as everyone else.
            let endpoint = b
                .spec
                .split(';')
                .find_map(|p| p.strip_prefix("AccountEndpoint="))
                .unwrap();
            let p = proxy(endpoint.trim_start_matches("http://").trim_end_matches('/')).await;
            let via = format!("http://{}", p.addr());
            Route {
                spec: b.spec.clone(),
                env: vec![
                    (
                        "AZURE_COSMOS_CONNECTION_POOL_IS_PROXY_ALLOWED",
                        "true".into(),
                    ),
                    ("HTTP_PROXY", via.clone()),
                    ("http_proxy", via),
                ],
                proxies: vec![p],
            }
        }
        other => panic!("no route for {other}"),
    }
}

/// A network cut between `leasing` and the backend: the command is stopped at the safety
/// deadline (SIGTERM ignored, so SIGKILL), before a contender that reaches the backend
/// directly can start. Over several trials, prints loss-to-death next to the validity
/// left.
fn a_network_cut_stops_the_command_before_the_next_holder_starts(b: &Backend) {
    let trials = if b.label == "blob" { 1 } else { trials() };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let route = rt.block_on(route(b));
    let mut deaths = Vec::new();
    let mut with_left = Vec::new();
    for trial in 0..trials {
        route.restore();
        let n = name(&format!("cut{trial}"));
        let log = temp("cut");
        let before = route.accepted();
        // Every other trial with --verbose, which reports each failed renewal.
        let verbose = trial % 2 == 0;
        let mut c = route.command();
        if verbose {
            c.arg("--verbose");
        }
        c.args(["exec", "--duration", b.duration, &n, "--"])
            .args(stubborn_writer(&log, "holder"))
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut holder = c.spawn().unwrap();
        wait_for_line(&log, "alive", &mut holder);
        assert!(
            route.accepted() > before,
            "trial {trial}: the holder does not go through the proxy"
        );
        let left = backend_time_left(b, &n);
        let cut_at = now_ns();
        route.partition();
        run_next_holder(b, b.duration, &n, &log);
        let status = wait(&mut holder);
        let mut err = String::new();
        std::io::Read::read_to_string(holder.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(76), "trial {trial}: {err}");
        assert!(err.contains("the command was stopped"), "{err}");
        assert_eq!(err.contains("leasing: acquired "), verbose, "{err}");
        if !verbose {
            assert!(
                !err.contains("renewal failed"),
                "quiet without --verbose: {err}"
            );
        }
        let (last_alive, next) = alive_before_next(
            &log,
            &format!("trial {trial}: the cut-off holder's command outlived its lease"),
        );
        assert_command_dead(&log, &format!("trial {trial}: the command must be dead"));
        deaths.push((
            (last_alive - cut_at) as f64 / 1e6,
            (next - last_alive) as f64 / 1e6,
        ));
        with_left.push(((last_alive - cut_at) as f64 / 1e6, left));
    }
    report(b.label, "network cut", &mut with_left);
    let mut to_death: Vec<f64> = deaths.iter().map(|d| d.0).collect();
    let mut margin: Vec<f64> = deaths.iter().map(|d| d.1).collect();
    to_death.sort_by(f64::total_cmp);
    margin.sort_by(f64::total_cmp);
    println!(
        "{}: network cut over {trials} trials: cut to death p50 {:.0} ms max {:.0} ms; death to the next holder's start min {:.0} ms p50 {:.0} ms",
        b.label,
        to_death[to_death.len() / 2],
        to_death[to_death.len() - 1],
        margin[0],
        margin[margin.len() / 2]
    );
}

fn trials() -> usize {
    std::env::var("LEASING_CLI_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2)
}

/// Signals reach the command; SIGTERM kills it (128 + 15); a second SIGINT kills its group.
#[test]
fn signals_are_forwarded_and_a_second_interrupt_kills() {
    let Some(b) = backend("redis") else { return };
    let log = temp("signals");
    let script = format!(
        "trap 'echo usr1 >> {l}' USR1; trap 'echo int >> {l}' INT; echo ready >> {l}; while true; do sleep 0.02; done",
        l = log.display()
    );
    let mut c = leasing(&b);
    c.args(["exec", &name("sig"), "--", "sh", "-c", &script])
        .stdin(Stdio::null());
    let mut h = c.spawn().unwrap();
    wait_for_line(&log, "ready", &mut h);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(h.id()).unwrap());
    use nix::sys::signal::{kill, Signal};
    kill(pid, Signal::SIGUSR1).unwrap();
    wait_for_line(&log, "usr1", &mut h);
    kill(pid, Signal::SIGINT).unwrap();
    wait_for_line(&log, "int", &mut h);
    kill(pid, Signal::SIGINT).unwrap();
    assert_eq!(
        wait(&mut h).code(),
        Some(137),
        "the second SIGINT is SIGKILL to the group"
    );

    // SIGTERM: the command's default action, passed through as 128 + 15.
    let log = temp("term");
    let mut c = leasing(&b);
    c.args(["exec", &name("term"), "--", "sh", "-c"])
        .arg(format!(
            "echo ready >> {}; while true; do sleep 0.02; done",
            log.display()
        ))
        .stdin(Stdio::null());
    let mut h = c.spawn().unwrap();
    wait_for_line(&log, "ready", &mut h);
    kill(
        nix::unistd::Pid::from_raw(i32::try_from(h.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(wait(&mut h).code(), Some(143));
}

/// Exit codes of `exec`: held (75), interrupted while waiting (130), command not found
/// (127), not executable (126).
#[test]
fn exit_codes() {
    let Some(b) = backend("redis") else { return };
    let n = name("codes");
    let log = temp("codes");
    let mut c = leasing(&b);
    c.args(["exec", &n, "--", "sh", "-c"])
        .arg(format!("echo ready >> {}; sleep 60", log.display()))
        .stdin(Stdio::null());
    let mut holder = c.spawn().unwrap();
    wait_for_line(&log, "ready", &mut holder);
    let mut c = leasing(&b);
    c.args(["exec", &n, "--", "true"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("was not acquired"),
        "{}",
        text(&o)
    );
    // Waiting, then SIGINT: stops at once with 130.
    let mut c = leasing(&b);
    c.args(["exec", "--wait", "infinite", &n, "--", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let mut waiter = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(waiter.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(wait(&mut waiter).code(), Some(130));
    holder.kill().unwrap();
    let _ = holder.wait();

    let mut c = leasing(&b);
    c.args(["exec", &name("nf"), "--", "/nonexistent/command"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot run /nonexistent/command"));
    let mut c = leasing(&b);
    c.args(["exec", &name("nx"), "--", "/etc/hostname"]);
    assert_eq!(run(c).status.code(), Some(126));
}

/// Runs the next holder of `n` (waiting for the lease), which logs `next next <ns>` the
/// moment its command starts.
fn run_next_holder(b: &Backend, duration: &str, n: &str, log: &std::path::Path) {
    let mut c = leasing(b);
    c.args(["exec", "--wait", "5m", "--duration", duration, n, "--"])
        .args([
            "sh",
            "-c",
            &format!("echo \"next next $(date +%s%N)\" >> {}", log.display()),
        ]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
}

/// A local failure after the lease is held (here: no directory for the supervisor's
/// socket) is one line, exit code 69; the command never runs and the lease is released.
#[test]
fn a_local_failure_is_one_line_and_the_lease_is_released() {
    let run_in_missing_tmp = |mut c: std::process::Command, n: &str, marker: &std::path::Path| {
        c.env("TMPDIR", "/nonexistent/leasing-tmp")
            .args(["exec", n, "--", "sh", "-c"])
            .arg(format!("echo ran > {}", marker.display()));
        let o = run(c);
        assert_eq!(o.status.code(), Some(69), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.trim_end(),
            "leasing: exec: creating a private directory in /nonexistent/leasing-tmp: No such file or directory (os error 2)",
            "{}",
            text(&o)
        );
        assert!(!marker.exists(), "the command must not run");
    };
    let mut c = bare();
    c.args(["--backend", "memory"]);
    run_in_missing_tmp(c, "x", &temp("marker"));
    let Some(b) = backend("redis") else { return };
    let n = name("tmpdir");
    run_in_missing_tmp(leasing(&b), &n, &temp("marker"));
    let mut c = leasing(&b);
    c.args(["status", &n]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "released: {}", text(&o));
}

/// `--grace 0s`: a lost lease's command gets SIGKILL at once, never SIGTERM; with a
/// grace it gets SIGTERM first.
#[test]
fn a_zero_grace_kills_at_once_and_a_grace_sends_sigterm_first() {
    let Some(b) = backend("redis") else { return };
    for (grace, expect_term) in [("0s", false), ("1s", true)] {
        let n = name("grace");
        let log = temp("grace");
        let mut c = leasing(&b);
        c.args([
            "exec",
            "--duration",
            "3s",
            "--grace",
            grace,
            &n,
            "--",
            "sh",
            "-c",
        ])
        .arg(format!(
            "trap 'echo term >> {l}' TERM; echo ready >> {l}; while true; do sleep 0.02; done",
            l = log.display()
        ))
        .stdin(Stdio::null());
        let mut h = c.spawn().unwrap();
        wait_for_line(&log, "ready", &mut h);
        let mut c = leasing(&b);
        c.args(["break", "--yes", &n]);
        assert!(run(c).status.success());
        assert_eq!(wait(&mut h).code(), Some(76), "--grace {grace}");
        let got_term = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .any(|l| l == "term");
        assert_eq!(got_term, expect_term, "--grace {grace}");
        assert_command_dead(&log, &format!("--grace {grace}: the command must be dead"));
    }
}

/// The command exits while the backend cannot be reached: its exit code is kept, and the
/// failed release is reported (the backend expires the lease).
#[test]
fn a_failed_release_is_reported_and_the_command_code_kept() {
    let Some(b) = backend("redis") else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let route = rt.block_on(route(&b));
    let n = name("release");
    let log = temp("release");
    let flag = temp("flag");
    let mut c = route.command();
    c.args(["exec", "--duration", "30s", &n, "--", "sh", "-c"])
        .arg(format!(
            "echo ready >> {}; while [ ! -e {f} ]; do sleep 0.02; done; exit 5",
            log.display(),
            f = flag.display()
        ))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let mut h = c.spawn().unwrap();
    wait_for_line(&log, "ready", &mut h);
    route.cut();
    std::fs::write(&flag, b"").unwrap();
    let status = wait(&mut h);
    let mut err = String::new();
    std::io::Read::read_to_string(h.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains(&format!("leasing: releasing {n}: ")), "{err}");
    assert!(err.contains("(the backend expires it)"), "{err}");
    // Still held on the backend until it expires.
    let mut c = leasing(&b);
    c.args(["status", "--json", &n]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], n.as_str(), "{v}");
    assert!(v["fencing_token"].is_u64(), "{v}");
    let mut c = leasing(&b);
    c.args(["break", "--yes", &n]);
    assert!(run(c).status.success());
}

/// A SIGTERM that arrives just after the lease is acquired, before the command's group is
/// known, is not lost: it reaches the command as soon as it runs.
#[test]
fn a_sigterm_while_the_command_starts_reaches_it() {
    use std::io::BufRead;
    for _ in 0..3 {
        let mut c = bare();
        c.args(["--backend", "memory", "--verbose", "exec", "x", "--"])
            .args(["sh", "-c", "sleep 30; exit 0"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut h = c.spawn().unwrap();
        let mut err = std::io::BufReader::new(h.stderr.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("leasing: acquired") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "no `acquired` line");
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(h.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert_eq!(
            wait(&mut h).code(),
            Some(143),
            "SIGTERM reached the command"
        );
    }
}

/// The supervisor killed: `leasing` kills the command's group at once and passes the
/// supervisor's death on (128 + 9).
#[test]
fn killing_the_supervisor_kills_the_command() {
    let log = temp("sup");
    let mut c = bare();
    c.args(["--backend", "memory", "exec", "x", "--"])
        .args(stubborn_writer(&log, "holder"))
        .stdin(Stdio::null());
    let mut h = c.spawn().unwrap();
    wait_for_line(&log, "alive", &mut h);
    let supervisor = children_of(h.id())
        .into_iter()
        .find(|(_, cmdline)| cmdline.contains("__supervise"))
        .expect("the supervisor")
        .0;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(supervisor).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(wait(&mut h).code(), Some(137));
    // SIGKILL was sent to the group before `leasing` exited; its delivery is the kernel's.
    let started = std::time::Instant::now();
    while running(&log.display().to_string()) {
        // A generous bound: a wedged test must still end.
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the command outlived the supervisor and leasing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(pid, command line)` of the children of `pid`.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // pid (comm) state ppid …: the comm may hold spaces, so read after the ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            (ppid == pid).then(|| (p, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

/// A Ctrl-C on a terminal reaches `leasing` and its supervisor (they share a process
/// group): the supervisor ignores it, `leasing` forwards it, so the command (in a group
/// of its own) gets exactly one SIGINT and its exit code is passed on.
#[test]
fn an_interrupt_to_the_whole_group_reaches_the_command_once() {
    use std::os::unix::process::CommandExt;
    let log = temp("ctrlc");
    let mut c = bare();
    c.args(["--backend", "memory", "exec", "x", "--", "sh", "-c"])
        .arg(format!(
            "trap 'echo int >> {l}; exit 3' INT; echo ready >> {l}; while true; do sleep 0.02; done",
            l = log.display()
        ))
        .stdin(Stdio::null())
        .process_group(0);
    let mut h = c.spawn().unwrap();
    wait_for_line(&log, "ready", &mut h);
    let group = nix::unistd::Pid::from_raw(i32::try_from(h.id()).unwrap());
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(wait(&mut h).code(), Some(3), "the command's own exit");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.lines().filter(|l| *l == "int").count(), 1, "{log}");
}

/// `--on-lost` that cannot be started is reported; `leasing` still exits 76.
#[test]
fn an_on_lost_command_that_cannot_start_is_reported() {
    let Some(b) = backend("redis") else { return };
    let n = name("onlost");
    let log = temp("onlost");
    let mut c = leasing(&b);
    // No `sh` on this PATH: the command is started by its full path.
    c.env("PATH", "/nonexistent")
        .args([
            "exec",
            "--duration",
            "3s",
            "--on-lost",
            "echo lost",
            &n,
            "--",
        ])
        .args(["/bin/sh", "-c"])
        .arg(format!(
            "echo ready >> {l}; exec /bin/sleep 600",
            l = log.display()
        ))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let mut h = c.spawn().unwrap();
    wait_for_line(&log, "ready", &mut h);
    let mut c = leasing(&b);
    c.args(["break", "--yes", &n]);
    assert!(run(c).status.success());
    let status = wait(&mut h);
    let mut err = String::new();
    std::io::Read::read_to_string(h.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(76), "{err}");
    assert!(err.contains("the command was stopped"), "{err}");
    assert!(err.contains("leasing: --on-lost: "), "{err}");
}

/// The hidden supervisor, started by hand without a `leasing` to talk to: one line, 69,
/// and the command is not run.
#[test]
fn a_supervisor_without_leasing_runs_nothing() {
    let marker = temp("sup-marker");
    let mut c = bare();
    c.args([
        "__supervise",
        "--socket",
        "/nonexistent/s",
        "--grace-ms",
        "10",
        "--",
    ])
    .args(["sh", "-c"])
    .arg(format!("echo ran > {}", marker.display()));
    let o = run(c);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .starts_with("leasing: supervisor cannot reach leasing: "),
        "{}",
        text(&o)
    );
    assert!(!marker.exists());
}
