#![allow(clippy::unwrap_used)]
//! The core hands every provider call its deadline (`provider::deadline()`), drops the
//! call when it passes with one error, and bounds the default `renew_many`.

use leasing_abstractions::provider::{self, ProviderLayer};
use leasing_abstractions::{
    AcquireRequest, BoxFuture, LeaseGrant, LeaseInfo, LeasePage, LeaseProvider, ListRequest,
    ProviderCapabilities,
};
use leasing_abstractions::{
    ErrorKind, InMemoryLeaseProvider, LeaseError, LeaseManager, LeaseOptions, Metadata, Operation,
    Result,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Records the time left before the deadline each call saw (read when the call runs: the
/// deadline is visible to the call's future, not to the code that builds it); hangs
/// operator calls when asked.
#[derive(Debug, Default)]
struct Seen {
    inner: InMemoryLeaseProvider,
    calls: Mutex<Vec<(&'static str, Option<Duration>)>>,
    hang: AtomicBool,
}

impl Seen {
    fn note(&self, what: &'static str) {
        self.calls
            .lock()
            .unwrap()
            .push((what, provider::time_left()));
    }

    fn saw(&self, what: &str) -> Vec<Option<Duration>> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, d)| *d)
            .collect()
    }

    async fn maybe_hang(&self) {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

impl ProviderLayer for Seen {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.inner
    }
    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            self.note("acquire");
            self.inner.try_acquire(request).await
        })
    }
    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.note("renew");
            self.inner.renew(grant).await
        })
    }
    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            self.note("renew_many");
            self.inner.renew_many(grants).await
        })
    }
    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.note("release");
            self.inner.release(grant).await
        })
    }
    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move {
            self.note("inspect");
            self.maybe_hang().await;
            self.inner.inspect(name).await
        })
    }
    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.note("break");
            self.maybe_hang().await;
            self.inner.break_lease(name).await
        })
    }
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(async move {
            self.note("list");
            self.maybe_hang().await;
            self.inner.list(request).await
        })
    }
}
leasing_abstractions::provider_layer!(Seen);

fn manager(seen: &Arc<Seen>) -> LeaseManager {
    let options = LeaseOptions::default()
        .with_default_lease_duration(secs(30.0))
        .with_call_timeout(secs(4.0));
    LeaseManager::new(Arc::clone(seen) as Arc<dyn LeaseProvider>, options).unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_call_the_core_makes_carries_its_deadline() {
    let seen = Arc::new(Seen::default());
    let m = manager(&seen);
    let lease = m.acquire("job").await.unwrap();
    // An acquisition may take the lease's duration (a later grant has expired anyway).
    assert_eq!(seen.saw("acquire"), [Some(secs(30.0))]);
    // The engine renews at 20 s (2/3 of 30 s); the call may take 3/4 of the 7 s left
    // before the safety deadline (27 s).
    tokio::time::sleep(secs(20.5)).await;
    assert_eq!(seen.saw("renew_many"), [Some(secs(5.25))]);
    // A manual renewal may take until the safety deadline: 27 s after the last
    // renewal's send (20 s), 26.5 s from now.
    lease.renew().await.unwrap();
    assert_eq!(seen.saw("renew"), [Some(secs(26.5))]);
    // Operator calls: the options' call timeout.
    m.inspect("job").await.unwrap().expect("held");
    m.list_all("").await.unwrap();
    assert_eq!(seen.saw("inspect"), [Some(secs(4.0))]);
    assert_eq!(seen.saw("list"), [Some(secs(4.0))]);
    // A release: the time left before the safety deadline (27 s after the manual
    // renewal's send), within [1 s, 30 s].
    lease.release().await.unwrap();
    assert_eq!(seen.saw("release"), [Some(secs(27.0))]);
    // Outside the core, no deadline.
    seen.inspect("job").await.unwrap();
    assert_eq!(seen.saw("inspect").last(), Some(&None));
}

#[tokio::test(start_paused = true)]
async fn an_operator_call_that_outlives_its_deadline_is_the_one_deadline_error() {
    let seen = Arc::new(Seen::default());
    let m = manager(&seen);
    let _lease = m.acquire("job").await.unwrap();
    seen.hang.store(true, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let inspect = m.inspect("job").await.unwrap_err();
    assert_eq!(started.elapsed(), secs(4.0), "bounded by the call timeout");
    let broken = m.break_lease("job").await.unwrap_err();
    let listed = m.list_all("").await.unwrap_err();
    for (e, op) in [
        (inspect, Operation::Inspect),
        (broken, Operation::Break),
        (listed, Operation::List),
    ] {
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
        assert!(e.is_retryable());
        assert_eq!(e.operation(), Some(op));
        assert!(e.to_string().contains("within its deadline (4s)"), "{e}");
    }
    // The lease is untouched by the failed break.
    seen.hang.store(false, Ordering::SeqCst);
    assert!(m.inspect("job").await.unwrap().is_some());
}

#[test]
fn a_zero_call_timeout_is_refused() {
    let e = LeaseOptions::default()
        .with_call_timeout(Duration::ZERO)
        .validate()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.field(), Some("call_timeout"));
}

/// A provider with single renewals only: `renew_many` is the trait's default.
#[derive(Debug)]
struct OneByOne {
    concurrency: usize,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

impl LeaseProvider for OneByOne {
    fn provider_name(&self) -> &'static str {
        "one-by-one"
    }
    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(secs(1.0), secs(60.0)).with_renew_concurrency(self.concurrency)
    }
    fn try_acquire<'a>(
        &'a self,
        _: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async { Ok(None) })
    }
    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            // Later grants answer sooner: the answers must still come back in order.
            let n: u64 = grant.name.parse().unwrap();
            tokio::time::sleep(Duration::from_millis(100 - n)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if n % 2 == 0 {
                Ok(())
            } else {
                Err(LeaseError::lost(grant.name.clone()))
            }
        })
    }
    fn release<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn inspect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async { Ok(None) })
    }
    fn break_lease<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(false) })
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_renew_many_keeps_to_the_declared_concurrency_and_the_order() {
    for (declared, expected) in [(3, 3), (0, 1), (64, 10)] {
        let p = OneByOne {
            concurrency: declared,
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        };
        let grants: Vec<Arc<LeaseGrant>> = (0..10)
            .map(|n| {
                let request = AcquireRequest::new(n.to_string(), secs(10.0), Metadata::new());
                Arc::new(LeaseGrant::new(
                    &request,
                    "id",
                    1,
                    std::time::SystemTime::now(),
                    tokio::time::Instant::now(),
                ))
            })
            .collect();
        let answers = p.renew_many(&grants).await;
        assert_eq!(
            p.most.load(Ordering::SeqCst),
            expected,
            "declared {declared}"
        );
        let kinds: Vec<Option<ErrorKind>> = answers
            .iter()
            .map(|a| a.as_ref().err().map(|e| e.kind()))
            .collect();
        let want: Vec<Option<ErrorKind>> = (0..10)
            .map(|n| (n % 2 == 1).then_some(ErrorKind::Lost))
            .collect();
        assert_eq!(kinds, want);
        for (a, g) in answers.iter().zip(&grants) {
            if let Err(e) = a {
                assert_eq!(e.message(), g.name);
            }
        }
    }
    assert_eq!(
        ProviderCapabilities::new(secs(1.0), secs(2.0)).renew_concurrency,
        ProviderCapabilities::DEFAULT_RENEW_CONCURRENCY
    );
}
