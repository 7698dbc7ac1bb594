//! [`FaultInjectingProvider`]: wraps any provider and injects failures, latency and
//! partitions, so code can be tested against lease loss.
//!
//! ```
//! use leasing_abstractions::fault::{Fault, FaultInjectingProvider};
//! use leasing_abstractions::Operation;
//! use leasing_abstractions::InMemoryLeaseProvider;
//! use std::sync::Arc;
//! let faulty = FaultInjectingProvider::new(Arc::new(InMemoryLeaseProvider::new()));
//! let control = faulty.control();
//! control.script(Operation::Renew, [Fault::Unavailable, Fault::Unavailable]);
//! control.set_partitioned(false);
//! ```

use crate::contract::{
    AcquireRequest, BoxFuture, LeaseGrant, LeaseInfo, LeasePage, LeaseProvider, ListRequest,
    ProviderLayer,
};
use crate::error::{LeaseError, Result};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

// Faults target provider operations by the root's `Operation`: `try_acquire` (`Acquire`),
// `renew` and each grant of `renew_many` (`Renew`), `release`, `inspect`, `break_lease`,
// `list`.
use crate::error::Operation;

/// A fault to inject into one call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fail with `ProviderUnavailable` without reaching the backend.
    Unavailable,
    /// Never answer (the caller's own deadline ends the call); the backend is not reached.
    Hang,
    /// Fail with `Lost` (for `renew`; other operations get `ProviderUnavailable`).
    Lost,
    /// Wait this long, then do the call.
    Delay(Duration),
    /// Do the call on the backend, then fail with `ProviderUnavailable`: the request took
    /// effect but the answer was lost.
    LoseReply,
}

/// Shared control of a [`FaultInjectingProvider`]; clones control the same provider.
#[derive(Clone, Default)]
pub struct FaultControl {
    state: Arc<Mutex<FaultState>>,
}

#[derive(Default)]
struct FaultState {
    scripted: HashMap<Operation, VecDeque<Fault>>,
    random: HashMap<Operation, (f64, Fault)>,
    rng: Option<fastrand::Rng>,
    latency: Duration,
    partitioned: bool,
    calls: HashMap<Operation, u64>,
}

impl fmt::Debug for FaultControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("FaultControl")
            .field("latency", &s.latency)
            .field("partitioned", &s.partitioned)
            .field("scripted", &s.scripted)
            .finish_non_exhaustive()
    }
}

impl FaultControl {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `faults` for the next calls of `op`, one per call, in order.
    pub fn script(&self, op: Operation, faults: impl IntoIterator<Item = Fault>) {
        self.lock().scripted.entry(op).or_default().extend(faults);
    }

    /// Makes each call of `op` fail with `fault` with `probability`, drawn from a generator
    /// seeded with `seed` (so runs repeat). A probability of 0 removes the rule.
    pub fn fail_randomly(&self, op: Operation, probability: f64, fault: Fault, seed: u64) {
        let mut s = self.lock();
        if probability <= 0.0 {
            s.random.remove(&op);
        } else {
            s.random.insert(op, (probability.min(1.0), fault));
        }
        s.rng = Some(fastrand::Rng::with_seed(seed));
    }

    /// Adds `latency` before every call.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// While partitioned, every call fails with `ProviderUnavailable` (after the latency)
    /// without reaching the backend.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.lock().partitioned = partitioned;
    }

    /// Calls of `op` seen so far (for `renew_many`, one per grant).
    pub fn calls(&self, op: Operation) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// Removes every scripted and random fault, the latency and the partition.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.scripted.clear();
        s.random.clear();
        s.latency = Duration::ZERO;
        s.partitioned = false;
    }

    /// The fault for the next call of `op`, and the latency to add.
    fn next(&self, op: Operation) -> (Option<Fault>, Duration) {
        let mut s = self.lock();
        *s.calls.entry(op).or_default() += 1;
        let latency = s.latency;
        if s.partitioned {
            return (Some(Fault::Unavailable), latency);
        }
        if let Some(f) = s.scripted.get_mut(&op).and_then(VecDeque::pop_front) {
            return (Some(f), latency);
        }
        let random = s.random.get(&op).cloned();
        let fault = match (random, s.rng.as_mut()) {
            (Some((p, f)), Some(rng)) => (rng.f64() < p).then_some(f),
            _ => None,
        };
        (fault, latency)
    }
}

/// Wraps a provider and injects the faults its [`FaultControl`] holds.
#[derive(Debug, Clone)]
pub struct FaultInjectingProvider {
    inner: Arc<dyn LeaseProvider>,
    control: FaultControl,
}

impl FaultInjectingProvider {
    /// Wraps `inner`; no faults until some are set.
    pub fn new(inner: Arc<dyn LeaseProvider>) -> Self {
        Self {
            inner,
            control: FaultControl::default(),
        }
    }

    /// The control handle.
    pub fn control(&self) -> FaultControl {
        self.control.clone()
    }

    /// Runs `call` under the fault chosen for `op`.
    async fn run<T, F>(&self, op: Operation, call: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + Send,
        T: Send,
    {
        let (fault, latency) = self.control.next(op);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            None => call.await,
            Some(f) => apply(f, op, call).await,
        }
    }
}

async fn apply<T, F>(fault: Fault, op: Operation, call: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send,
{
    match fault {
        Fault::Unavailable => Err(injected(op)),
        Fault::Lost if op == Operation::Renew => {
            Err(LeaseError::lost("injected fault: lease lost"))
        }
        Fault::Lost => Err(injected(op)),
        Fault::Hang => std::future::pending().await,
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            call.await
        }
        Fault::LoseReply => {
            let _ = call.await;
            Err(injected(op))
        }
    }
}

fn injected(op: Operation) -> LeaseError {
    LeaseError::unavailable(format!("injected fault: {op:?} unavailable"))
}

/// The operations draw faults; the name, the capabilities and the release notifications
/// are the inner provider's (forwarded by the layer).
impl ProviderLayer for FaultInjectingProvider {
    fn inner(&self) -> &dyn LeaseProvider {
        &*self.inner
    }

    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            self.run(Operation::Acquire, self.inner.try_acquire(request))
                .await
        })
    }

    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.run(Operation::Renew, self.inner.renew(grant)).await })
    }

    /// Draws a fault per grant; grants without one go to the inner provider's
    /// `renew_many` together, so batching is preserved.
    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let mut latency = Duration::ZERO;
            let plan: Vec<Option<Fault>> = grants
                .iter()
                .map(|_| {
                    let (fault, l) = self.control.next(Operation::Renew);
                    latency = l;
                    fault
                })
                .collect();
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let clean: Vec<Arc<LeaseGrant>> = grants
                .iter()
                .zip(&plan)
                .filter(|(_, f)| f.is_none())
                .map(|(g, _)| Arc::clone(g))
                .collect();
            let faulted = grants.iter().zip(&plan).filter_map(|(g, f)| {
                f.clone()
                    .map(|f| apply(f, Operation::Renew, self.inner.renew(g)))
            });
            let (clean, faulted) = futures::join!(
                async {
                    if clean.is_empty() {
                        Vec::new()
                    } else {
                        self.inner.renew_many(&clean).await
                    }
                },
                futures::future::join_all(faulted)
            );
            let (mut clean, mut faulted) = (clean.into_iter(), faulted.into_iter());
            plan.iter()
                .map(|f| {
                    let next = if f.is_none() {
                        clean.next()
                    } else {
                        faulted.next()
                    };
                    next.unwrap_or_else(|| {
                        Err(LeaseError::unavailable(
                            "inner provider returned too few results",
                        ))
                    })
                })
                .collect()
        })
    }

    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.run(Operation::Release, self.inner.release(grant))
                .await
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move { self.run(Operation::Inspect, self.inner.inspect(name)).await })
    }

    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.run(Operation::Break, self.inner.break_lease(name))
                .await
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(async move { self.run(Operation::List, self.inner.list(request)).await })
    }
}

crate::provider_layer!(FaultInjectingProvider);
