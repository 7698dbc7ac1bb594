//! The recipe suite (leader election, semaphore) against Azurite.

mod common;

use common::{azurite, container, key_provider};
use leasing_abstractions::LeaseProvider;
use leasing_testkit::conformance::Subject;
use leasing_testkit::recipes::run_all;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azurite_passes_the_recipes() {
    let Some(url) = azurite() else { return };
    let c = container("recipes");
    let p: Arc<dyn LeaseProvider> = Arc::new(key_provider(&url, &c));
    let q: Arc<dyn LeaseProvider> = Arc::new(key_provider(&url, &c));
    run_all(&Subject::new(p, q)).await;
}
