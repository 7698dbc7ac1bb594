//! A holder learns of a restart without persistence at once (the watcher), not at its
//! next renewal: single server and Redlock, no restart fence.

mod common;

use common::{raw, unique, RedisServer};
use leasing_abstractions::{Lease, LeaseManager, LeaseOptions, LeaseProvider, LostReason};
use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Long enough that the next scheduled renewal is minutes away: a `Lost` within the wait
/// below can only come from the restart notice.
const LEASE: Duration = Duration::from_secs(900);
/// How long the holder is given to learn of the restart (it takes milliseconds; the bound
/// is only there so that a broken notice fails instead of hanging).
const TOLD_WITHIN: Duration = Duration::from_secs(120);

/// When `url` answers a PING again.
async fn answering(url: &str) -> Instant {
    loop {
        if let Ok(Ok(mut c)) = tokio::time::timeout(
            Duration::from_secs(1),
            redis::Client::open(url)
                .expect("client")
                .get_multiplexed_async_connection(),
        )
        .await
        {
            if redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
            {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A manager on `provider` and its lease of a fresh name for [`LEASE`].
async fn holding(provider: impl LeaseProvider + 'static) -> (LeaseManager, Lease) {
    let manager = LeaseManager::new(
        Arc::new(provider),
        LeaseOptions::default().with_default_lease_duration(LEASE),
    )
    .expect("manager");
    let lease = manager.acquire(&unique("notice")).await.expect("acquire");
    (manager, lease)
}

/// Waits until `url` answers again, then until the holder is told (within
/// [`TOLD_WITHIN`]) that its lease was revoked; `what` and `which` name the case and the
/// server in the timing line.
async fn assert_told_of_the_restart(lease: &Lease, url: &str, what: &str, which: &str) {
    let up = answering(url).await;
    let reason = tokio::time::timeout(TOLD_WITHIN, lease.lost())
        .await
        .expect("the holder is told of the restart long before its next renewal");
    let told = Instant::now();
    eprintln!(
        "{what}: holder told {:.1} ms after {which} answered again",
        told.saturating_duration_since(up).as_secs_f64() * 1e3
    );
    assert!(matches!(reason, LostReason::Revoked(_)), "{reason:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_persistence_is_told_at_once_on_one_server() {
    if !RedisServer::installed() {
        return;
    }
    let mut server = RedisServer::start().expect("start redis-server");
    let provider = RedisLeaseProvider::builder()
        .url(server.url())
        .build()
        .await
        .expect("build");
    let (manager, lease) = holding(provider).await;
    server.restart_wiped().expect("restart without its data");
    assert_told_of_the_restart(
        &lease,
        &server.url(),
        "one server, restart without persistence",
        "the server",
    )
    .await;
    assert!(!lease.is_held());
    // The name is free on the restarted server: the next holder gets it.
    let next = manager.try_acquire(lease.name()).await.expect("acquire");
    assert!(next.is_some(), "the restarted server lost the grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redlock_majority_restarted_without_persistence_is_told_at_once() {
    if !RedisServer::installed() {
        return;
    }
    let mut servers: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start().expect("start redis-server"))
        .collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let provider = RedlockLeaseProvider::builder()
        .urls(&urls)
        .build()
        .await
        .expect("build");
    let (_manager, lease) = holding(provider).await;
    // Two of three lose the grant: the lease no longer has a majority.
    for s in &mut servers[..2] {
        s.restart_wiped().expect("restart without its data");
    }
    assert_told_of_the_restart(
        &lease,
        &urls[1],
        "Redlock, 2 of 3 restarted without persistence",
        "the second",
    )
    .await;
    let mut c = raw(&urls[2]).await;
    let _: Option<String> = redis::cmd("GET")
        .arg("unused")
        .query_async(&mut c)
        .await
        .expect("the third server kept running");
}
