//! The recipe suite (leader election, semaphore) against real redis-server: single
//! instance, Redlock over five, and Cluster.

mod common;

use common::service_env;
use leasing_abstractions::LeaseProvider;
use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
use leasing_testkit::conformance::Subject;
use leasing_testkit::recipes::run_all;
use std::sync::Arc;

fn urls(var: &str) -> Option<Vec<String>> {
    service_env(var).map(|v| v.split(',').map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_instance_passes_the_recipes() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let build = || {
        RedisLeaseProvider::builder()
            .url(&url)
            .key_prefix("recipes:")
            .build()
    };
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    run_all(&Subject::new(p, q)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_over_five_passes_the_recipes() {
    let Some(urls) = urls("LEASING_REDLOCK_URLS") else {
        return;
    };
    let build = || RedlockLeaseProvider::builder().urls(&urls).build();
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("build"));
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("build"));
    run_all(&Subject::new(p, q)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_passes_the_recipes() {
    let Some(urls) = urls("LEASING_REDIS_CLUSTER_URLS") else {
        return;
    };
    let build = || {
        RedisLeaseProvider::builder()
            .cluster_urls(&urls)
            .key_prefix("recipes:")
            .build()
    };
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    run_all(&Subject::new(p, q)).await;
}
