//! The faults the runner injects: what a schedule draws from, and how each is aimed at a
//! holder, a server or the network.

use crate::backend::{self, Slot};
use crate::client::CLIENT_KEY;
use crate::fleet::{Fleet, Run};
use crate::opts::RunOpts;
use leasing_abstractions::LeaseProvider;
use leasing_testkit::history::{mono_ns, Op, Record};
use nix::sys::signal::{kill, Signal};
use std::sync::Arc;
use std::time::Duration;

/// The faults a schedule draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// SIGKILL a server and start it again with its data (append-only file, fsync always).
    RestartPersistent,
    /// SIGKILL a server and start it again without its data.
    RestartWiped,
    /// SIGKILL a majority of the servers at once and start them without their data
    /// (only with `--faults`: no quorum system survives it without a restart fence).
    RestartWipedMajority,
    /// Stop a server for 1.5 lease durations, then start it with its data.
    ServerDown,
    /// Cut the network to a server (every connection closed, new ones refused).
    NetworkCut,
    /// Add latency to every packet to a server.
    Latency,
    /// SIGSTOP the current holder of a name for 1.5 lease durations, then SIGCONT.
    PauseHolder,
    /// SIGKILL the current holder of a name (a new client takes its place).
    KillHolder,
}

impl Fault {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Fault::RestartPersistent => "server_restart_persistent",
            Fault::RestartWiped => "server_restart_wiped",
            Fault::RestartWipedMajority => "majority_restart_wiped",
            Fault::ServerDown => "server_down",
            Fault::NetworkCut => "network_cut",
            Fault::Latency => "latency",
            Fault::PauseHolder => "pause_holder",
            Fault::KillHolder => "kill_holder",
        }
    }
}

pub(crate) const ALL_FAULTS: [Fault; 8] = [
    Fault::RestartPersistent,
    Fault::RestartWiped,
    Fault::RestartWipedMajority,
    Fault::ServerDown,
    Fault::NetworkCut,
    Fault::Latency,
    Fault::PauseHolder,
    Fault::KillHolder,
];

pub(crate) fn schedule_for(backend: &str, o: &RunOpts) -> Result<Vec<Fault>, String> {
    let all = default_schedule(backend, o);
    let Some(only) = &o.faults else {
        return Ok(all);
    };
    for f in only {
        if !ALL_FAULTS.iter().any(|k| k.label() == f) {
            return Err(format!("unknown fault {f:?}"));
        }
    }
    let mut v: Vec<Fault> = all
        .into_iter()
        .filter(|k| only.iter().any(|f| f == k.label()))
        .collect();
    // Opt-in only: a restart of a server that keeps nothing across one (the Cosmos
    // emulator; the real service keeps its documents).
    if backend::restarts_lose_data(backend) && only.iter().any(|f| f == Fault::RestartWiped.label())
    {
        v.push(Fault::RestartWiped);
    }
    // Opt-in only: a majority of a quorum backend's servers losing their data.
    if backend == "redlock"
        && only
            .iter()
            .any(|f| f == Fault::RestartWipedMajority.label())
    {
        v.push(Fault::RestartWipedMajority);
    }
    if v.is_empty() {
        return Err(format!("none of --faults applies to {backend}"));
    }
    Ok(v)
}

pub(crate) fn default_schedule(backend: &str, o: &RunOpts) -> Vec<Fault> {
    if backend == "redis-cluster" {
        // No network faults (clients reach the nodes directly, see backend::start) and no
        // restarts without data (a node's cluster membership is in its data folder).
        return vec![
            Fault::PauseHolder,
            Fault::RestartPersistent,
            Fault::KillHolder,
            Fault::ServerDown,
        ];
    }
    let mut v = vec![
        Fault::PauseHolder,
        Fault::NetworkCut,
        Fault::KillHolder,
        Fault::Latency,
    ];
    match backend {
        b if backend::in_process(b) => {}
        "redlock" => {
            v.push(Fault::ServerDown);
            v.push(Fault::RestartPersistent);
            if o.wipe {
                v.push(Fault::RestartWiped);
            }
        }
        b if backend::restarts_lose_data(b) => {}
        _ => {
            v.push(Fault::RestartPersistent);
            if o.wipe {
                v.push(Fault::RestartWiped);
            }
        }
    }
    v
}

impl Run {
    /// The client holding some name now (names tried in random order), with the name.
    pub(crate) async fn find_holder(&mut self) -> Option<(String, String)> {
        let inspector: Arc<dyn LeaseProvider> = match &self.fleet {
            Fleet::Threads { shared, .. } => Arc::new(shared.clone()),
            Fleet::Processes { target, .. } => Arc::clone(&target.inspector),
        };
        let mut names = self.o.recipe.lease_names(&self.names);
        self.rng.shuffle(&mut names);
        for name in names {
            let Ok(Ok(Some(info))) =
                tokio::time::timeout(Duration::from_secs(1), inspector.inspect(&name)).await
            else {
                continue;
            };
            if let Some(id) = info.metadata.get(CLIENT_KEY) {
                let alive = match &self.fleet {
                    Fleet::Threads { clients, .. } => clients.iter().any(|c| &c.id == id),
                    Fleet::Processes { clients, .. } => clients.iter().any(|c| &c.id == id),
                };
                if alive {
                    return Some((id.clone(), name));
                }
            }
        }
        None
    }

    /// A random server of the backend, `None` for the in-memory one.
    pub(crate) fn slot(&mut self) -> Option<&Slot> {
        let Fleet::Processes { target, .. } = &self.fleet else {
            return None;
        };
        if target.slots.is_empty() {
            return None;
        }
        target.slots.get(self.rng.usize(..target.slots.len()))
    }

    /// Injects `fault`; returns the record, or `None` if it did not apply (no holder).
    pub(crate) async fn inject(
        &mut self,
        fault: Fault,
        long: bool,
    ) -> Result<Option<Record>, String> {
        let lease = self.o.lease;
        let span = if long {
            one_and_a_half(lease)
        } else {
            lease / 4
        };
        let start = mono_ns();
        let mut target_client = "*".to_owned();
        let mut name = String::new();
        let mut detail = String::new();
        match fault {
            Fault::PauseHolder => {
                let Some((id, n)) = self.find_holder().await else {
                    return Ok(None);
                };
                let d = one_and_a_half(lease);
                detail = format!("stopped {} ms", d.as_millis());
                match &mut self.fleet {
                    Fleet::Threads { clients, .. } => {
                        if let Some(c) = clients.iter().find(|c| c.id == id) {
                            let _ = c.pause.send(d);
                        }
                        tokio::time::sleep(d).await;
                    }
                    Fleet::Processes { clients, .. } => {
                        let Some(pid) = clients.iter().find(|c| c.id == id).and_then(|c| c.pid())
                        else {
                            return Ok(None);
                        };
                        let s = mono_ns();
                        let _ = kill(pid, Signal::SIGSTOP);
                        tokio::time::sleep(d).await;
                        let _ = kill(pid, Signal::SIGCONT);
                        self.rec
                            .record(Record::new(&id, "", s, mono_ns(), Op::Paused));
                    }
                }
                (target_client, name) = (id, n);
            }
            Fault::KillHolder => {
                let Some((id, n)) = self.find_holder().await else {
                    return Ok(None);
                };
                match &mut self.fleet {
                    Fleet::Threads { clients, .. } => {
                        if let Some(i) = clients.iter().position(|c| c.id == id) {
                            let mut c = clients.swap_remove(i);
                            // Nothing it sends reaches the backend any more: no release.
                            c.control.set_partitioned(true);
                            c.kill.cancel();
                            let now = mono_ns();
                            self.rec.record(Record::new(&id, "", now, now, Op::Killed));
                            if let Some(j) = c.join.take() {
                                let _ = tokio::task::spawn_blocking(move || j.join()).await;
                            }
                        }
                    }
                    Fleet::Processes { clients, .. } => {
                        if let Some(i) = clients.iter().position(|c| c.id == id) {
                            let mut c = clients.swap_remove(i);
                            let _ = c.child.start_kill();
                            let now = mono_ns();
                            self.rec.record(Record::new(&id, "", now, now, Op::Killed));
                            let _ = c.child.wait().await;
                        }
                    }
                }
                self.spawn_client().await?;
                (target_client, name) = (id, n);
            }
            Fault::NetworkCut | Fault::Latency => {
                let cut = fault == Fault::NetworkCut;
                let d = if cut { span } else { lease * 2 };
                let latency = Duration::from_millis(if long { 300 } else { 100 });
                detail = if cut {
                    format!("{} ms", d.as_millis())
                } else {
                    format!("{} ms for {} ms", latency.as_millis(), d.as_millis())
                };
                if let Fleet::Threads {
                    clients,
                    latency: l,
                    cut: c,
                    ..
                } = &mut self.fleet
                {
                    if cut {
                        *c = true;
                    } else {
                        *l = latency;
                    }
                    for cl in clients.iter() {
                        if cut {
                            cl.control.set_partitioned(true);
                        } else {
                            cl.control.set_latency(latency);
                        }
                    }
                    tokio::time::sleep(d).await;
                    *c = false;
                    *l = Duration::ZERO;
                    for cl in clients.iter() {
                        cl.control.set_partitioned(false);
                        cl.control.set_latency(Duration::ZERO);
                    }
                } else if let Some(slot) = self.slot() {
                    if cut {
                        slot.proxy.cut();
                    } else {
                        slot.proxy.set_latency(latency);
                    }
                    detail = format!("{detail} to {}", slot.proxy.target());
                    tokio::time::sleep(d).await;
                    slot.proxy.restore();
                    slot.proxy.set_latency(Duration::ZERO);
                }
            }
            Fault::RestartWipedMajority => {
                let Fleet::Processes { target, .. } = &self.fleet else {
                    return Ok(None);
                };
                let n = target.slots.len() / 2 + 1;
                let servers: Vec<_> = target.slots[..n]
                    .iter()
                    .map(|s| Arc::clone(&s.server))
                    .collect();
                detail = format!("{n} of {}", target.slots.len());
                tokio::task::spawn_blocking(move || {
                    let mut locked: Vec<_> = servers
                        .iter()
                        .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
                        .collect();
                    for s in &mut locked {
                        s.kill();
                    }
                    locked.iter_mut().try_for_each(|s| s.start(true))
                })
                .await
                .map_err(|e| e.to_string())??;
            }
            Fault::RestartPersistent | Fault::RestartWiped | Fault::ServerDown => {
                let Some(slot) = self.slot() else {
                    return Ok(None);
                };
                let server = Arc::clone(&slot.server);
                let wipe = fault == Fault::RestartWiped;
                let down = if fault == Fault::ServerDown {
                    one_and_a_half(lease)
                } else {
                    Duration::ZERO
                };
                detail = format!(
                    "{}{}",
                    slot.proxy.target(),
                    if down.is_zero() {
                        String::new()
                    } else {
                        format!(" down {} ms", down.as_millis())
                    }
                );
                tokio::task::spawn_blocking(move || {
                    let mut s = server.lock().unwrap_or_else(|p| p.into_inner());
                    s.kill();
                    std::thread::sleep(down);
                    s.start(wipe)
                })
                .await
                .map_err(|e| e.to_string())??;
            }
        }
        Ok(Some(
            Record::new(
                target_client,
                name,
                start,
                mono_ns(),
                Op::Fault {
                    kind: fault.label().into(),
                },
            )
            .with_detail(detail),
        ))
    }
}

/// 1.5 × `d`, saturating (a `--lease` near `Duration::MAX` must not panic the runner).
fn one_and_a_half(d: Duration) -> Duration {
    d.saturating_mul(3) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &str) -> RunOpts {
        let a: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        RunOpts::parse(&a).unwrap()
    }

    #[test]
    fn schedules_follow_the_backend_and_the_options() {
        let o = opts("");
        let mem = schedule_for("memory", &o).unwrap();
        assert!(!mem.contains(&Fault::RestartWiped) && mem.contains(&Fault::PauseHolder));
        assert!(schedule_for("redis", &o)
            .unwrap()
            .contains(&Fault::RestartWiped));
        assert!(!schedule_for("redis", &opts("--no-wipe"))
            .unwrap()
            .contains(&Fault::RestartWiped));
        assert!(schedule_for("redlock", &o)
            .unwrap()
            .contains(&Fault::ServerDown));
        let only = schedule_for("redis", &opts("--faults server_restart_wiped,pause_holder"));
        assert_eq!(only.unwrap(), vec![Fault::PauseHolder, Fault::RestartWiped]);
        assert!(schedule_for("redis", &opts("--faults nope")).is_err());
        assert!(schedule_for("memory", &opts("--faults server_down")).is_err());
        let majority = schedule_for("redlock", &opts("--faults majority_restart_wiped"));
        assert_eq!(majority.unwrap(), vec![Fault::RestartWipedMajority]);
        assert!(!schedule_for("redlock", &o)
            .unwrap()
            .contains(&Fault::RestartWipedMajority));
        let cosmos = schedule_for("cosmos", &o).unwrap();
        assert!(cosmos.contains(&Fault::NetworkCut) && cosmos.contains(&Fault::KillHolder));
        assert!(
            !cosmos.contains(&Fault::RestartPersistent) && !cosmos.contains(&Fault::RestartWiped)
        );
        let wiped = schedule_for("cosmos", &opts("--faults server_restart_wiped"));
        assert_eq!(wiped.unwrap(), vec![Fault::RestartWiped]);
        assert!(schedule_for("cosmos", &opts("--faults server_restart_persistent")).is_err());
        let cluster = schedule_for("redis-cluster", &o).unwrap();
        assert!(
            cluster.contains(&Fault::RestartPersistent) && cluster.contains(&Fault::ServerDown)
        );
        assert!(!cluster.contains(&Fault::NetworkCut) && !cluster.contains(&Fault::RestartWiped));
        for f in ALL_FAULTS {
            assert!(!f.label().is_empty());
        }
    }

    #[test]
    fn long_faults_last_one_and_a_half_leases_without_overflowing() {
        assert_eq!(
            one_and_a_half(Duration::from_secs(2)),
            Duration::from_secs(3)
        );
        assert_eq!(one_and_a_half(Duration::MAX), Duration::MAX / 2);
    }
}
