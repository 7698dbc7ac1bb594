//! The conformance suite against the in-memory provider (real time: the suite waits for
//! expiry the way it does against a real server).

use leasing_abstractions::{InMemoryLeaseProvider, LeaseProvider};
use leasing_testkit::conformance::{self, Subject};
use std::sync::Arc;
use std::time::Duration;

fn subject() -> Subject {
    let p = InMemoryLeaseProvider::new();
    let fresh: Arc<dyn LeaseProvider> = Arc::new(p.clone());
    Subject::new(Arc::new(p), fresh).with_short_duration(Duration::from_millis(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_passes_the_whole_suite() {
    conformance::run_all(&subject()).await;
}

#[tokio::test]
async fn suite_detects_a_broken_provider() {
    // A provider that grants every request must fail mutual exclusion.
    let result = tokio::spawn(async {
        let s = Subject::new(
            Arc::new(broken::AlwaysGrants::default()),
            Arc::new(broken::AlwaysGrants::default()),
        );
        conformance::mutual_exclusion(&s).await;
    })
    .await;
    assert!(
        result.is_err(),
        "the suite accepted a provider without mutual exclusion"
    );
}

mod broken {
    use leasing_abstractions::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime};

    #[derive(Debug, Default)]
    pub(crate) struct AlwaysGrants(AtomicU64);
    impl LeaseProvider for AlwaysGrants {
        fn provider_name(&self) -> &'static str {
            "broken"
        }
        fn capabilities(&self) -> ProviderCapabilities {
            ProviderCapabilities::new(Duration::from_millis(1), Duration::from_secs(60))
        }
        fn try_acquire<'a>(
            &'a self,
            r: &'a AcquireRequest,
        ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
            Box::pin(async move {
                let t = self.0.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Some(LeaseGrant::new(
                    r,
                    t.to_string(),
                    t,
                    SystemTime::now(),
                    tokio::time::Instant::now(),
                )))
            })
        }
        fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move { Ok(()) })
        }
        fn release<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move { Ok(()) })
        }
        fn inspect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
            Box::pin(async move { Ok(None) })
        }
        fn break_lease<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async move { Ok(false) })
        }
    }
}
