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

/// A provider without release notifications (as Blob and Cosmos): waiting candidates,
/// observers and semaphore waiters poll every retry period.
#[derive(Debug)]
pub struct Silent(pub InMemoryLeaseProvider);

impl leasing_abstractions::provider::ProviderLayer for Silent {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.0
    }
    fn release_notifications(&self, _name: &str) -> Option<broadcast::Receiver<String>> {
        None
    }
}
leasing_abstractions::provider_layer!(Silent);

/// A provider that refuses every acquisition as `Unauthorized`: a failure that waiting
/// cannot fix.
#[derive(Debug)]
pub struct Refusing(pub InMemoryLeaseProvider);

impl leasing_abstractions::provider::ProviderLayer for Refusing {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.0
    }
    fn try_acquire<'a>(
        &'a self,
        _: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async { Err(LeaseError::new(ErrorKind::Unauthorized, "no")) })
    }
}
leasing_abstractions::provider_layer!(Refusing);

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
impl leasing_abstractions::provider::ProviderLayer for Counting {
    fn inner(&self) -> &dyn LeaseProvider {
        &*self.inner
    }
    fn renew_many<'a>(&'a self, g: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(g.len());
            self.inner.renew_many(g).await
        })
    }
    fn release_notifications(&self, name: &str) -> Option<broadcast::Receiver<String>> {
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        self.inner.release_notifications(name)
    }
}
leasing_abstractions::provider_layer!(Counting);
