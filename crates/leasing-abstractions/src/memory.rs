//! [`InMemoryLeaseProvider`]: the full provider contract inside one process.

use crate::contract::{
    AcquireRequest, BoxFuture, LeaseGrant, LeaseInfo, LeasePage, LeaseProvider, ListRequest,
    ProviderCapabilities,
};
use crate::error::{LeaseError, Result};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// The embedded backend: leases in a map guarded by a mutex, expiry on tokio's clock (so
/// `tokio::time::pause()` drives it in tests), fencing counters kept for the life of the
/// store, release notifications on a broadcast channel.
///
/// Clones share one store, like several clients of one server; use
/// [`InMemoryLeaseProvider::new`] for an independent one.
#[derive(Clone)]
pub struct InMemoryLeaseProvider {
    store: Arc<Store>,
}

struct Store {
    state: Mutex<State>,
    released: broadcast::Sender<String>,
}

#[derive(Default)]
struct State {
    leases: HashMap<String, Entry>,
    /// Last fencing token handed out per name; never removed.
    counters: HashMap<String, u64>,
}

struct Entry {
    lease_id: String,
    fencing_token: u64,
    acquired_at: SystemTime,
    expires: Option<Instant>,
    metadata: crate::Metadata,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }

    fn info(&self, name: &str, now: Instant, wall: SystemTime) -> LeaseInfo {
        LeaseInfo::new(
            name,
            Some(self.lease_id.clone()),
            self.fencing_token,
            self.acquired_at,
            self.expires
                .map(|x| wall + x.saturating_duration_since(now)),
            self.metadata.clone(),
        )
    }
}

impl Default for InMemoryLeaseProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InMemoryLeaseProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryLeaseProvider")
            .field("leases", &self.lock().leases.len())
            .finish()
    }
}

impl InMemoryLeaseProvider {
    /// An empty, independent store.
    pub fn new() -> Self {
        Self {
            store: Arc::new(Store {
                state: Mutex::new(State::default()),
                released: broadcast::channel(1024).0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still
        // consistent because every mutation is a single insert or remove.
        self.store.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, name: &str) {
        // No receivers is fine.
        let _ = self.store.released.send(name.to_owned());
    }

    fn renew_locked(state: &mut State, grant: &LeaseGrant, now: Instant) -> Result<()> {
        let lost = |why: &str| {
            Err(LeaseError::lost(why.to_owned())
                .with_lease_name(&grant.name)
                .with_lease_id(&grant.lease_id))
        };
        match state.leases.get_mut(&grant.name) {
            Some(e) if e.lease_id == grant.lease_id && e.live(now) => {
                e.expires = grant.duration.as_finite().map(|d| now + d);
                Ok(())
            }
            Some(e) if e.lease_id == grant.lease_id => lost("the lease expired"),
            Some(_) => lost("the lease is held by another owner"),
            None => lost("the lease no longer exists"),
        }
    }
}

impl LeaseProvider for InMemoryLeaseProvider {
    fn provider_name(&self) -> &'static str {
        "in-memory"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        // 10 ms: below it the 2 ms drift allowance leaves a lease too little time to be
        // renewed by a real scheduler.
        ProviderCapabilities::new(
            Duration::from_millis(10),
            Duration::from_secs(365 * 24 * 3600),
        )
        .with_infinite_leases(true)
        .with_max_renew_batch(1024)
        .with_listing(true)
    }

    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            let sent_at = Instant::now();
            let mut state = self.lock();
            if state
                .leases
                .get(&request.name)
                .is_some_and(|e| e.live(sent_at))
            {
                return Ok(None);
            }
            let counter = state.counters.entry(request.name.clone()).or_insert(0);
            *counter += 1;
            let token = *counter;
            let lease_id = uuid::Uuid::new_v4().to_string();
            let acquired_at = SystemTime::now();
            state.leases.insert(
                request.name.clone(),
                Entry {
                    lease_id: lease_id.clone(),
                    fencing_token: token,
                    acquired_at,
                    expires: request.duration.as_finite().map(|d| sent_at + d),
                    metadata: request.metadata.clone(),
                },
            );
            Ok(Some(LeaseGrant::new(
                request,
                lease_id,
                token,
                acquired_at,
                sent_at,
            )))
        })
    }

    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Self::renew_locked(&mut self.lock(), grant, Instant::now()) })
    }

    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut state = self.lock();
            grants
                .iter()
                .map(|g| Self::renew_locked(&mut state, g, now))
                .collect()
        })
    }

    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let removed = {
                let mut state = self.lock();
                match state.leases.get(&grant.name) {
                    Some(e) if e.lease_id == grant.lease_id => {
                        state.leases.remove(&grant.name).is_some()
                    }
                    _ => false,
                }
            };
            if removed {
                self.notify(&grant.name);
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move {
            let now = Instant::now();
            let wall = SystemTime::now();
            let state = self.lock();
            Ok(state
                .leases
                .get(name)
                .filter(|e| e.live(now))
                .map(|e| e.info(name, now, wall)))
        })
    }

    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let now = Instant::now();
            let broken = {
                let mut state = self.lock();
                let live = state.leases.get(name).is_some_and(|e| e.live(now));
                state.leases.remove(name);
                live
            };
            if broken {
                self.notify(name);
            }
            Ok(broken)
        })
    }

    fn release_notifications(&self, _name: &str) -> Option<broadcast::Receiver<String>> {
        Some(self.store.released.subscribe())
    }

    /// Pages in name order; the cursor is the last name of the previous page.
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(async move {
            let now = Instant::now();
            let wall = SystemTime::now();
            let state = self.lock();
            let after = request.cursor.as_deref();
            let mut names: Vec<&String> = state
                .leases
                .iter()
                .filter(|(n, e)| {
                    n.starts_with(&request.prefix)
                        && after.is_none_or(|c| n.as_str() > c)
                        && e.live(now)
                })
                .map(|(n, _)| n)
                .collect();
            names.sort_unstable();
            let limit = request.limit.max(1);
            let more = names.len() > limit;
            names.truncate(limit);
            let leases: Vec<LeaseInfo> = names
                .iter()
                .map(|n| state.leases[*n].info(n, now, wall))
                .collect();
            let cursor = more.then(|| names.last().map(|n| n.to_string())).flatten();
            Ok(LeasePage::new(leases, cursor))
        })
    }
}
