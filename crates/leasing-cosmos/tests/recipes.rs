//! The recipe suite (leader election, semaphore) against the patched Cosmos DB emulator.

mod common;

use leasing_abstractions::LeaseProvider;
use leasing_testkit::conformance::Subject;
use leasing_testkit::recipes::run_all;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emulator_passes_the_recipes() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let db = common::unique("recipes");
    let p: Arc<dyn LeaseProvider> = Arc::new(common::provider(&cs, &db).await);
    let q: Arc<dyn LeaseProvider> = Arc::new(common::provider(&cs, &db).await);
    run_all(&Subject::new(p, q)).await;
}
