//! Bad input and misleading errors (issue 6 for Redis): no duration panics, a wrong
//! Redlock password is `Unauthorized`, a missing database is `Configuration`, a port that
//! answers HTTP is not a parse failure.

mod common;

use common::{raw, service_env, unique};
use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseManager, LeaseOptions, LeaseProvider, Metadata,
};
use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
use std::sync::Arc;
use std::time::Duration;

fn req(name: &str) -> AcquireRequest {
    AcquireRequest::new(name, Duration::from_secs(5), Metadata::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_of_any_size_never_panic() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = RedisLeaseProvider::builder()
        .url(&url)
        .connect_timeout(Duration::MAX)
        .call_timeout(Duration::MAX)
        .refresh_before_expiry(Duration::MAX)
        .fence_retention(Duration::MAX)
        .restart_fence(Duration::ZERO)
        .build()
        .await
        .expect("Duration::MAX saturates");
    assert_eq!(
        p.config().connect_timeout,
        leasing_redis::MAX_OPTION_DURATION
    );
    let name = unique("max-durations");
    let g = p
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    p.release(&g).await.expect("release");
    if let Some(urls) = service_env("LEASING_REDLOCK_URLS") {
        let rl = RedlockLeaseProvider::builder()
            .urls(urls.split(','))
            .connect_timeout(Duration::MAX)
            .call_timeout(Duration::MAX)
            .build()
            .await
            .expect("build");
        let g = rl
            .try_acquire(&req(&name))
            .await
            .expect("acquire")
            .expect("free");
        rl.release(&g).await.expect("release");
    }
    // A retention below a millisecond is a configuration error, never a zero TTL.
    let e = RedisLeaseProvider::builder()
        .url(&url)
        .fence_retention(Duration::ZERO)
        .build()
        .await
        .expect_err("zero retention");
    assert_eq!(e.field(), Some("fence_retention"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_with_a_wrong_password_is_unauthorized() {
    let Some((servers, urls)) = common::private_servers(3, &["--requirepass", "right-password"])
    else {
        return;
    };
    // Every server refuses the credentials at build: Unauthorized, not "unavailable".
    let e = RedlockLeaseProvider::builder()
        .urls(&urls)
        .password("wrong-password")
        .build()
        .await
        .expect_err("wrong password on every server");
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!e.to_string().contains("wrong-password"), "{e}");
    assert!(!e.to_string().contains("right-password"), "{e}");
    // Credentials that stop working after the build: a user deleted on every server
    // (Redis disconnects its clients), so every reconnect is refused.
    let authed: Vec<String> = servers
        .iter()
        .map(|s| s.url().replacen("redis://", "redis://:right-password@", 1))
        .collect();
    for u in &authed {
        let mut c = raw(u).await;
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("leaser")
            .arg("on")
            .arg(">leaser-password")
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut c)
            .await
            .expect("ACL SETUSER");
    }
    let p = RedlockLeaseProvider::builder()
        .urls(&urls)
        .username("leaser")
        .password("leaser-password")
        .build()
        .await
        .expect("build with a user every server knows");
    for u in &authed {
        let mut c = raw(u).await;
        let _: () = redis::cmd("ACL")
            .arg("DELUSER")
            .arg("leaser")
            .query_async(&mut c)
            .await
            .expect("ACL DELUSER");
    }
    // The first calls may meet the dropped connections (unavailable); once the clients
    // reconnect, every server refuses the credentials.
    let mut e = None;
    for _ in 0..100 {
        let err = p
            .try_acquire(&req(&unique("rl-wrongpass")))
            .await
            .expect_err("the user is gone");
        if err.kind() == ErrorKind::Unauthorized {
            e = Some(err);
            break;
        }
        assert_eq!(err.kind(), ErrorKind::ProviderUnavailable, "{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = e.expect("every server refuses the deleted user once reconnected");
    assert!(!e.to_string().contains("leaser-password"), "{e}");
    // The manager does not retry it until a timeout.
    let m = LeaseManager::new(
        Arc::new(p),
        LeaseOptions::default().with_acquire_timeout(Duration::from_secs(3)),
    )
    .expect("manager");
    let e = m
        .acquire(&unique("rl-wrongpass"))
        .await
        .expect_err("wrong password");
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_does_not_exist_is_a_configuration_error() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let e = RedisLeaseProvider::builder()
        .url(format!("{url}/99"))
        .build()
        .await
        .expect_err("database 99 does not exist (16 databases)");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_with_a_database_that_does_not_exist_is_a_configuration_error() {
    let Some(urls) = service_env("LEASING_REDLOCK_URLS") else {
        return;
    };
    let mut urls: Vec<String> = urls.split(',').take(3).map(str::to_owned).collect();
    // One of three servers is misconfigured: found at build, named as configuration.
    urls[1] = format!("{}/99", urls[1]);
    let e = RedlockLeaseProvider::builder()
        .urls(&urls)
        .build()
        .await
        .expect_err("database 99 does not exist (16 databases)");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    // A server that is down at build time is still no reason to fail the build.
    let mut down = urls.clone();
    down[1] = "redis://127.0.0.1:1".to_owned();
    RedlockLeaseProvider::builder()
        .urls(&down)
        .build()
        .await
        .expect("a server down at start-up does not stop the build");
    // Without a majority answering, the build fails and names every server that did not.
    let mut most_down = urls.clone();
    most_down[0] = "redis://127.0.0.1:1".to_owned();
    most_down[1] = "redis://127.0.0.1:2".to_owned();
    let e = RedlockLeaseProvider::builder()
        .urls(&most_down)
        .build()
        .await
        .expect_err("one of three servers answering is no majority");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    let text = e.to_string();
    assert!(text.contains("only 1 of 3"), "{text}");
    assert!(
        text.contains("127.0.0.1:1") && text.contains("127.0.0.1:2"),
        "{text}"
    );
    assert!(
        !text.contains(&urls[2]),
        "the server that answered is not blamed: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_answers_http_is_not_a_parse_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let http = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    let e = RedisLeaseProvider::builder()
        .url(format!("redis://{addr}"))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect_err("not a Redis server");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Configuration | ErrorKind::ProviderUnavailable
        ),
        "{e}"
    );
    http.abort();
}
