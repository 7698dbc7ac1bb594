//! The recipe suite on the in-memory provider.

use leasing_abstractions::{InMemoryLeaseProvider, LeaseProvider};
use leasing_testkit::conformance::Subject;
use leasing_testkit::recipes;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_passes_the_recipe_suite() {
    let store = InMemoryLeaseProvider::new();
    let p: Arc<dyn LeaseProvider> = Arc::new(store.clone());
    let q: Arc<dyn LeaseProvider> = Arc::new(store);
    recipes::run_all(&Subject::new(p, q)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_memory_fenced_resource_refuses_stale_writes() {
    let store = InMemoryLeaseProvider::new();
    let p: Arc<dyn LeaseProvider> = Arc::new(store.clone());
    let q: Arc<dyn LeaseProvider> = Arc::new(store);
    let resource = leasing_abstractions::fence::InMemoryFencedResource::new();
    recipes::fenced_resource(&Subject::new(p, q), &resource).await;
}
