#![allow(clippy::unwrap_used)]
//! The counting semaphore on the in-memory provider under `tokio::time::pause()`: never
//! more than N holders, tokens increasing per permit, a crashed holder's permit coming
//! back after its duration, release waking a waiter, fairness, and bad input.

mod common;

use common::*;
use leasing_abstractions::fault::Fault;
use leasing_abstractions::semaphore::{Semaphore, MAX_PERMITS};
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

fn options() -> LeaseOptions {
    LeaseOptions::default()
        .with_default_lease_duration(secs(10.0))
        .with_acquire_retry_interval(secs(0.2))
}

#[tokio::test(start_paused = true)]
async fn never_more_than_n_holders_and_tokens_increase_per_permit() {
    let rig = rig(options());
    let sem = Semaphore::builder(&rig.manager, "pool", 3).build().unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tokens: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (sem, inside, most, tokens) =
            (sem.clone(), inside.clone(), most.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let p = sem.acquire_timeout(None).await.unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokens
                    .lock()
                    .unwrap()
                    .entry(p.slot_name().to_owned())
                    .or_default()
                    .push(p.fencing_token());
                tokio::time::sleep(Duration::from_millis(50 + 37 * ((w + i) % 5) as u64)).await;
                assert!(p.is_held());
                inside.fetch_sub(1, Ordering::SeqCst);
                p.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        3,
        "all permits used, never more"
    );
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 3, "{:?}", tokens.keys());
    assert_eq!(tokens.values().map(Vec::len).sum::<usize>(), 80);
    for (slot, ts) in tokens.iter() {
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{slot}: {ts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn full_means_none_and_holders_say_who() {
    let rig = rig(options());
    let sem = Semaphore::builder(&rig.manager, "pool", 2)
        .metadata([("owner".to_owned(), "me".to_owned())].into())
        .build()
        .unwrap();
    assert_eq!(sem.permits(), 2);
    assert_eq!(sem.name(), "pool");
    assert_eq!(sem.slot_name(1), Some("pool.permit-1"));
    assert_eq!(sem.slot_name(2), None);
    assert_eq!(sem.available().await.unwrap(), 2);
    let a = sem.try_acquire().await.unwrap().unwrap();
    let b = sem.try_acquire().await.unwrap().unwrap();
    assert_ne!(a.slot(), b.slot());
    assert!(sem.try_acquire().await.unwrap().is_none());
    assert_eq!(sem.available().await.unwrap(), 0);
    let holders = sem.holders().await.unwrap();
    assert_eq!(holders.len(), 2);
    for (slot, info) in &holders {
        assert_eq!(info.name, format!("pool.permit-{slot}"));
        assert_eq!(info.metadata.get("owner").map(String::as_str), Some("me"));
    }
    let err = sem.acquire_timeout(Some(secs(1.0))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let msg = err.to_string();
    assert!(
        msg.contains("semaphore pool (2 permits)") && msg.contains("1s"),
        "{msg}"
    );
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        source.is_none(),
        "held permits are not failures: {source:?}"
    );
    drop(a);
    settle().await;
    assert_eq!(sem.available().await.unwrap(), 1);
    assert!(format!("{sem:?}").contains("permits: 2"));
    assert!(format!("{b:?}").contains("slot"));
}

/// A holder that stops renewing (crashed, cut off) keeps its permit until the lease
/// expires, then a waiter gets it; a released permit wakes a waiter at once.
#[tokio::test(start_paused = true)]
async fn a_crashed_holders_permit_comes_back_and_a_release_wakes_a_waiter() {
    let rig = rig(options());
    let sem = Semaphore::builder(&rig.manager, "pool", 1)
        .retry_period(secs(5.0))
        .build()
        .unwrap();
    // The crashed holder: renewals and release never reach the backend.
    let crashed = sem.acquire().await.unwrap();
    rig.faults.script(Operation::Renew, vec![Fault::Hang; 64]);
    rig.faults.script(Operation::Release, vec![Fault::Hang; 64]);
    let start = Instant::now();
    let waiter = tokio::spawn({
        let sem = sem.clone();
        async move { (sem.acquire_timeout(None).await.unwrap(), Instant::now()) }
    });
    let _ = crashed.lost().await;
    let (p, at) = waiter.await.unwrap();
    assert!(
        at - start >= secs(10.0),
        "got it at {:?}, before it expired",
        at - start
    );
    assert!(
        at - start <= secs(10.0) + secs(5.0 * 1.5),
        "{:?}",
        at - start
    );
    assert!(p.fencing_token() > crashed.fencing_token());
    rig.faults.clear();
    // Release wakes at once.
    let waiter = tokio::spawn({
        let sem = sem.clone();
        async move { (sem.acquire_timeout(None).await.unwrap(), Instant::now()) }
    });
    tokio::time::sleep(secs(1.0)).await;
    let released = Instant::now();
    p.release().await.unwrap();
    let (_, at) = waiter.await.unwrap();
    assert_eq!(
        at, released,
        "woken by the release, not the 5 s retry period"
    );
}

/// Fairness: 6 waiters looping on 2 permits (acquire, hold 300 ms, release, acquire
/// again) each get a share. Without the turnstile a releaser took its own permit back
/// first: [400, 64, 82, 116, 66, 76]. Prints the spread for docs/recipes.md.
#[tokio::test(start_paused = true)]
async fn waiters_are_not_starved() {
    let rig = rig(options());
    let sem = Semaphore::builder(&rig.manager, "pool", 2).build().unwrap();
    let until = Instant::now() + secs(120.0);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while Instant::now() < until {
                let p = sem.acquire_timeout(None).await.unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                p.release().await.unwrap();
            }
            n
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.unwrap());
    }
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    let total: u32 = counts.iter().sum();
    println!("acquisitions per waiter: {counts:?} (min {min}, max {max}, total {total})");
    // 2 permits × 120 s / 0.3 s = 800 at most.
    assert!(total > 400, "{counts:?}");
    assert!(
        min * 3 >= total / 6,
        "a waiter got less than a third of a fair share: {counts:?}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_when_built() {
    let rig = rig(options());
    let m = &rig.manager;
    let long = "n".repeat(250);
    for (built, field) in [
        (Semaphore::builder(m, "pool", 0).build(), "permits"),
        (
            Semaphore::builder(m, "pool", MAX_PERMITS + 1).build(),
            "permits",
        ),
        (Semaphore::builder(m, "bad name", 2).build(), "name"),
        (
            Semaphore::builder(m, long.as_str(), 2).build(),
            "too long for 2 permits",
        ),
        (
            Semaphore::builder(m, "pool", 2)
                .retry_period(Duration::ZERO)
                .build(),
            "retry_period",
        ),
        (
            Semaphore::builder(m, "pool", 2)
                .lease_duration(Duration::ZERO)
                .build(),
            "duration",
        ),
        (
            Semaphore::builder(m, "pool", 2)
                .metadata([("bad key".to_owned(), "x".to_owned())].into())
                .build(),
            "metadata",
        ),
    ] {
        let err = built.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    assert!(Semaphore::builder(m, "n".repeat(240), MAX_PERMITS)
        .build()
        .is_ok());
}

/// A backend failure that waiting cannot fix ends the wait at once; a transient one is
/// retried and, if it lasts, becomes the timeout's source.
#[tokio::test(start_paused = true)]
async fn backend_failures() {
    let rig = rig(options());
    let sem = Semaphore::builder(&rig.manager, "pool", 2).build().unwrap();
    rig.faults
        .script(Operation::Acquire, vec![Fault::Unavailable; 1000]);
    let err = sem.try_acquire().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ProviderUnavailable, "{err}");
    let err = sem.acquire_timeout(Some(secs(2.0))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.contains("unavailable") || source.contains("Unavailable"),
        "{source}"
    );
    rig.faults.clear();
    let p = sem.acquire().await.unwrap();
    assert!(p.is_held());
    assert!(!p.cancellation_token().is_cancelled());
    assert_eq!(p.lease().name(), p.slot_name());
}

/// Without release notifications (Blob, Cosmos) a waiter polls every retry period; a
/// waiter that times out while another holds the turnstile says so.
#[tokio::test(start_paused = true)]
async fn without_notifications_waiters_poll_and_queued_waiters_time_out() {
    let m = LeaseManager::new(Arc::new(Silent(InMemoryLeaseProvider::new())), options()).unwrap();
    let sem = Semaphore::builder(&m, "pool", 1)
        .retry_period(secs(1.0))
        .build()
        .unwrap();
    let held = sem.acquire().await.unwrap();
    // The first waiter holds the turnstile; the second times out queued behind it.
    let first = tokio::spawn({
        let sem = sem.clone();
        async move { (sem.acquire_timeout(None).await.unwrap(), Instant::now()) }
    });
    tokio::time::sleep(secs(0.5)).await;
    let err = sem.acquire_timeout(Some(secs(2.0))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        source.contains("pool.queue"),
        "the turnstile wait: {source}"
    );
    // Queued callers make try_acquire say "none" even with a free permit.
    let released = Instant::now();
    held.release().await.unwrap();
    let (p, at) = first.await.unwrap();
    assert!(at - released <= secs(1.5), "{:?}", at - released);
    assert_eq!(p.slot(), 0);
}

/// A failure that waiting cannot fix ends the wait at once; a failing queue check fails
/// `try_acquire`, `available` and `acquire`.
#[tokio::test(start_paused = true)]
async fn refusals_end_the_wait() {
    let m = LeaseManager::new(Arc::new(Refusing(InMemoryLeaseProvider::new())), options()).unwrap();
    let sem = Semaphore::builder(&m, "pool", 3).build().unwrap();
    let start = Instant::now();
    assert_eq!(
        sem.acquire().await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        sem.try_acquire().await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    assert_eq!(Instant::now(), start, "no waiting");
    let rig = rig(options());
    let sem = Semaphore::builder(&rig.manager, "pool", 1).build().unwrap();
    rig.faults
        .script(Operation::Inspect, vec![Fault::Unavailable; 3]);
    assert_eq!(
        sem.try_acquire().await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable
    );
    assert!(sem.available().await.is_err());
    assert_eq!(
        sem.acquire().await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable
    );
}
