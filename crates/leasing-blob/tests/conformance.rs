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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sas_passes_the_suite() {
    let Some(url) = azurite() else { return };
    let c = container("conf-sas");
    let sas = common::account_sas();
    let sig = sas.split("sig=").nth(1).expect("sig").to_owned();
    let p: Arc<dyn LeaseProvider> = Arc::new(common::sas_provider(&url, &c));
    let q: Arc<dyn LeaseProvider> = Arc::new(common::sas_provider(&url, &c));
    run_all(&Subject::new(p, q).with_secrets(vec![sas, sig])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_over_https_passes_the_suite() {
    let Some((url, ca)) = common::azurite_https() else {
        return;
    };
    let c = container("conf-token");
    let token = common::azurite_jwt();
    let p: Arc<dyn LeaseProvider> = Arc::new(common::token_provider(&url, &ca, &c, &token));
    let q: Arc<dyn LeaseProvider> = Arc::new(common::token_provider(&url, &ca, &c, &token));
    run_all(&Subject::new(p, q).with_secrets(vec![token])).await;
}
