//! The error contract (`leasing_testkit::errors`) on one server, Redlock and Cluster: a
//! dead endpoint, refused credentials and a server that answers nonsense are reported
//! alike, and so are a held name and a lost grant.

mod common;

use common::{service_env, GoneAfterBuild, RedisServer};
use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
use leasing_testkit::errors::{check_conflict_and_lost, check_situation, Situation};
use std::sync::Arc;
use std::time::Duration;

fn refused() -> String {
    format!("redis://127.0.0.1:{}", common::free_port())
}

/// A loopback "server" that answers every command with an error code no rule knows.
async fn nonsense() -> (String, tokio::task::JoinHandle<()>) {
    let (addr, task) = common::answering_server(b"-WEIRD no rule for this\r\n").await;
    (format!("redis://{addr}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_unavailable_at_build_and_on_every_operation() {
    let single = RedisLeaseProvider::builder()
        .url(refused())
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await;
    assert_eq!(
        check_situation(Situation::Unavailable, single).await,
        "build"
    );
    let redlock = RedlockLeaseProvider::builder()
        .urls([refused(), refused(), refused()])
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await;
    assert_eq!(
        check_situation(Situation::Unavailable, redlock).await,
        "build"
    );
    // Up at build, gone after it: every operation.
    let Some(urls) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let gone = GoneAfterBuild::start(1, &urls, "127.0.0.1").await;
    let single = RedisLeaseProvider::builder()
        .url(&gone.urls[0])
        .call_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("build through the proxy");
    gone.cut();
    assert_eq!(
        check_situation(Situation::Unavailable, Ok(single)).await,
        "every operation"
    );
    let gone = GoneAfterBuild::start(3, &urls, "127.0.0.1").await;
    let redlock = RedlockLeaseProvider::builder()
        .urls(&gone.urls)
        .call_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("build through the proxies");
    gone.cut();
    assert_eq!(
        check_situation(Situation::Unavailable, Ok(redlock)).await,
        "every operation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_unauthorized() {
    if !RedisServer::installed() {
        return;
    }
    let servers: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_with(&["--requirepass", "right"]).expect("start"))
        .collect();
    let single = RedisLeaseProvider::builder()
        .url(servers[0].url())
        .password("wrong")
        .build()
        .await;
    assert_eq!(
        check_situation(Situation::Unauthorized, single).await,
        "build"
    );
    let redlock = RedlockLeaseProvider::builder()
        .urls(servers.iter().map(RedisServer::url))
        .password("wrong")
        .build()
        .await;
    assert_eq!(
        check_situation(Situation::Unauthorized, redlock).await,
        "build"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_no_rule_is_unexpected() {
    let (url, server) = nonsense().await;
    let single = RedisLeaseProvider::builder().url(&url).build().await;
    assert_eq!(
        check_situation(Situation::UnexpectedReply, single).await,
        "build"
    );
    let (b, server_b) = nonsense().await;
    let (c, server_c) = nonsense().await;
    let redlock = RedlockLeaseProvider::builder()
        .urls([url, b, c])
        .build()
        .await;
    assert_eq!(
        check_situation(Situation::UnexpectedReply, redlock).await,
        "build"
    );
    for s in [server, server_b, server_c] {
        s.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_name_and_a_lost_grant_are_reported_as_the_table_says() {
    if let Some(url) = service_env("LEASING_REDIS_URL") {
        let p = RedisLeaseProvider::builder()
            .url(url)
            .build()
            .await
            .expect("build");
        check_conflict_and_lost(Arc::new(p)).await;
    }
    if let Some(urls) = service_env("LEASING_REDLOCK_URLS") {
        let p = RedlockLeaseProvider::builder()
            .urls(urls.split(','))
            .build()
            .await
            .expect("build");
        check_conflict_and_lost(Arc::new(p)).await;
    }
    if let Some(urls) = service_env("LEASING_REDIS_CLUSTER_URLS") {
        let p = RedisLeaseProvider::builder()
            .cluster_urls(urls.split(','))
            .build()
            .await
            .expect("build");
        check_conflict_and_lost(Arc::new(p)).await;
    }
}

/// Redlock servers that fail in different ways (one refuses connections, two answer
/// nonsense) leave no single situation: the build says the servers are unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_failing_in_different_ways_are_unavailable() {
    let (b, server_b) = nonsense().await;
    let (c, server_c) = nonsense().await;
    let e = RedlockLeaseProvider::builder()
        .urls([refused(), b, c])
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect_err("no majority answered");
    assert_eq!(
        e.kind(),
        leasing_abstractions::ErrorKind::ProviderUnavailable,
        "{e}"
    );
    assert!(e.is_retryable(), "{e}");
    for s in [server_b, server_c] {
        s.abort();
    }
}
