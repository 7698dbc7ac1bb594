//! The backends a run can target. A backend that runs in its own server processes is two
//! small functions: [`start`] (start its servers, each behind a `FaultProxy`, and say how
//! clients reach them) and [`connect`] (what a client process does with that). The fault
//! schedule, the clients and the checker are shared.

use crate::servers::Server;
use leasing_abstractions::LeaseProvider;
use leasing_testkit::proxy::FaultProxy;
use leasing_testkit::services::{form_cluster, AzuriteServer, CosmosEmulator, RedisServer};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every backend `--backend` accepts. `memory-unsafe` is the runner's self-test: an
/// in-memory provider that breaks the current lease to grant a new one, on which a run
/// must find violations.
pub(crate) const KNOWN: [&str; 7] = [
    "memory",
    "redis",
    "redlock",
    "blob",
    "cosmos",
    "redis-cluster",
    "memory-unsafe",
];

/// The lease duration a run uses on `backend`: `requested`, within what the backend
/// accepts (Azure Blob: whole seconds, 15–60 s; Cosmos DB: whole seconds, rounded up).
pub(crate) fn lease_for(backend: &str, requested: Duration) -> Duration {
    match backend {
        "blob" => Duration::from_secs(requested.as_secs().clamp(15, 60)),
        "cosmos" => Duration::from_secs(requested.as_secs_f64().ceil().max(1.0) as u64),
        _ => requested,
    }
}

/// Whether every restart of `backend`'s server loses its data (the Cosmos emulator keeps
/// documents in memory only): its schedule has no restart with data, and a restart
/// without data only when `--faults` asks for it (the real service keeps its documents).
pub(crate) fn restarts_lose_data(backend: &str) -> bool {
    backend == "cosmos"
}

/// Whether `backend` runs in this process (threads) rather than in server processes.
pub(crate) fn in_process(backend: &str) -> bool {
    backend.starts_with("memory")
}

/// An unsafe provider for the self-test: grants every acquisition, breaking the current
/// holder's lease first (which it learns only at its next renewal).
#[derive(Debug, Clone)]
pub(crate) struct Stealing(pub(crate) leasing_abstractions::InMemoryLeaseProvider);

/// Only the name and the acquisition differ; everything else (renewals, batches, release
/// notifications, listing) is the in-memory provider's, forwarded by the layer.
impl leasing_abstractions::provider::ProviderLayer for Stealing {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.0
    }
    fn provider_name(&self) -> &'static str {
        "stealing"
    }
    fn try_acquire<'a>(
        &'a self,
        request: &'a leasing_abstractions::AcquireRequest,
    ) -> leasing_abstractions::BoxFuture<
        'a,
        leasing_abstractions::Result<Option<leasing_abstractions::LeaseGrant>>,
    > {
        Box::pin(async move {
            self.0.break_lease(&request.name).await?;
            self.0.try_acquire(request).await
        })
    }
}

leasing_abstractions::provider_layer!(Stealing);

/// A server the runner may fault, and the proxy clients reach it through.
pub(crate) struct Slot {
    pub(crate) server: Arc<Mutex<Box<dyn Server>>>,
    pub(crate) proxy: FaultProxy,
}

impl Slot {
    async fn new(server: Box<dyn Server>) -> Result<Self, String> {
        let proxy = FaultProxy::start(server.addr())
            .await
            .map_err(|e| format!("proxy: {e}"))?;
        Ok(Self {
            server: Arc::new(Mutex::new(server)),
            proxy,
        })
    }
}

/// A backend started for a run.
pub(crate) struct Target {
    /// What client processes pass to [`connect`].
    pub(crate) spec: String,
    /// Its servers (one for Redis, three for Redlock).
    pub(crate) slots: Vec<Slot>,
    /// A provider connected straight to the servers (not through the proxies), used to
    /// find the current holder of a name.
    pub(crate) inspector: Arc<dyn LeaseProvider>,
}

/// How a client reaches a server at an address (a URL, a connection string).
type SpecOf = fn(std::net::SocketAddr) -> String;

/// Starts the servers of `backend` under `dir`.
pub(crate) async fn start(backend: &str, dir: &Path, lease: Duration) -> Result<Target, String> {
    let dir = dir.to_path_buf();
    let (servers, spec_of): (Vec<Box<dyn Server>>, SpecOf) = match backend {
        "redis" | "redlock" => {
            let n = if backend == "redis" { 1 } else { 3 };
            let mut v: Vec<Box<dyn Server>> = Vec::new();
            for _ in 0..n {
                let d = dir.clone();
                let s = tokio::task::spawn_blocking(move || {
                    RedisServer::builder().dir(d).persistent().start()
                })
                .await
                .map_err(|e| e.to_string())??;
                v.push(Box::new(s.into_service()));
            }
            (v, |a| format!("redis://{a}"))
        }
        "blob" => {
            let s = tokio::task::spawn_blocking(move || {
                AzuriteServer::builder().dir(dir).persistent().start()
            })
            .await
            .map_err(|e| e.to_string())??;
            (
                vec![Box::new(s.into_service())],
                AzuriteServer::connection_string_for,
            )
        }
        "cosmos" => {
            // The emulator advertises the proxy's port as its endpoint, or the SDK would
            // go around the proxy after its first call.
            let (s, proxy) = CosmosEmulator::builder()
                .dir(dir)
                .start_behind_proxy()
                .await?;
            let direct = CosmosEmulator::connection_string_for(s.addr());
            let spec = CosmosEmulator::connection_string_for(proxy.addr());
            let slot = Slot {
                server: Arc::new(Mutex::new(Box::new(s.into_service()))),
                proxy,
            };
            return finish(backend, vec![slot], spec, &direct, lease).await;
        }
        "redis-cluster" => {
            // Three masters, no replicas. Clients reach the nodes directly: a cluster
            // answers with the nodes' own addresses (MOVED, CLUSTER SLOTS), which a proxy
            // in front would not rewrite, so no network faults here (the proxies stay idle).
            let nodes = tokio::task::spawn_blocking(move || {
                let node = || RedisServer::builder().dir(&dir).persistent().cluster_node();
                let nodes = (0..3)
                    .map(|_| node().start())
                    .collect::<Result<Vec<_>, _>>()?;
                form_cluster(&nodes.iter().map(|n| n.addr()).collect::<Vec<_>>())?;
                Ok::<_, String>(nodes)
            })
            .await
            .map_err(|e| e.to_string())??;
            let urls = nodes
                .iter()
                .map(|n| format!("redis://{}", n.addr()))
                .collect::<Vec<_>>()
                .join(",");
            let mut slots = Vec::new();
            for n in nodes {
                slots.push(Slot::new(Box::new(n.into_service())).await?);
            }
            return finish(backend, slots, urls.clone(), &urls, lease).await;
        }
        other => return Err(format!("{other} has no servers to start")),
    };
    let direct: Vec<String> = servers.iter().map(|s| spec_of(s.addr())).collect();
    let mut slots = Vec::new();
    for server in servers {
        slots.push(Slot::new(server).await?);
    }
    let spec = slots
        .iter()
        .map(|s| spec_of(s.proxy.addr()))
        .collect::<Vec<_>>()
        .join(",");
    finish(backend, slots, spec, &direct.join(","), lease).await
}

/// The target of `slots`: the clients' `spec` and an inspector connected with `direct`.
async fn finish(
    backend: &str,
    slots: Vec<Slot>,
    spec: String,
    direct: &str,
    lease: Duration,
) -> Result<Target, String> {
    let inspector = connect(backend, direct, lease).await?;
    Ok(Target {
        spec,
        slots,
        inspector,
    })
}

/// A provider for `backend` from `spec` (what [`start`] returned), retried for 60 s while
/// the backend is unreachable (a client may start during a fault).
///
/// Redis servers here may restart without their data, so the runner gives the providers
/// a restart fence of the lease duration (the longest lease in use): a restarted server
/// grants nothing until every lease granted before the restart has expired.
pub(crate) async fn connect(
    backend: &str,
    spec: &str,
    restart_fence: Duration,
) -> Result<Arc<dyn LeaseProvider>, String> {
    let started = Instant::now();
    loop {
        let result: Result<Arc<dyn LeaseProvider>, String> = match backend {
            "redis" => leasing_redis::RedisLeaseProvider::builder()
                .url(spec)
                .restart_fence(restart_fence)
                .build()
                .await
                .map(|p| Arc::new(p) as Arc<dyn LeaseProvider>)
                .map_err(|e| e.to_string()),
            "redis-cluster" => leasing_redis::RedisLeaseProvider::builder()
                .cluster_urls(spec.split(','))
                .restart_fence(restart_fence)
                .build()
                .await
                .map(|p| Arc::new(p) as Arc<dyn LeaseProvider>)
                .map_err(|e| e.to_string()),
            "redlock" => leasing_redis::RedlockLeaseProvider::builder()
                .urls(spec.split(','))
                .restart_fence(restart_fence)
                .build()
                .await
                .map(|p| Arc::new(p) as Arc<dyn LeaseProvider>)
                .map_err(|e| e.to_string()),
            "blob" => leasing_blob::BlobLeaseProvider::builder()
                .connection_string(spec)
                .container("chaos")
                .build()
                .await
                .map(|p| Arc::new(p) as Arc<dyn LeaseProvider>)
                .map_err(|e| e.to_string()),
            "cosmos" => leasing_cosmos::CosmosLeaseProvider::builder()
                .connection_string(spec)
                .database("chaos")
                .build()
                .await
                .map(|p| Arc::new(p) as Arc<dyn LeaseProvider>)
                .map_err(|e| e.to_string()),
            other => return Err(format!("no client for backend {other:?}")),
        };
        match result {
            Ok(p) => return Ok(p),
            Err(e) if started.elapsed() > Duration::from_secs(60) => {
                return Err(format!("connect to {backend}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
