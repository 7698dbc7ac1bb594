//! Release notifications without fan-out cost (lazy per-name subscriptions, PUBLISH only
//! when contended), pipeline error isolation, and Redlock's rare acquisition paths, against
//! real redis-server (private fixtures where server-wide state is asserted).

mod common;

use common::{raw, service_env, unique, RedisServer};
use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseGrant, LeaseManager, LeaseOptions, LeaseProvider, Metadata,
};
use leasing_redis::RedisLeaseProvider;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn req(name: &str) -> AcquireRequest {
    AcquireRequest::new(name, Duration::from_secs(10), Metadata::new())
}

async fn numsub(c: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(c)
        .await
        .expect("numsub");
    n
}

async fn wait_numsub(c: &mut redis::aio::MultiplexedConnection, channel: &str, want: i64) {
    let started = Instant::now();
    while numsub(c, channel).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{channel} never had {want} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publishes(c: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
        .and_then(|v| v.split(',').next())
        .map_or(0, |v| v.parse().expect("calls"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_only_while_someone_waits_and_publishes_only_when_contended() {
    if !RedisServer::installed() {
        return;
    }
    let server = RedisServer::start().expect("start redis-server");
    let build = || RedisLeaseProvider::builder().url(server.url()).build();
    let holder = build().await.expect("holder");
    let waiting: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("waiter"));
    let mut admin = raw(&server.url()).await;
    let name = unique("lazy");
    let channel = format!("lease:{{{name}}}:released");
    // Uncontended: no subscription anywhere, no PUBLISH.
    let g = holder
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    holder.release(&g).await.expect("release");
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut admin)
        .await
        .expect("channels");
    assert!(
        channels.is_empty(),
        "subscribed without a waiter: {channels:?}"
    );
    assert_eq!(
        publishes(&mut admin).await,
        0,
        "an uncontended release published"
    );
    // Contended: the waiter subscribes to this name only.
    let g = holder
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    let slow_polling = LeaseOptions::default()
        .with_acquire_retry_interval(Duration::from_secs(20))
        .with_acquire_timeout(Duration::from_secs(30))
        .with_auto_renew(false);
    let manager = Arc::new(LeaseManager::new(waiting.clone(), slow_polling).expect("manager"));
    let waiter = {
        let (manager, name) = (manager.clone(), name.clone());
        tokio::spawn(async move { manager.acquire(&name).await })
    };
    wait_numsub(&mut admin, &channel, 1).await;
    // A payload that is not a name is ignored; the waiter keeps waiting.
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(&[0xff_u8, 0xfe][..])
        .query_async(&mut admin)
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    let released = Instant::now();
    holder.release(&g).await.expect("release");
    let lease = waiter.await.expect("join").expect("acquired");
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "woken by polling, not by the release"
    );
    assert_eq!(
        publishes(&mut admin).await,
        2,
        "the contended release was not announced"
    );
    lease.release().await.expect("release");
    // The last receiver is gone: the provider unsubscribes (while it lives on).
    wait_numsub(&mut admin, &channel, 0).await;
    drop(manager);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_come_back_after_a_restart_and_wake_the_waiters() {
    let Some((mut server, p)) = common::private_server(Duration::from_millis(500)).await else {
        return;
    };
    let q = common::connect(server.url()).await;
    let name = unique("resub");
    let channel = format!("lease:{{{name}}}:released");
    let _held = q
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    assert!(p
        .try_acquire(&req(&name))
        .await
        .expect("contended")
        .is_none());
    let mut rx = p.release_notifications(&name).expect("notifications");
    let mut admin = raw(&server.url()).await;
    wait_numsub(&mut admin, &channel, 1).await;
    // The fresh subscription wakes the waiter once (a release may have gone unheard).
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(woke.expect("woken").expect("message"), name);
    server.restart().expect("restart redis-server");
    let woke = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert_eq!(
        woke.expect("woken after the restart").expect("message"),
        name
    );
    let mut admin = raw(&server.url()).await;
    wait_numsub(&mut admin, &channel, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_lease_fails_alone_in_a_renewal_pipeline() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = common::connect(&url).await;
    let prefix = unique("damaged");
    let mut grants = Vec::new();
    for i in 0..3 {
        let g = p
            .try_acquire(&req(&format!("{prefix}-{i}")))
            .await
            .expect("acquire")
            .expect("free");
        grants.push(Arc::new(g));
    }
    // Someone overwrote the second lease's record with a hash.
    let mut c = raw(&url).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("lease:{{{prefix}-1}}"))
        .query_async(&mut c)
        .await
        .expect("del");
    let _: () = redis::cmd("HSET")
        .arg(format!("lease:{{{prefix}-1}}"))
        .arg("not")
        .arg("a string")
        .query_async(&mut c)
        .await
        .expect("hset");
    let results = p.renew_many(&grants).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let e = results[1].as_ref().expect_err("wrong type");
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    assert_eq!(e.lease_id(), Some(grants[1].lease_id.as_str()));
    for g in &grants {
        let _ = p.release(g).await;
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("lease:{{{prefix}-1}}"))
        .query_async(&mut c)
        .await
        .expect("del");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_without_a_majority_after_the_first_grant_cleans_up() {
    // Two live servers sort first ("redis://127…" < "redis://localhost…"), so the first
    // phase succeeds and the second finds only one more server.
    let Some((up, p)) = common::redlock_without_a_majority("localhost").await else {
        return;
    };
    let name = unique("rl-phase-b");
    let e = p.try_acquire(&req(&name)).await.expect_err("no majority");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.to_string().contains("a majority of 3"), "{e}");
    for u in &up {
        assert!(
            !common::exists(u, &name).await,
            "the partial acquisition was left on {u}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_server_down_is_unavailable() {
    let Some(urls) = service_env("LEASING_REDLOCK_URLS") else {
        return;
    };
    let live = urls.split(',').next().expect("a url").to_owned();
    // One server, so the first phase ends with every server failed and no early exit; up
    // for the build (which needs it to answer), down after it.
    let p = common::redlock_all_down(1, &live).await;
    assert_eq!(p.quorum(), 1);
    let e = p
        .try_acquire(&req(&unique("lone")))
        .await
        .expect_err("down");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    let g = LeaseGrant::new(
        &req("x"),
        "id",
        1,
        std::time::SystemTime::now(),
        Instant::now(),
    );
    assert_eq!(
        p.renew(&g).await.expect_err("down").kind(),
        ErrorKind::ProviderUnavailable
    );
}
