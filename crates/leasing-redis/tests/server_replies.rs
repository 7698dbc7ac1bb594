//! Replies a healthy test server never gives, through the public API: a server that
//! answers every command with a bare error code, and one whose ACL refuses `INFO`.

mod common;

use leasing_abstractions::{LeaseManager, LeaseOptions};
use leasing_redis::RedisLeaseProvider;
use leasing_testkit::services::service_env;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_error_code_is_named_without_an_empty_reason() {
    let (addr, server) = common::answering_server(b"-BUSY\r\n").await;
    let e = RedisLeaseProvider::builder()
        .url(format!("redis://{addr}"))
        .connect_timeout(Duration::from_secs(5))
        .restart_fence(Duration::from_secs(30))
        .build()
        .await
        .expect_err("a server that only answers BUSY");
    let text = e.to_string();
    assert!(text.contains("BUSY"), "the code is named: {text}");
    assert!(
        !text.contains("BUSY:"),
        "no empty reason after the code: {text}"
    );
    assert!(
        text.contains(&addr.to_string()),
        "the server is named: {text}"
    );
    server.abort();
}

/// An ACL that refuses `INFO` switches the restart and failover checks off for that
/// server (with a warning) instead of failing every operation; leases still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_that_refuses_info_switches_the_checks_off_and_leases_work() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let user = format!("noinfo{}", uuid::Uuid::new_v4().simple());
    let admin = redis::Client::open(url.as_str()).expect("client");
    let mut admin = admin
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">not-a-real-password")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-info")
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let provider = RedisLeaseProvider::builder()
        .url(&url)
        .username(&user)
        .password("not-a-real-password")
        .restart_fence(Duration::from_secs(30))
        .build()
        .await
        .expect("INFO refused does not stop the build");
    let manager = LeaseManager::new(Arc::new(provider), LeaseOptions::default()).expect("manager");
    let name = format!("noinfo-{}", uuid::Uuid::new_v4().simple());
    let lease = manager
        .try_acquire(&name)
        .await
        .expect("acquire without INFO")
        .expect("the name is free");
    lease.renew().await.expect("renew without INFO");
    assert!(lease.is_held());
    lease.release().await.expect("release without INFO");
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .expect("ACL DELUSER");
}
