#![allow(clippy::unwrap_used)]
//! A provider that asks for every lease to be renewed now (`renew_now_signals`): the
//! renewals go out at once, and a grant the backend no longer has is reported `Lost`
//! without waiting for the next scheduled renewal. Deterministic (paused clock).

mod common;

use common::*;
use leasing_abstractions::provider::ProviderLayer;
use leasing_abstractions::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// In-memory, counting renewals, with a signal the test fires.
#[derive(Debug)]
struct Signalling {
    inner: InMemoryLeaseProvider,
    signal: broadcast::Sender<()>,
    renewals: AtomicU64,
}

impl ProviderLayer for Signalling {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.inner
    }
    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        self.inner.renew(grant)
    }
    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        self.renewals
            .fetch_add(grants.len() as u64, Ordering::SeqCst);
        self.inner.renew_many(grants)
    }
    fn renew_now_signals(&self) -> Option<broadcast::Receiver<()>> {
        Some(self.signal.subscribe())
    }
}
leasing_abstractions::provider_layer!(Signalling);

fn signalling() -> Arc<Signalling> {
    Arc::new(Signalling {
        inner: InMemoryLeaseProvider::new(),
        signal: broadcast::channel(4).0,
        renewals: AtomicU64::new(0),
    })
}

fn options() -> LeaseOptions {
    LeaseOptions::default().with_default_lease_duration(secs(30.0))
}

#[tokio::test(start_paused = true)]
async fn a_signal_renews_every_waiting_lease_at_once() {
    let p = signalling();
    let m = LeaseManager::new(p.clone(), options()).unwrap();
    let a = m.acquire("a").await.unwrap();
    let b = m.acquire("b").await.unwrap();
    tokio::time::sleep(secs(1.0)).await;
    settle().await;
    assert_eq!(
        p.renewals.load(Ordering::SeqCst),
        0,
        "nothing is due after 1 s of 30"
    );
    let before = a.expires_at().unwrap();
    p.signal.send(()).unwrap();
    settle().await;
    assert_eq!(p.renewals.load(Ordering::SeqCst), 2, "both renewed at once");
    assert!(
        a.expires_at().unwrap() > before,
        "the renewal moved the deadline"
    );
    assert!(a.is_held() && b.is_held());
    // The schedule goes on from the new renewal.
    tokio::time::sleep(secs(5.0)).await;
    settle().await;
    assert_eq!(p.renewals.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_grant_the_backend_lost_is_reported_at_the_signal_not_at_the_next_renewal() {
    let p = signalling();
    let m = LeaseManager::new(p.clone(), options()).unwrap();
    let lease = m.acquire("job").await.unwrap();
    let lost = lease.events();
    tokio::time::sleep(secs(1.0)).await;
    // The backend forgot the grant (as a server restarted without persistence).
    assert!(p.inner.break_lease("job").await.unwrap());
    assert!(lease.is_held(), "nobody has told the holder yet");
    let signalled = Instant::now();
    p.signal.send(()).unwrap();
    let reason = tokio::time::timeout(secs(60.0), lease.lost())
        .await
        .unwrap();
    assert!(matches!(reason, LostReason::Revoked(_)), "{reason:?}");
    assert_eq!(
        Instant::now(),
        signalled,
        "told at the signal, no clock time passed"
    );
    assert!(!lease.is_held());
    drop(lost);
}

#[tokio::test(start_paused = true)]
async fn lagged_signals_count_once_and_manual_leases_are_left_alone() {
    let p = signalling();
    let m = LeaseManager::new(p.clone(), options()).unwrap();
    let _a = m.acquire("a").await.unwrap();
    // More signals than the channel holds before the scheduler reads: one round.
    for _ in 0..10 {
        let _ = p.signal.send(());
    }
    settle().await;
    let n = p.renewals.load(Ordering::SeqCst);
    assert!(
        (1..=5).contains(&n),
        "a lagged receiver renews, not once per signal: {n}"
    );
    // Manual leases are not renewed by a signal: their holders renew them.
    let manual_manager = LeaseManager::new(p.clone(), options().with_auto_renew(false)).unwrap();
    let manual = manual_manager.acquire("manual").await.unwrap();
    let before = p.renewals.load(Ordering::SeqCst);
    p.signal.send(()).unwrap();
    settle().await;
    assert_eq!(
        p.renewals.load(Ordering::SeqCst),
        before + 1,
        "only the auto-renewed lease"
    );
    assert!(manual.is_held());
}

/// A provider whose signal channel closes at once: the scheduler stops listening and
/// renews on schedule as before.
#[derive(Debug)]
struct Closed(InMemoryLeaseProvider);

impl ProviderLayer for Closed {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.0
    }
    fn renew_now_signals(&self) -> Option<broadcast::Receiver<()>> {
        Some(broadcast::channel(1).1)
    }
}
leasing_abstractions::provider_layer!(Closed);

#[tokio::test(start_paused = true)]
async fn a_closed_signal_channel_leaves_the_schedule_alone() {
    let m = LeaseManager::new(Arc::new(Closed(InMemoryLeaseProvider::new())), options()).unwrap();
    let lease = m.acquire("a").await.unwrap();
    // Still held after three lease durations: the renewals went on (without them the
    // safety deadline would have passed).
    tokio::time::sleep(secs(95.0)).await;
    settle().await;
    assert!(lease.is_held());
    assert_eq!(lease.state(), LeaseState::Held);
}
