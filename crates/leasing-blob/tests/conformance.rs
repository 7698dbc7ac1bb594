//! The conformance suite against Azurite: account key, SAS, and a token over HTTPS.

mod common;

use common::{azurite, container, key_provider};
use leasing_abstractions::LeaseProvider;
use leasing_blob::DEV_ACCOUNT_KEY;
use leasing_testkit::conformance::{run_all, Subject};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_key_passes_the_suite() {
    let Some(url) = azurite() else { return };
    let c = container("conf-key");
    let p: Arc<dyn LeaseProvider> = Arc::new(key_provider(&url, &c));
    let q: Arc<dyn LeaseProvider> = Arc::new(key_provider(&url, &c));
    run_all(&Subject::new(p, q).with_secrets(vec![DEV_ACCOUNT_KEY.to_owned()])).await;
}
