#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]
//! Shared helpers of the engine tests.

use leasing_abstractions::fault::{FaultControl, FaultInjectingProvider};
use leasing_abstractions::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A manager over a fault-injecting wrapper of an in-memory store.
pub struct Rig {
    pub store: InMemoryLeaseProvider,
    pub faults: FaultControl,
    pub manager: LeaseManager,
    pub counting: Arc<Counting>,
}

pub fn rig(options: LeaseOptions) -> Rig {
    let store = InMemoryLeaseProvider::new();
    let counting = Arc::new(Counting::new(Arc::new(store.clone())));
    let faulty = FaultInjectingProvider::new(counting.clone());
    let faults = faulty.control();
    let manager = LeaseManager::new(Arc::new(faulty), options).expect("valid options");
    Rig {
        store,
        faults,
        manager,
        counting,
    }
}

/// Collects a lease's events with the (virtual) instant each arrived.
pub fn record(lease: &Lease) -> Arc<Mutex<Vec<(Instant, LeaseEvent)>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut rx = lease.events();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
            sink.lock().unwrap().push((Instant::now(), ev));
        }
    });
    log
}

/// The kinds of the events in a [`record`] log, in order.
pub fn kinds(log: &[(Instant, LeaseEvent)]) -> Vec<&'static str> {
    log.iter()
        .map(|(_, e)| match e {
            LeaseEvent::Renewed { .. } => "renewed",
            LeaseEvent::RenewalFailed { .. } => "failed",
            LeaseEvent::AtRisk { .. } => "at_risk",
            LeaseEvent::Lost { .. } => "lost",
            LeaseEvent::Released => "released",
            _ => "other",
        })
        .collect()
}

/// Lets spawned tasks run without moving the clock.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Counts `renew_many` calls and their sizes, delegating to an inner provider.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn LeaseProvider>,
    pub batches: AtomicUsize,
    pub sizes: Mutex<Vec<usize>>,
    pub subscriptions: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn LeaseProvider>) -> Self {
        Self {
            inner,
            batches: AtomicUsize::new(0),
            sizes: Mutex::new(Vec::new()),
            subscriptions: AtomicUsize::new(0),
        }
    }
    pub fn batches(&self) -> usize {
        self.batches.load(Ordering::SeqCst)
    }
}
#[deny(clippy::missing_trait_methods)]
impl LeaseProvider for Counting {
    fn provider_name(&self) -> &'static str {
        self.inner.provider_name()
    }
    fn capabilities(&self) -> ProviderCapabilities {
        self.inner.capabilities()
    }
    fn try_acquire<'a>(
        &'a self,
        r: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move { self.inner.try_acquire(r).await })
    }
    fn renew<'a>(&'a self, g: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.inner.renew(g).await })
    }
    fn renew_many<'a>(&'a self, g: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(g.len());
            self.inner.renew_many(g).await
        })
    }
    fn release<'a>(&'a self, g: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.inner.release(g).await })
    }
    fn inspect<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move { self.inner.inspect(n).await })
    }
    fn break_lease<'a>(&'a self, n: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.inner.break_lease(n).await })
    }
    fn release_notifications(&self, name: &str) -> Option<broadcast::Receiver<String>> {
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        self.inner.release_notifications(name)
    }
    fn renew_now_signals(&self) -> Option<tokio::sync::broadcast::Receiver<()>> {
        self.inner.renew_now_signals()
    }
    fn list<'a>(&'a self, r: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        self.inner.list(r)
    }
}
