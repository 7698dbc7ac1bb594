//! Fenced resources: what you put in front of the thing a lease protects, so that a write
//! from a stale holder (paused, cut off, unaware that it lost its lease) is refused by the
//! resource itself.
//!
//! Every write carries a [`Fence`]: the lease name and the holder's fencing token. Each
//! item of a fenced resource (a key, a blob, a document) remembers, per lease name, the
//! largest token that has written it, and refuses a write whose token is smaller:
//! [`FencedWrite::Stale`]. The check and the write are one atomic step on the backend
//! (a script on Redis, a conditional write on the item's ETag on Blob and Cosmos), so a
//! stale write cannot slip in between.
//!
//! What a resource must compare: tokens *of the same lease name* only. A lease's tokens
//! increase strictly per name; a [semaphore](crate::semaphore) permit's per slot (its
//! [`slot_name`](crate::semaphore::Permit::slot_name)); an
//! [election](crate::election)'s per election name.
//!
//! ```
//! # use leasing_abstractions::{fence::{Fence, FencedResource, FencedWrite, InMemoryFencedResource}, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
//! # use std::sync::Arc;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
//! let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
//! let store = InMemoryFencedResource::new();
//! let old = manager.acquire("report").await?;
//! let stale = Fence::of(&old);
//! manager.break_lease("report").await?;          // the holder is paused; an operator breaks it
//! let new = manager.acquire("report").await?;
//! assert_eq!(store.write(&Fence::of(&new), "daily", b"v2").await?, FencedWrite::Written);
//! // The old holder wakes up and writes: refused by the resource.
//! assert_eq!(
//!     store.write(&stale, "daily", b"v1").await?,
//!     FencedWrite::Stale { highest: new.fencing_token() }
//! );
//! assert_eq!(store.read("daily").await?.as_deref(), Some(&b"v2"[..]));
//! # Ok(()) }
//! ```

use crate::contract::BoxFuture;
use crate::error::{LeaseError, Result};
use crate::lease::Lease;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

/// What a write carries: the lease name and the writer's fencing token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    name: String,
    token: u64,
}

impl Fence {
    /// A fence of lease `name` with `token`.
    pub fn new(name: impl Into<String>, token: u64) -> Self {
        Self {
            name: name.into(),
            token,
        }
    }

    /// The fence of a held lease (also of a
    /// [`Leadership`](crate::election::Leadership::lease) or a
    /// [`Permit`](crate::semaphore::Permit::lease) through their `lease()`).
    pub fn of(lease: &Lease) -> Self {
        Self::new(lease.name(), lease.fencing_token())
    }

    /// The lease name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token.
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// The outcome of a fenced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a stale write was refused: the writer no longer holds the lease and must stop"]
pub enum FencedWrite {
    /// The write was accepted: its token is the largest the item has seen for that lease.
    Written,
    /// Refused: the item has accepted a larger token of that lease (`highest`); the writer
    /// is stale.
    Stale {
        /// The largest token the item has accepted for the fence's lease name.
        highest: u64,
    },
}

/// A resource that refuses writes with a stale fencing token; see the [module docs](self).
///
/// Implementations: [`InMemoryFencedResource`] here, `RedisFencedResource` in
/// `leasing-redis`, `BlobFencedResource` in `leasing-blob`, `CosmosFencedResource` in
/// `leasing-cosmos`. The easy way to implement it: three inherent async methods
/// `write_item`, `read_item` and `highest_of` with the trait's arguments, and
/// [`fenced_resource!`](crate::fenced_resource) for the boxing.
pub trait FencedResource: Send + Sync + Debug {
    /// Writes `value` to `key` if `fence`'s token is at least the largest token `key` has
    /// accepted for `fence`'s lease name, and records the token; one atomic step.
    ///
    /// # Errors
    /// The backend's error (the write did not happen, or its outcome is unknown).
    fn write<'a>(
        &'a self,
        fence: &'a Fence,
        key: &'a str,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<FencedWrite>>;

    /// The value of `key`, `None` if never written.
    ///
    /// # Errors
    /// The backend's error.
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;

    /// The largest token `key` has accepted for lease `name`, `None` if none.
    ///
    /// # Errors
    /// The backend's error.
    fn highest<'a>(&'a self, key: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;
}

/// An item: the value and the largest token per lease name.
#[derive(Debug, Default)]
struct Item {
    value: Vec<u8>,
    tokens: HashMap<String, u64>,
}

/// A fenced resource in process memory (for tests, and as the reference behaviour).
#[derive(Debug, Clone, Default)]
pub struct InMemoryFencedResource {
    items: Arc<Mutex<HashMap<String, Item>>>,
}

impl InMemoryFencedResource {
    /// An empty resource.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The token check every implementation makes: the outcome for a write with `token` to
/// an item whose largest accepted token for the lease is `highest`.
pub fn check(highest: Option<u64>, token: u64) -> FencedWrite {
    match highest {
        Some(h) if token < h => FencedWrite::Stale { highest: h },
        _ => FencedWrite::Written,
    }
}

impl InMemoryFencedResource {
    async fn write_item(&self, fence: &Fence, key: &str, value: &[u8]) -> Result<FencedWrite> {
        if key.is_empty() {
            return Err(LeaseError::invalid_argument("key", "must not be empty"));
        }
        let mut items = self.lock();
        let item = items.entry(key.to_owned()).or_default();
        let outcome = check(item.tokens.get(&fence.name).copied(), fence.token);
        if outcome == FencedWrite::Written {
            item.tokens.insert(fence.name.clone(), fence.token);
            item.value = value.to_vec();
        }
        Ok(outcome)
    }

    async fn read_item(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().get(key).map(|i| i.value.clone()))
    }

    async fn highest_of(&self, key: &str, name: &str) -> Result<Option<u64>> {
        Ok(self
            .lock()
            .get(key)
            .and_then(|i| i.tokens.get(name).copied()))
    }
}

crate::fenced_resource!(InMemoryFencedResource);

/// Implements [`FencedResource`] for a type with three inherent async methods of the
/// trait's arguments: `write_item(&self, &Fence, &str, &[u8]) -> Result<FencedWrite>`,
/// `read_item(&self, &str) -> Result<Option<Vec<u8>>>` and
/// `highest_of(&self, &str, &str) -> Result<Option<u64>>`; the macro boxes their futures.
#[macro_export]
macro_rules! fenced_resource {
    ($ty:ty) => {
        impl $crate::fence::FencedResource for $ty {
            fn write<'a>(
                &'a self,
                fence: &'a $crate::fence::Fence,
                key: &'a str,
                value: &'a [u8],
            ) -> $crate::BoxFuture<'a, $crate::Result<$crate::fence::FencedWrite>> {
                Box::pin(self.write_item(fence, key, value))
            }
            fn read<'a>(
                &'a self,
                key: &'a str,
            ) -> $crate::BoxFuture<'a, $crate::Result<Option<Vec<u8>>>> {
                Box::pin(self.read_item(key))
            }
            fn highest<'a>(
                &'a self,
                key: &'a str,
                name: &'a str,
            ) -> $crate::BoxFuture<'a, $crate::Result<Option<u64>>> {
                Box::pin(self.highest_of(key, name))
            }
        }
    };
}
