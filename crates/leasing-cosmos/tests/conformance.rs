//! The conformance suite against the patched Cosmos DB emulator.

mod common;

use leasing_abstractions::LeaseProvider;
use leasing_testkit::conformance::{run_all, Subject};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emulator_passes_the_suite() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let key = cs
        .split(';')
        .find_map(|p| p.strip_prefix("AccountKey="))
        .expect("a key in the connection string")
        .to_owned();
    let db = common::unique("conf");
    let p: Arc<dyn LeaseProvider> = Arc::new(common::provider(&cs, &db).await);
    let q: Arc<dyn LeaseProvider> = Arc::new(common::provider(&cs, &db).await);
    run_all(&Subject::new(p, q).with_secrets(vec![key, cs])).await;
}
