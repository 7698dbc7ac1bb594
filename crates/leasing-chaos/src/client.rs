//! One competing client: acquire a random name, act under the lease (check `is_held`,
//! work a little, write to the fenced resource with the token), release or lose it,
//! again, until the run ends. Everything it does is recorded.

use crate::opts::{ClientOpts, Recipe};
use leasing_abstractions::election::{Election, Leadership};
use leasing_abstractions::semaphore::{Permit, Semaphore};
use leasing_abstractions::{
    AcquireOptions, Lease, LeaseError, LeaseManager, LeaseOptions, LeaseProvider, LeaseState,
    Metadata,
};
use leasing_testkit::fenced::{FencedClient, FencedResource};
use leasing_testkit::history::{mono_ns, Op, Record, Recorder};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Metadata key naming the holder, so the runner can find (and stop, or kill) it.
pub(crate) const CLIENT_KEY: &str = "chaos_client";

/// Where writes go.
#[derive(Debug)]
pub(crate) enum Fence {
    Local(FencedResource),
    Remote(FencedClient),
}

impl Fence {
    async fn write(&mut self, name: &str, token: u64) -> Option<bool> {
        match self {
            Fence::Local(r) => Some(r.write(name, token).is_ok()),
            Fence::Remote(c) => c.write(name, token).await.ok(),
        }
    }
}

/// What a client does and for how long.
#[derive(Debug, Clone)]
pub(crate) struct ClientCfg {
    pub(crate) id: String,
    pub(crate) names: Vec<String>,
    pub(crate) lease: Duration,
    pub(crate) until_ns: u64,
    pub(crate) seed: u64,
    pub(crate) recipe: Recipe,
}

/// What a client holds: a lease, a leadership or a permit (each judged as its lease).
enum Held {
    Lease(Lease),
    Leader(Leadership),
    Permit(Permit),
}

impl Held {
    fn lease(&self) -> &Lease {
        match self {
            Held::Lease(l) => l,
            Held::Leader(l) => l.lease(),
            Held::Permit(p) => p.lease(),
        }
    }

    async fn release(self) -> Result<(), LeaseError> {
        match self {
            Held::Lease(l) => l.release().await,
            Held::Leader(l) => l.resign().await,
            Held::Permit(p) => p.release().await,
        }
    }
}

/// Acquires `name` the recipe's way: the lease itself, the election's leadership, or a
/// permit of the semaphore (elections and semaphores built once per name).
struct Acquirer<'a> {
    manager: &'a LeaseManager,
    recipe: Recipe,
    id: &'a str,
    elections: HashMap<String, Election>,
    semaphores: HashMap<String, Semaphore>,
}

impl Acquirer<'_> {
    async fn acquire(&mut self, name: &str, timeout: Duration) -> Result<Held, LeaseError> {
        match self.recipe {
            Recipe::Lease => self
                .manager
                .acquire_with(name, AcquireOptions::new().timeout(Some(timeout)))
                .await
                .map(Held::Lease),
            Recipe::Election => {
                let e = match self.elections.get(name) {
                    Some(e) => e.clone(),
                    None => {
                        let e = Election::builder(self.manager, name)
                            .identity(self.id)
                            .build()?;
                        self.elections.insert(name.to_owned(), e.clone());
                        e
                    }
                };
                match tokio::time::timeout(timeout, e.campaign()).await {
                    Ok(r) => r.map(Held::Leader),
                    Err(_) => Err(LeaseError::new(
                        leasing_abstractions::ErrorKind::Timeout,
                        format!("not elected within {timeout:?}"),
                    )),
                }
            }
            Recipe::Semaphore(n) => {
                let s = match self.semaphores.get(name) {
                    Some(s) => s.clone(),
                    None => {
                        let s = Semaphore::builder(self.manager, name, n).build()?;
                        self.semaphores.insert(name.to_owned(), s.clone());
                        s
                    }
                };
                s.acquire_timeout(Some(timeout)).await.map(Held::Permit)
            }
        }
    }
}

/// The manager every client uses: the core's defaults derived from the lease duration,
/// retries every 50 ms, and the holder's id in the metadata.
pub(crate) fn manager(
    provider: Arc<dyn LeaseProvider>,
    cfg: &ClientCfg,
) -> Result<LeaseManager, String> {
    let mut meta = Metadata::new();
    meta.insert(CLIENT_KEY.to_owned(), cfg.id.clone());
    let options = LeaseOptions::default()
        .with_default_lease_duration(cfg.lease)
        .with_acquire_timeout(cfg.lease * 5)
        .with_acquire_retry_interval(Duration::from_millis(50))
        .with_auto_renew_retry_interval(Duration::from_millis(100))
        .with_metadata(meta);
    LeaseManager::new(provider, options).map_err(|e| format!("manager: {e}"))
}

fn grant_record(cfg: &ClientCfg, lease: &Lease, invoke: u64, op: Op) -> Record {
    Record::new(&cfg.id, lease.name(), invoke, mono_ns(), op)
        .with_grant(lease.lease_id(), lease.fencing_token())
}

/// Runs until `cfg.until_ns` or until `kill` is cancelled (then whatever is held is
/// dropped where it stands, as by a crash).
pub(crate) async fn client_loop(
    cfg: ClientCfg,
    manager: LeaseManager,
    rec: Recorder,
    mut fence: Fence,
    kill: CancellationToken,
) {
    tokio::select! {
        _ = kill.cancelled() => {}
        _ = work(&cfg, &manager, &rec, &mut fence) => {}
    }
}

async fn work(cfg: &ClientCfg, manager: &LeaseManager, rec: &Recorder, fence: &mut Fence) {
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let mut acquirer = Acquirer {
        manager,
        recipe: cfg.recipe,
        id: &cfg.id,
        elections: HashMap::new(),
        semaphores: HashMap::new(),
    };
    while mono_ns() < cfg.until_ns {
        let name = &cfg.names[rng.usize(..cfg.names.len())];
        let invoke = mono_ns();
        // Wait at most five lease durations, and not much past the end of the run.
        let left = Duration::from_nanos(cfg.until_ns.saturating_sub(invoke));
        let timeout = (cfg.lease * 5).min(left + cfg.lease);
        match acquirer.acquire(name, timeout).await {
            Ok(held) => {
                rec.record(grant_record(
                    cfg,
                    held.lease(),
                    invoke,
                    Op::Acquire { granted: true },
                ));
                hold(cfg, held, rec, fence, &mut rng).await;
            }
            Err(e) => {
                rec.record(
                    Record::new(
                        &cfg.id,
                        name.as_str(),
                        invoke,
                        mono_ns(),
                        Op::Acquire { granted: false },
                    )
                    .with_detail(format!("{:?}: {e}", e.kind())),
                );
                // A backend that fails at once must not make the client spin.
                tokio::time::sleep(Duration::from_millis(20 + rng.u64(..50))).await;
            }
        }
    }
}

async fn hold(
    cfg: &ClientCfg,
    holding: Held,
    rec: &Recorder,
    fence: &mut Fence,
    rng: &mut fastrand::Rng,
) {
    let lease = holding.lease();
    // Record the moment the holder is told its lease is lost.
    let mut states = lease.state_changes();
    let lost_record = Record::new(&cfg.id, lease.name(), 0, 0, Op::Lost)
        .with_grant(lease.lease_id(), lease.fencing_token());
    let r2 = rec.clone();
    let watcher = tokio::spawn(async move {
        if states.wait_for(|s| *s == LeaseState::Lost).await.is_ok() {
            let now = mono_ns();
            r2.record(Record {
                invoke_ns: now,
                complete_ns: now,
                ..lost_record
            });
        }
    });
    let hold_for = Duration::try_from_secs_f64(cfg.lease.as_secs_f64() * (0.25 + rng.f64() * 1.25))
        .unwrap_or(Duration::MAX);
    let until = mono_ns() + u64::try_from(hold_for.as_nanos()).unwrap_or(u64::MAX);
    let name = lease.name().to_owned();
    let token = lease.fencing_token();
    let ended = lease.cancellation_token();
    let mut held = true;
    loop {
        let invoke = mono_ns();
        let h = lease.is_held();
        rec.record(grant_record(cfg, lease, invoke, Op::Check { held: h }));
        if !h {
            held = false;
            break;
        }
        if mono_ns() >= until.min(cfg.until_ns) {
            break;
        }
        // Work between the check and the write, stopped when the lease says it ended (as
        // a correct holder does). A pause here (SIGSTOP) makes a stale write: what
        // fencing is for.
        let work = Duration::from_millis(rng.u64(..20));
        tokio::select! {
            biased;
            _ = ended.cancelled() => continue,
            _ = tokio::time::sleep(work) => {}
        }
        let invoke = mono_ns();
        let accepted = fence.write(&name, token).await;
        rec.record(grant_record(cfg, lease, invoke, Op::Write { accepted }));
        tokio::time::sleep(Duration::from_millis(20 + rng.u64(..60))).await;
    }
    if held {
        let invoke = mono_ns();
        let id = lease.lease_id().to_owned();
        let result = holding.release().await;
        let mut r = Record::new(
            &cfg.id,
            &name,
            invoke,
            mono_ns(),
            Op::Release { ok: result.is_ok() },
        )
        .with_grant(id, token);
        if let Err(e) = result {
            r = r.with_detail(e.to_string());
        }
        rec.record(r);
    } else {
        drop(holding);
    }
    // Give a loss that raced with the release a moment to be recorded, then stop watching.
    tokio::task::yield_now().await;
    watcher.abort();
}

/// `leasing-chaos client …`: one client process.
pub(crate) fn process_main(o: ClientOpts) -> Result<u8, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let rec = Recorder::to_file(&o.history)
            .map_err(|e| format!("history {}: {e}", o.history.display()))?;
        let provider = crate::backend::connect(&o.backend, &o.spec, o.restart_fence).await?;
        let cfg = ClientCfg {
            id: o.id.clone(),
            names: o.names.clone(),
            lease: o.lease,
            until_ns: o.until_ns,
            seed: o.seed,
            recipe: o.recipe,
        };
        let manager = manager(provider, &cfg)?;
        client_loop(
            cfg,
            manager,
            rec,
            Fence::Remote(FencedClient::new(o.fence)),
            CancellationToken::new(),
        )
        .await;
        Ok(0)
    })
}
