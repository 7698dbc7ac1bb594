#![allow(clippy::unwrap_used)]
//! The fault-injecting provider itself.

mod common;

use common::*;
use leasing_abstractions::fault::{Fault, FaultInjectingProvider};
use leasing_abstractions::Operation;
use leasing_abstractions::*;
use std::sync::Arc;
use tokio::time::Instant;

fn req(name: &str) -> AcquireRequest {
    AcquireRequest::new(name, secs(30.0), Metadata::new())
}

#[tokio::test(start_paused = true)]
async fn scripted_faults_apply_in_order_per_operation() {
    let store = InMemoryLeaseProvider::new();
    let p = FaultInjectingProvider::new(Arc::new(store.clone()));
    let c = p.control();
    c.script(
        Operation::Acquire,
        [Fault::Unavailable, Fault::Lost, Fault::LoseReply],
    );
    assert_eq!(
        p.try_acquire(&req("a")).await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable
    );
    assert_eq!(
        p.try_acquire(&req("a")).await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable,
        "Lost only means Lost for renew"
    );
    // LoseReply: the grant happened on the backend, the caller saw an error.
    assert_eq!(
        p.try_acquire(&req("a")).await.unwrap_err().kind(),
        ErrorKind::ProviderUnavailable
    );
    assert!(store.inspect("a").await.unwrap().is_some());
    let g = store.try_acquire(&req("b")).await.unwrap().unwrap();
    c.script(Operation::Renew, [Fault::Lost]);
    assert_eq!(p.renew(&g).await.unwrap_err().kind(), ErrorKind::Lost);
    p.renew(&g).await.unwrap();
    c.script(Operation::Inspect, [Fault::Unavailable]);
    assert!(p.inspect("b").await.is_err());
    assert!(p.inspect("b").await.unwrap().is_some());
    c.script(Operation::Break, [Fault::Delay(secs(2.0))]);
    let t = Instant::now();
    assert!(p.break_lease("b").await.unwrap());
    assert_eq!(Instant::now() - t, secs(2.0));
    p.release(&g).await.unwrap();
    assert_eq!(c.calls(Operation::Acquire), 3);
    assert_eq!(c.calls(Operation::Renew), 2);
    assert_eq!(c.calls(Operation::Inspect), 2);
    assert_eq!(c.calls(Operation::Break), 1);
    assert_eq!(c.calls(Operation::Release), 1);
    assert!(format!("{p:?}").contains("FaultControl"));
    assert_eq!(p.provider_name(), "in-memory");
    assert!(p.release_notifications("a").is_some());
}

#[tokio::test(start_paused = true)]
async fn latency_partition_and_clear() {
    let p = FaultInjectingProvider::new(Arc::new(InMemoryLeaseProvider::new()));
    let c = p.control();
    c.set_latency(secs(0.5));
    let t = Instant::now();
    let g = p.try_acquire(&req("a")).await.unwrap().unwrap();
    assert_eq!(Instant::now() - t, secs(0.5));
    c.set_partitioned(true);
    assert!(p.renew(&g).await.is_err());
    assert!(p.renew_many(&[Arc::new(g.clone())]).await[0].is_err());
    c.clear();
    let t = Instant::now();
    p.renew(&g).await.unwrap();
    assert_eq!(Instant::now(), t, "no latency after clear");
}

#[tokio::test(start_paused = true)]
async fn random_faults_are_seeded_and_repeatable() {
    let p = FaultInjectingProvider::new(Arc::new(InMemoryLeaseProvider::new()));
    let c = p.control();
    let g = p.try_acquire(&req("a")).await.unwrap().unwrap();
    let run = |seed| {
        let p = p.clone();
        let g = g.clone();
        async move {
            p.control()
                .fail_randomly(Operation::Renew, 0.5, Fault::Unavailable, seed);
            let mut pattern = Vec::new();
            for _ in 0..64 {
                pattern.push(p.renew(&g).await.is_ok());
            }
            pattern
        }
    };
    let a = run(42).await;
    let b = run(42).await;
    assert_eq!(a, b, "same seed, same faults");
    let failures = a.iter().filter(|ok| !**ok).count();
    assert!((10..=54).contains(&failures), "about half fail: {failures}");
    c.fail_randomly(Operation::Renew, 0.0, Fault::Unavailable, 1);
    assert!(p.renew(&g).await.is_ok(), "probability 0 removes the rule");
}

#[tokio::test(start_paused = true)]
async fn renew_many_keeps_order_and_batches_the_clean_grants() {
    let store = InMemoryLeaseProvider::new();
    let counting = Arc::new(Counting::new(Arc::new(store.clone())));
    let p = FaultInjectingProvider::new(counting.clone());
    let mut grants = Vec::new();
    for i in 0..5 {
        grants.push(Arc::new(
            store
                .try_acquire(&req(&format!("g{i}")))
                .await
                .unwrap()
                .unwrap(),
        ));
    }
    p.control().script(
        Operation::Renew,
        [Fault::Delay(secs(0.0)), Fault::Unavailable, Fault::Lost],
    );
    let r = p.renew_many(&grants).await;
    let kinds: Vec<_> = r
        .iter()
        .map(|r| r.as_ref().err().map(LeaseError::kind))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            Some(ErrorKind::ProviderUnavailable),
            Some(ErrorKind::Lost),
            None,
            None
        ]
    );
    assert_eq!(
        *counting.sizes.lock().unwrap(),
        [2],
        "the two clean grants went in one batch"
    );
    p.control()
        .script(Operation::Renew, std::iter::repeat_n(Fault::Unavailable, 5));
    assert!(p.renew_many(&grants).await.iter().all(Result::is_err));
    assert_eq!(counting.batches(), 1, "no empty batch is sent");
}
