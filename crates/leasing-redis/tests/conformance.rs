//! The conformance suite against real redis-server: single instance, TLS, Redlock over
//! five, and Redlock with two of five down.

mod common;

use common::{service_env, RedisServer};
use leasing_abstractions::LeaseProvider;
use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
use leasing_testkit::conformance::{run_all, Subject};
use std::sync::Arc;
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(600);
/// Redlock's short leases are longer: an acquire is valid only if every quorum server
/// answered within the lease's validity (duration minus elapsed minus drift), and a loaded
/// CI machine (coverage build, 2 cores) has been seen to take longer than 600 ms.
const SHORT_REDLOCK: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_instance_passes_the_suite() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let build = || {
        RedisLeaseProvider::builder()
            .url(&url)
            .key_prefix("conf:")
            .build()
    };
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    run_all(&Subject::new(p, q).with_short_duration(SHORT)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_protected_instance_passes_the_suite_without_leaking_it() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let user = common::unique("conf-user");
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let mut admin = common::raw(&url).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .expect("acl setuser");
    let build = || {
        RedisLeaseProvider::builder()
            .url(&url)
            .username(&user)
            .password(&password)
            .build()
    };
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    let url_with_pw = url.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    let q: Arc<dyn LeaseProvider> = Arc::new(common::connect(&url_with_pw).await);
    run_all(
        &Subject::new(p, q)
            .with_short_duration(SHORT)
            .with_secrets(vec![password.clone()]),
    )
    .await;
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .expect("deluser");
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_instance_passes_the_suite() {
    let Some(url) = service_env("LEASING_REDIS_TLS_URL") else {
        return;
    };
    let Some(ca) = service_env("LEASING_REDIS_TLS_CA") else {
        return;
    };
    let build = || async {
        RedisLeaseProvider::builder()
            .url(&url)
            .ca_file(&ca)
            .expect("ca")
            .build()
            .await
    };
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect over TLS"));
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect over TLS"));
    run_all(&Subject::new(p, q).with_short_duration(SHORT)).await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_without_the_ca_is_rejected() {
    let Some(url) = service_env("LEASING_REDIS_TLS_URL") else {
        return;
    };
    let e = RedisLeaseProvider::builder()
        .url(&url)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect_err("an unknown CA must be rejected");
    assert!(
        !e.is_retryable() || e.kind() == leasing_abstractions::ErrorKind::ProviderUnavailable,
        "{e}"
    );
}

fn redlock_urls() -> Option<Vec<String>> {
    service_env("LEASING_REDLOCK_URLS").map(|v| v.split(',').map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_over_five_passes_the_suite() {
    let Some(urls) = redlock_urls() else { return };
    let build = || RedlockLeaseProvider::builder().urls(&urls).build();
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("build"));
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("build"));
    run_all(&Subject::new(p, q).with_short_duration(SHORT_REDLOCK)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_with_two_of_five_down_passes_the_suite() {
    let Some(shared) = redlock_urls() else { return };
    // Three shared instances plus two private ones that we stop before the run.
    let mut a = RedisServer::start().expect("start redis-server");
    let mut b = RedisServer::start().expect("start redis-server");
    let mut urls: Vec<String> = shared.into_iter().take(3).collect();
    urls.push(a.url());
    urls.push(b.url());
    let build = || {
        RedlockLeaseProvider::builder()
            .urls(&urls)
            .call_timeout(Duration::from_secs(1))
            .build()
    };
    let p = build().await.expect("build");
    assert_eq!(p.quorum(), 3);
    let p: Arc<dyn LeaseProvider> = Arc::new(p);
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("build"));
    // Touch all five while up, then take two down.
    let name = common::unique("warm");
    assert!(p.inspect(&name).await.expect("inspect").is_none());
    a.stop();
    b.stop();
    run_all(&Subject::new(p, q).with_short_duration(SHORT_REDLOCK)).await;
}
