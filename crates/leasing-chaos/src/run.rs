//! The runner: start the backend and the clients, inject faults on a schedule, collect
//! the history, check it, print the summary.

use crate::backend;
use crate::client::{self, ClientCfg, Fence};
use crate::opts::{ClientOpts, RunOpts};
use leasing_abstractions::fault::FaultInjectingProvider;
use leasing_abstractions::{InMemoryLeaseProvider, LeaseProvider};
use leasing_testkit::checker::{check, Report, ViolationKind};
use leasing_testkit::fenced::{FencedResource, FencedServer};
use leasing_testkit::history::{mono_ns, read_histories, write_history, Op, Record, Recorder};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::faults::schedule_for;
use crate::fleet::{ns, Fleet, ProcClient, Run, ThreadClient};

impl Run {
    pub(crate) fn client_cfg(&mut self, id: &str) -> ClientCfg {
        ClientCfg {
            id: id.to_owned(),
            names: self.names.clone(),
            lease: self.o.lease,
            until_ns: self.until_ns,
            seed: self.rng.u64(..),
            recipe: self.o.recipe,
        }
    }

    /// Starts one more client (a replacement after a kill, or at start-up).
    pub(crate) async fn spawn_client(&mut self) -> Result<(), String> {
        let id = format!("c{}", self.next_client);
        self.next_client += 1;
        let cfg = self.client_cfg(&id);
        let rec = self.rec.clone();
        let (backend, dir, lease, until, ordinal) = (
            self.backend.clone(),
            self.dir.clone(),
            self.o.lease,
            self.until_ns,
            self.next_client,
        );
        match &mut self.fleet {
            Fleet::Threads {
                stealing,
                shared,
                fence,
                clients,
                latency,
                cut,
            } => {
                let inner: Arc<dyn LeaseProvider> = if *stealing {
                    Arc::new(backend::Stealing(shared.clone()))
                } else {
                    Arc::new(shared.clone())
                };
                let faulty = FaultInjectingProvider::new(inner);
                let control = faulty.control();
                control.set_latency(*latency);
                control.set_partitioned(*cut);
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
                let kill = CancellationToken::new();
                let (k2, fence, id2) = (kill.clone(), fence.clone(), id.clone());
                let join = std::thread::Builder::new()
                    .name(id.clone())
                    .spawn(move || {
                        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        else {
                            eprintln!("{id2}: no runtime");
                            return;
                        };
                        rt.block_on(async move {
                            let r2 = rec.clone();
                            // A pause blocks this client's only thread: its work and its
                            // lease renewals stop together, as under SIGSTOP.
                            tokio::spawn(async move {
                                while let Some(d) = rx.recv().await {
                                    let s = mono_ns();
                                    std::thread::sleep(d);
                                    r2.record(Record::new(&id2, "", s, mono_ns(), Op::Paused));
                                }
                            });
                            match client::manager(Arc::new(faulty), &cfg) {
                                Ok(m) => {
                                    client::client_loop(cfg, m, rec, Fence::Local(fence), k2).await
                                }
                                Err(e) => eprintln!("{e}"),
                            }
                        });
                    })
                    .map_err(|e| format!("thread: {e}"))?;
                clients.push(ThreadClient {
                    id,
                    control,
                    pause: tx,
                    kill,
                    join: Some(join),
                });
            }
            Fleet::Processes {
                target,
                fence,
                clients,
                skew,
            } => {
                let co = ClientOpts {
                    backend,
                    spec: target.spec.clone(),
                    id: id.clone(),
                    names: cfg.names.clone(),
                    lease,
                    until_ns: until,
                    history: dir.join(format!("client-{id}.jsonl")),
                    fence: fence.addr(),
                    seed: cfg.seed,
                    restart_fence: if self.o.restart_fence {
                        lease
                    } else {
                        Duration::ZERO
                    },
                    recipe: self.o.recipe,
                };
                let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
                let mut cmd = tokio::process::Command::new(exe);
                cmd.args(co.to_args()).kill_on_drop(true);
                // The first two clients' wall clocks are 30 s ahead and 30 s behind.
                let offset = match (skew.as_ref(), ordinal) {
                    (Some(_), 1) => Some("+30s"),
                    (Some(_), 2) => Some("-30s"),
                    _ => None,
                };
                if let (Some(lib), Some(off)) = (skew.as_ref(), offset) {
                    cmd.env("LD_PRELOAD", lib)
                        .env("FAKETIME", off)
                        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                    let now = mono_ns();
                    self.rec.record(
                        Record::new(
                            &id,
                            "",
                            now,
                            now,
                            Op::Fault {
                                kind: "clock_skew".into(),
                            },
                        )
                        .with_detail(format!("wall clock {off}")),
                    );
                }
                let child = cmd.spawn().map_err(|e| format!("spawn client: {e}"))?;
                clients.push(ProcClient { id, child });
            }
        }
        Ok(())
    }

    /// Waits for every client to finish (a straggler is killed after a grace period).
    pub(crate) async fn finish(&mut self) {
        let grace = self.until_ns + ns(self.o.lease * 6) + 5_000_000_000;
        match &mut self.fleet {
            Fleet::Threads { clients, .. } => {
                for mut c in clients.drain(..) {
                    if mono_ns() > grace {
                        c.kill.cancel();
                    }
                    if let Some(j) = c.join.take() {
                        let k = c.kill.clone();
                        let wait = tokio::task::spawn_blocking(move || j.join());
                        let left = Duration::from_nanos(grace.saturating_sub(mono_ns()));
                        if tokio::time::timeout(left, wait).await.is_err() {
                            k.cancel();
                        }
                    }
                }
            }
            Fleet::Processes { clients, .. } => {
                for mut c in clients.drain(..) {
                    let left = Duration::from_nanos(grace.saturating_sub(mono_ns()));
                    if tokio::time::timeout(left, c.child.wait()).await.is_err() {
                        eprintln!("client {} did not stop in time: killed", c.id);
                        let _ = c.child.start_kill();
                        let now = mono_ns();
                        self.rec
                            .record(Record::new(&c.id, "", now, now, Op::Killed));
                        let _ = c.child.wait().await;
                    }
                }
            }
        }
    }
}

/// libfaketime, installed with apt-get when missing (like scripts/redis-up.sh does for
/// redis-server); `None` if it cannot be had.
fn faketime_lib() -> Option<PathBuf> {
    let find = || {
        [
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/faketime/libfaketime.so.1",
            "/usr/local/lib/faketime/libfaketime.so.1",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return Some(p);
    }
    eprintln!("leasing-chaos: installing faketime with apt-get");
    let sudo = !nix::unistd::geteuid().is_root();
    let apt = |args: &[&str]| {
        let mut c = if sudo {
            let mut c = std::process::Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            std::process::Command::new("apt-get")
        };
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-qq", "faketime"]) {
        apt(&["update", "-qq"]);
        apt(&["install", "-y", "-qq", "faketime"]);
    }
    find()
}

/// `leasing-chaos run`.
pub(crate) fn main(o: RunOpts) -> Result<u8, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut rows = Vec::new();
    let mut violations = 0;
    for b in o.backends.clone() {
        let report = rt.block_on(run_backend(&b, &o))?;
        violations += report.violations.len();
        rows.push((b, report));
    }
    println!("\n{}", table(&rows));
    if violations > 0 && !o.warn_only {
        return Ok(1);
    }
    Ok(0)
}

async fn run_backend(backend: &str, o: &RunOpts) -> Result<Report, String> {
    let o = &RunOpts {
        lease: backend::lease_for(backend, o.lease),
        ..o.clone()
    };
    let schedule = schedule_for(backend, o)?;
    let dir = o.out.join(backend);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| e.to_string())?;
    println!(
        "==> chaos {backend} ({}): {} clients, {} names, lease {} ms, {} s, faults every {} ms, seed {}",
        o.recipe.arg(),
        o.clients,
        o.names,
        o.lease.as_millis(),
        o.duration.as_secs(),
        o.fault_every.as_millis(),
        o.seed
    );
    let rec = Recorder::to_file(dir.join("runner.jsonl")).map_err(|e| e.to_string())?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let names: Vec<String> = (0..o.names)
        .map(|i| format!("chaos-{}-{i}", &run_id[..8]))
        .collect();
    let fleet = if backend::in_process(backend) {
        Fleet::Threads {
            stealing: backend == "memory-unsafe",
            shared: InMemoryLeaseProvider::new(),
            fence: FencedResource::new(),
            clients: Vec::new(),
            latency: Duration::ZERO,
            cut: false,
        }
    } else {
        let target = backend::start(backend, &dir, o.lease).await?;
        let skew = if o.skew { faketime_lib() } else { None };
        if o.skew && skew.is_none() {
            eprintln!("leasing-chaos: libfaketime not available: no clock-skewed clients");
        }
        Fleet::Processes {
            target,
            fence: FencedServer::start().await.map_err(|e| e.to_string())?,
            clients: Vec::new(),
            skew,
        }
    };
    let start_ns = mono_ns();
    let until_ns = start_ns + ns(o.duration);
    let mut run = Run {
        backend: backend.to_owned(),
        o: o.clone(),
        dir: dir.clone(),
        names,
        until_ns,
        rec: rec.clone(),
        rng: fastrand::Rng::with_seed(o.seed),
        next_client: 0,
        fleet,
    };
    for _ in 0..o.clients {
        run.spawn_client().await?;
    }
    let mut i = 0usize;
    let margin = ns(o.lease * 2);
    loop {
        tokio::time::sleep(o.fault_every.mul_f64(0.5 + run.rng.f64())).await;
        if mono_ns() + margin >= until_ns {
            break;
        }
        let fault = schedule[i % schedule.len()];
        let long = (i / schedule.len()).is_multiple_of(2);
        i += 1;
        if let Some(r) = run.inject(fault, long).await? {
            println!(
                "  {:>7.1} s  {:<26} {} {} {}",
                (r.invoke_ns - start_ns) as f64 / 1e9,
                fault.label(),
                r.client,
                r.name,
                r.detail.as_deref().unwrap_or("")
            );
            rec.record(r);
        }
    }
    run.finish().await;
    // A server that died on its own (not by a fault) makes the run a setup error, not a
    // result: e.g. node resets SIGHUP to its default, so an emulator of a runner started
    // with nohup dies when its terminal goes (start long runs with setsid).
    if let Fleet::Processes { target, .. } = &run.fleet {
        for slot in &target.slots {
            let mut server = slot.server.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(how) = server.exited() {
                return Err(format!(
                    "{backend} server {} stopped during the run ({how}): the run is void",
                    server.addr()
                ));
            }
        }
    }
    drop(run);

    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name().is_some_and(|n| n != "history.jsonl")
        })
        .collect();
    let (history, torn) = read_histories(&files).map_err(|e| e.to_string())?;
    write_history(dir.join("history.jsonl"), &history).map_err(|e| e.to_string())?;
    let report = check(&history);
    println!(
        "history: {} records ({} torn lines of killed clients skipped) in {}",
        history.len(),
        torn,
        dir.join("history.jsonl").display()
    );
    print!("{report}");
    for kind in ["kill_holder", "pause_holder", "network_cut"] {
        if let Some(s) = crate::handoff::summary(&crate::handoff::handoffs(&history, kind)) {
            println!("next grant of the name after {kind}: {s}");
        }
    }
    for v in report.violations.iter().take(20) {
        let at = v.at_ns.saturating_sub(start_ns) as f64 / 1e9;
        let fault = history
            .iter()
            .filter(|r| matches!(r.op, Op::Fault { .. }) && r.invoke_ns <= v.at_ns)
            .max_by_key(|r| r.invoke_ns)
            .map_or_else(String::new, |r| match &r.op {
                Op::Fault { kind } => format!(
                    "; last fault before it: {kind} at {:.1} s ({})",
                    r.invoke_ns.saturating_sub(start_ns) as f64 / 1e9,
                    r.detail.as_deref().unwrap_or("")
                ),
                _ => String::new(),
            });
        println!(
            "  {} on {} at {at:.1} s into the run{fault}",
            v.kind.label(),
            v.name
        );
    }
    let _ = std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    Ok(report)
}

fn table(rows: &[(String, Report)]) -> String {
    let mut s = String::from(
        "| backend | operations | acquisitions | faults by kind | violations | losses told before the next grant | acquire p50 / p99 | longest wait, name free |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (b, r) in rows {
        let st = &r.stats;
        let faults: Vec<String> = st.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let by_kind: Vec<String> = ViolationKind::ALL
            .iter()
            .filter(|k| r.count(**k) > 0)
            .map(|k| format!("{} {}", k.label(), r.count(*k)))
            .collect();
        s += &format!(
            "| {b} | {} | {} | {} | {}{} | {}/{} = {:.0} % (+{} stopped, {} killed) | {:.0} / {:.0} ms | {:.0} ms |\n",
            st.operations,
            st.acquisitions,
            faults.join(", "),
            r.violations.len(),
            if by_kind.is_empty() { String::new() } else { format!(" ({})", by_kind.join(", ")) },
            st.takeovers_told_in_time,
            st.takeovers_running,
            st.told_in_time_percent(),
            st.takeovers_stopped,
            st.takeovers_killed,
            st.acquire_latency_percentile(50.0) as f64 / 1e6,
            st.acquire_latency_percentile(99.0) as f64 / 1e6,
            st.longest_free_wait_ns as f64 / 1e6,
        );
    }
    s
}

/// `leasing-chaos check FILE…`: checks recorded histories again.
pub(crate) fn check_files(files: &[String]) -> Result<u8, String> {
    let paths: Vec<&Path> = files.iter().map(Path::new).collect();
    let (history, torn) = read_histories(&paths).map_err(|e| e.to_string())?;
    let report = check(&history);
    println!("{} records, {torn} torn lines skipped", history.len());
    print!("{report}");
    Ok(u8::from(!report.is_clean()))
}
