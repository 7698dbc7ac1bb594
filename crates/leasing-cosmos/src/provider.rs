//! [`CosmosLeaseProvider`]: one document per lease, guarded by ETags, expiry on the
//! service's clock. The lease operations are in `ops.rs`, document I/O in `store.rs`,
//! listing in `listing.rs`; this file holds the provider and its trait impl.

use crate::config::{PartitionKeyStrategy, MAX_DURATION, MIN_DURATION};
use crate::document::document_id;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::CosmosClient;
use leasing_abstractions::{
    AcquireRequest, BoxFuture, LeaseGrant, LeaseInfo, LeasePage, LeaseProvider, ListRequest,
    ProviderCapabilities, Result,
};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Azure Cosmos DB lease provider. See the crate docs and `docs/providers/cosmos.md`.
///
/// Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct CosmosLeaseProvider {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: CosmosClient,
    pub(crate) container: OnceCell<ContainerClient>,
    pub(crate) endpoint: String,
    pub(crate) auth_kind: &'static str,
    pub(crate) create_if_missing: bool,
    pub(crate) database: String,
    pub(crate) container_name: String,
    pub(crate) partition_key: PartitionKeyStrategy,
    pub(crate) call_timeout: Duration,
    pub(crate) owner: String,
    pub(crate) retention: Duration,
    pub(crate) renew_concurrency: usize,
    /// Sum of the request charges (RU × 100) of every call this provider made.
    pub(crate) request_charge_centi: AtomicU64,
    pub(crate) write_locations: Vec<String>,
    /// Names whose document this provider has seen exist (a hint: acquire then starts
    /// with the read instead of a create that would answer 409).
    pub(crate) existing: KnownNames,
}

/// A bounded set of names (cleared when full: it is only a hint).
#[derive(Default)]
pub(crate) struct KnownNames(std::sync::Mutex<std::collections::HashSet<String>>);

impl KnownNames {
    const CAPACITY: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.lock().contains(name)
    }

    pub(crate) fn insert(&self, name: &str) {
        let mut set = self.lock();
        if set.len() >= Self::CAPACITY {
            set.clear();
        }
        set.insert(name.to_owned());
    }

    pub(crate) fn remove(&self, name: &str) {
        self.lock().remove(name);
    }
}

impl fmt::Debug for CosmosLeaseProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("CosmosLeaseProvider")
            .field("endpoint", &i.endpoint)
            .field("auth", &i.auth_kind)
            .field("database", &i.database)
            .field("container", &i.container_name)
            .field("partition_key", &i.partition_key)
            .field("call_timeout", &i.call_timeout)
            .field("owner", &i.owner)
            .finish_non_exhaustive()
    }
}

impl CosmosLeaseProvider {
    /// Request units charged to this provider so far (sum of `x-ms-request-charge`).
    pub fn request_charge_total(&self) -> f64 {
        self.inner.request_charge_centi.load(Ordering::Relaxed) as f64 / 100.0
    }

    /// The account's write regions, read at start-up.
    pub fn write_locations(&self) -> &[String] {
        &self.inner.write_locations
    }

    /// The document id of a lease name (see [`document_id`]).
    pub fn document_id(name: &str) -> String {
        document_id(name)
    }

    pub(crate) fn partition_for(&self, name: &str, id: &str) -> String {
        self.inner.partition_key.key_for(name, id)
    }
}

impl LeaseProvider for CosmosLeaseProvider {
    fn provider_name(&self) -> &'static str {
        "cosmos"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(MIN_DURATION, MAX_DURATION)
            .with_duration_granularity(Duration::from_secs(1))
            .with_listing(true)
            .with_max_renew_batch(self.inner.renew_concurrency)
            // Each renewal is its own request: the core's renew_many keeps this many in
            // flight.
            .with_renew_concurrency(self.inner.renew_concurrency)
    }

    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            self.capabilities().check_duration(request.duration)?;
            self.acquire(request)
                .await
                .map_err(|e| e.or_lease(&request.name, None))
        })
    }

    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.renew_one(grant)
                .await
                .map_err(|e| e.or_lease(&grant.name, Some(&grant.lease_id)))
        })
    }

    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.release_one(grant)
                .await
                .map_err(|e| e.or_lease(&grant.name, Some(&grant.lease_id)))
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move {
            self.inspect_one(name)
                .await
                .map_err(|e| e.or_lease(name, None))
        })
    }

    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.break_one(name)
                .await
                .map_err(|e| e.or_lease(name, None))
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(self.list_page(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_a_bounded_hint() {
        let k = KnownNames::default();
        k.insert("a");
        assert!(k.contains("a"));
        k.remove("a");
        assert!(!k.contains("a"));
        for i in 0..KnownNames::CAPACITY {
            k.insert(&i.to_string());
        }
        k.insert("last");
        assert!(k.contains("last"));
        assert!(!k.contains("0"));
    }
}
