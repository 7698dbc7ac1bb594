//! A counting semaphore on leases: at most N holders of a name at once, each permit an
//! auto-renewing lease with its own fencing token.
//!
//! Permit `i` of semaphore `name` is the lease `name.permit-i` (`i` in `0..N`), so the
//! semaphore needs nothing from a backend beyond leases and works on every provider,
//! Redlock included: at most one holder per slot is the lease guarantee, so at most N
//! holders in all. A crashed holder's permit comes back when its lease expires; a
//! released one at once (waiters are woken by release notifications where the backend
//! has them).
//!
//! Fencing: a permit's token increases strictly *per slot*. A resource guarded by a
//! semaphore keeps the largest token it has seen for each slot name
//! ([`Permit::slot_name`]) and refuses a write whose token is smaller than that slot's.
//!
//! ```
//! # use leasing_abstractions::{semaphore::Semaphore, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
//! # use std::sync::Arc;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
//! let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
//! let downloads = Semaphore::builder(&manager, "downloads", 2).build()?;
//! let a = downloads.acquire().await?;
//! let b = downloads.acquire().await?;
//! assert!(downloads.try_acquire().await?.is_none()); // both permits are taken
//! assert_eq!(downloads.available().await?, 0);
//! a.release().await?;
//! let c = downloads.acquire().await?; // the released permit
//! assert_ne!(b.slot(), c.slot());
//! # Ok(()) }
//! ```
//!
//! Fairness: a caller that finds every permit taken queues behind a turnstile, the lease
//! `name.queue`: only its holder tries the permits, waking on each release, and hands the
//! turnstile on when it has one. A caller that just released a permit (or any newcomer)
//! cannot take the next free permit ahead of those already waiting: it queues for the
//! turnstile like them, and the turnstile passes on among its waiters at random (each
//! tries at once when woken by its release). `try_acquire` and the first look of
//! `acquire` take a free permit only when nobody queues. `docs/recipes.md` gives the
//! measured spread.

use crate::contract::LeaseInfo;
use crate::error::{ErrorKind, LeaseError, Operation, Result};
use crate::lease::{Lease, LostReason};
use crate::manager::LeaseManager;
use crate::metadata::{validate_metadata, Metadata};
use crate::options::{after, scale, AcquireOptions, LeaseDuration};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The most permits a semaphore may have: each is a lease, and a waiter tries them all
/// in a round.
pub const MAX_PERMITS: usize = 1024;

/// A counting semaphore of at most N permits (cheap to clone); see the
/// [module docs](self).
#[derive(Clone)]
pub struct Semaphore {
    inner: Arc<Inner>,
}

struct Inner {
    manager: LeaseManager,
    name: String,
    slots: Vec<String>,
    /// The turnstile lease held by the waiter first in line.
    queue: String,
    duration: LeaseDuration,
    retry_period: Duration,
    metadata: Metadata,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.inner.name)
            .field("permits", &self.inner.slots.len())
            .field("lease_duration", &self.inner.duration)
            .field("retry_period", &self.inner.retry_period)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Semaphore`]; see [`Semaphore::builder`].
#[must_use]
#[derive(Debug)]
pub struct SemaphoreBuilder {
    manager: LeaseManager,
    name: String,
    permits: usize,
    lease_duration: Option<LeaseDuration>,
    retry_period: Option<Duration>,
    metadata: Option<Metadata>,
}

impl SemaphoreBuilder {
    /// The lease duration of a permit: how long a crashed holder keeps it. Default: the
    /// manager's default lease duration.
    pub fn lease_duration(mut self, duration: impl Into<LeaseDuration>) -> Self {
        self.lease_duration = Some(duration.into());
        self
    }

    /// How often a waiter tries again when no release notification wakes it (jittered
    /// ±50 %). Default: the manager's acquire retry interval.
    pub fn retry_period(mut self, period: Duration) -> Self {
        self.retry_period = Some(period);
        self
    }

    /// Metadata stored with each permit's lease, replacing the manager's.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Checks the name, the count (1 to [`MAX_PERMITS`]), the duration against the
    /// provider and the manager's renewal options, and the metadata.
    ///
    /// # Errors
    /// `InvalidArgument` naming the field and the rule broken.
    pub fn build(self) -> Result<Semaphore> {
        if self.permits == 0 || self.permits > MAX_PERMITS {
            return Err(LeaseError::invalid_argument(
                "permits",
                format!("{} is outside 1..={MAX_PERMITS}", self.permits),
            ));
        }
        crate::name::validate_name(&self.name)?;
        let slots: Vec<String> = (0..self.permits)
            .map(|i| format!("{}.permit-{i}", self.name))
            .collect();
        // The longest slot name is the last one.
        crate::name::validate_name(&slots[slots.len() - 1]).map_err(|e| {
            LeaseError::invalid_argument(
                "name",
                format!(
                    "is too long for {} permits: the slot name {:?} breaks the name rules ({})",
                    self.permits,
                    slots[slots.len() - 1],
                    e.message()
                ),
            )
        })?;
        let options = self.manager.options();
        let duration = self
            .lease_duration
            .unwrap_or(options.default_lease_duration);
        self.manager
            .provider()
            .capabilities()
            .check_duration(duration)?;
        options.renewal_policy(duration)?;
        let retry_period = self.retry_period.unwrap_or(options.acquire_retry_interval);
        if retry_period.is_zero() {
            return Err(LeaseError::invalid_argument(
                "retry_period",
                "must be greater than zero",
            ));
        }
        let metadata = self.metadata.unwrap_or_else(|| options.metadata.clone());
        validate_metadata(&metadata)?;
        Ok(Semaphore {
            inner: Arc::new(Inner {
                manager: self.manager,
                queue: format!("{}.queue", self.name),
                name: self.name,
                slots,
                duration,
                retry_period,
                metadata,
            }),
        })
    }
}

impl Semaphore {
    /// A builder for a semaphore of `permits` permits named `name`, its permits leases of
    /// `manager`'s provider.
    pub fn builder(
        manager: &LeaseManager,
        name: impl Into<String>,
        permits: usize,
    ) -> SemaphoreBuilder {
        SemaphoreBuilder {
            manager: manager.clone(),
            name: name.into(),
            permits,
            lease_duration: None,
            retry_period: None,
            metadata: None,
        }
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many permits it has.
    pub fn permits(&self) -> usize {
        self.inner.slots.len()
    }

    /// The lease name of permit `slot` (`None` past the last).
    pub fn slot_name(&self, slot: usize) -> Option<&str> {
        self.inner.slots.get(slot).map(String::as_str)
    }

    fn options(&self) -> AcquireOptions {
        AcquireOptions::new()
            .duration(self.inner.duration)
            .metadata(self.inner.metadata.clone())
            .timeout(Some(Duration::ZERO))
    }

    /// Waits for a permit up to the manager's acquire timeout.
    ///
    /// # Errors
    /// `Timeout` when every permit stayed held (or the backend kept failing) until the
    /// timeout, with the last failure as its source; a failure that waiting cannot fix at
    /// once.
    ///
    /// # Cancellation safety
    /// Cancel-safe: dropping the future leaves no permit held.
    pub async fn acquire(&self) -> Result<Permit> {
        self.acquire_timeout(self.inner.manager.options().acquire_timeout)
            .await
    }

    /// Waits for a permit up to `timeout` (`None`: without limit).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancellation safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Permit> {
        let inner = &self.inner;
        let started = Instant::now();
        let deadline = timeout.map(|t| after(started, t));
        let _waiting = Waiting::new(inner);
        let mut rng = fastrand::Rng::new();
        // Fast path: a free permit is taken at once when nobody queues.
        if !self.queued().await? {
            if let (Some(p), _) = self.round(&mut rng).await? {
                return Ok(p);
            }
        }
        // Queue: hold the turnstile while waiting for a permit, so that a caller that just
        // released one (or any newcomer) cannot take the next free permit ahead of those
        // already waiting; the turnstile passes on among waiters at random.
        let mut ticket_options = AcquireOptions::new()
            .duration(inner.duration)
            .metadata(inner.metadata.clone())
            .retry_interval(inner.retry_period)
            .timeout(deadline.map(|d| d.saturating_duration_since(Instant::now())));
        if deadline.is_some_and(|d| Instant::now() >= d) {
            ticket_options = ticket_options.timeout(Some(Duration::ZERO));
        }
        let ticket = match inner
            .manager
            .acquire_with(&inner.queue, ticket_options)
            .await
        {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::Timeout => {
                return Err(self.timed_out(timeout.unwrap_or_default(), 1, Some(e)))
            }
            Err(e) => return Err(e),
        };
        let mut releases: Option<Vec<broadcast::Receiver<String>>> = None;
        let mut rounds: u32 = 1;
        loop {
            rounds += 1;
            let (permit, last) = self.round(&mut rng).await?;
            if let Some(p) = permit {
                // Hand the turnstile on at once (a release wakes the next waiter).
                let _ = ticket.release().await;
                return Ok(p);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(self.timed_out(timeout.unwrap_or_default(), rounds, last));
            }
            if releases.is_none() {
                let subscribed: Vec<_> = inner
                    .slots
                    .iter()
                    .filter_map(|s| inner.manager.provider().release_notifications(s))
                    .collect();
                releases = Some(subscribed);
                // A release between the round and the subscription would be missed.
                continue;
            }
            let pause = scale(inner.retry_period, 0.5 + rng.f64());
            let next = after(Instant::now(), pause);
            let wake = deadline.map_or(next, |d| d.min(next));
            wait_for_any(
                releases.as_mut().unwrap_or(&mut Vec::new()),
                &inner.slots,
                wake,
            )
            .await;
        }
    }

    /// Whether callers are queued for a permit (the turnstile is held).
    async fn queued(&self) -> Result<bool> {
        Ok(self
            .inner
            .manager
            .inspect(&self.inner.queue)
            .await?
            .is_some())
    }

    /// One round: tries each slot once, from a random one onwards. The permit, or the
    /// last failure seen (for the timeout's source).
    async fn round(&self, rng: &mut fastrand::Rng) -> Result<(Option<Permit>, Option<LeaseError>)> {
        let inner = &self.inner;
        let n = inner.slots.len();
        let start = rng.usize(..n);
        let mut last = None;
        for k in 0..n {
            let slot = (start + k) % n;
            match inner
                .manager
                .try_acquire_with(&inner.slots[slot], self.options())
                .await
            {
                Ok(Some(lease)) => return Ok((Some(self.permit(slot, lease)), None)),
                Ok(None) => {}
                Err(e) if e.is_retryable() || e.kind() == ErrorKind::Timeout => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Ok((None, last))
    }

    fn timed_out(&self, timeout: Duration, rounds: u32, last: Option<LeaseError>) -> LeaseError {
        let n = self.inner.slots.len();
        let e = LeaseError::new(
            ErrorKind::Timeout,
            format!(
                "no permit of semaphore {} ({n} permits) came free within {timeout:?} ({rounds} rounds over every permit)",
                self.inner.name
            ),
        )
        .with_lease_name(&self.inner.name)
        .with_operation(Operation::Acquire);
        match last {
            Some(cause) => e.with_source(cause),
            None => e,
        }
    }

    /// One round over the permits without waiting: a permit if one is free and nobody is
    /// queued for one, else `None`.
    ///
    /// # Errors
    /// The backend's error when no permit could be had and some attempt failed.
    ///
    /// # Cancellation safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self) -> Result<Option<Permit>> {
        if self.queued().await? {
            return Ok(None);
        }
        let (permit, last) = self.round(&mut fastrand::Rng::new()).await?;
        match (permit, last) {
            (Some(p), _) => Ok(Some(p)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    fn permit(&self, slot: usize, lease: Lease) -> Permit {
        let count = PermitCount::new(&self.inner);
        Permit {
            lease,
            slot,
            _count: count,
        }
    }

    /// Who holds which permit now: `(slot, holder)` for each held permit, asking the
    /// backend for each slot.
    ///
    /// # Errors
    /// The backend's error.
    pub async fn holders(&self) -> Result<Vec<(usize, LeaseInfo)>> {
        let manager = &self.inner.manager;
        let found =
            futures::future::join_all(self.inner.slots.iter().map(|s| manager.inspect(s))).await;
        let mut holders = Vec::new();
        for (slot, info) in found.into_iter().enumerate() {
            if let Some(info) = info? {
                holders.push((slot, info));
            }
        }
        Ok(holders)
    }

    /// How many permits are free now (a snapshot: it may change at once).
    ///
    /// # Errors
    /// The backend's error.
    pub async fn available(&self) -> Result<usize> {
        Ok(self.inner.slots.len() - self.holders().await?.len())
    }
}

async fn wait_for_any(
    releases: &mut [broadcast::Receiver<String>],
    slots: &[String],
    wake: Instant,
) {
    if releases.is_empty() {
        tokio::time::sleep_until(wake).await;
        return;
    }
    let any = futures::future::select_all(releases.iter_mut().map(|rx| {
        Box::pin(async move {
            loop {
                match rx.recv().await {
                    Ok(name) if slots.contains(&name) => return,
                    Ok(_) => {}
                    // Missed messages may include ours: look again.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        })
    }));
    tokio::select! {
        () = tokio::time::sleep_until(wake) => {}
        _ = any => {}
    }
}

/// Counts a caller waiting for a permit in `leasing.semaphore.waiters.current`.
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.manager.metrics().permit_waiters(&inner.name, 1);
        Self(inner)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.manager.metrics().permit_waiters(&self.0.name, -1);
    }
}

/// Counts a held permit in `leasing.semaphore.permits.current`.
struct PermitCount(Arc<Inner>);

impl PermitCount {
    fn new(inner: &Arc<Inner>) -> Self {
        inner.manager.metrics().permits(&inner.name, 1);
        Self(Arc::clone(inner))
    }
}

impl Drop for PermitCount {
    fn drop(&mut self) {
        self.0.manager.metrics().permits(&self.0.name, -1);
    }
}

/// One permit of a [`Semaphore`]: a held, auto-renewing lease. Dropping it releases it.
#[must_use = "dropping a Permit releases it at once; bind it for as long as you need it"]
pub struct Permit {
    lease: Lease,
    slot: usize,
    _count: PermitCount,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("slot", &self.slot)
            .field("lease", &self.lease)
            .finish()
    }
}

impl Permit {
    /// Which permit this is (`0..N`).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The lease name of this permit: the key under which a fenced resource keeps this
    /// permit's largest token.
    pub fn slot_name(&self) -> &str {
        self.lease.name()
    }

    /// The fencing token: strictly greater than every earlier holder's of this slot.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// Whether the permit is still held (answered from the safety deadline).
    pub fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    /// Resolves when the permit is lost (at its safety deadline at the latest). Cancel-safe.
    pub async fn lost(&self) -> LostReason {
        self.lease.lost().await
    }

    /// A token cancelled when the permit ends; each call a new child token.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.lease.cancellation_token()
    }

    /// The lease behind the permit.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Gives the permit back at once (waking a waiter where the backend notifies).
    ///
    /// # Errors
    /// The release error; the permit counts as returned either way (the backend expires
    /// it after its duration).
    pub async fn release(self) -> Result<()> {
        self.lease.release().await
    }
}
