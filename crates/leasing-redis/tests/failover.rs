//! Restarts and failovers against real redis-server processes: fencing tokens never go
//! back (clock floor), the holder learns of a lost lease within one round trip of the
//! server's return, and with a restart fence no two believed holders overlap. Also the
//! fencing counter of an idle name expires.

mod common;

use common::{keyslot, raw, renewing_options, service_env, unique, FrontDoor, RedisServer};
use leasing_abstractions::{
    AcquireRequest, ErrorKind, Lease, LeaseGrant, LeaseManager, LeaseProvider, LeaseState,
    ListRequest, Metadata,
};
use leasing_redis::RedisLeaseProvider;
use leasing_testkit::proxy::FaultProxy;
use redis::cluster_routing::Slot;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

async fn provider(url: &str, fence: Duration) -> RedisLeaseProvider {
    RedisLeaseProvider::builder()
        .url(url)
        .call_timeout(Duration::from_millis(300))
        .restart_fence(fence)
        .build()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Watches the lease from now on: resolves to when it stops being held (its state leaves
/// `Held`).
fn lost_at(lease: &Lease, limit: Duration) -> tokio::task::JoinHandle<Instant> {
    let mut rx = lease.state_changes();
    tokio::spawn(async move {
        tokio::time::timeout(limit, rx.wait_for(|s| *s != LeaseState::Held))
            .await
            .expect("the holder never learned of the loss")
            .expect("state channel");
        Instant::now()
    })
}

/// A contender polls `name` every 20 ms until granted; returns when, and its token.
async fn contend(url: &str, fence: Duration, name: &str, d: Duration) -> (Instant, u64) {
    let started = Instant::now();
    // The contender's provider is created after the restart or failover, as a fresh
    // process would be; while the server is fenced even the build may be refused.
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the contender never got the name"
        );
        let p = match RedisLeaseProvider::builder()
            .url(url)
            .call_timeout(Duration::from_millis(300))
            .restart_fence(fence)
            .build()
            .await
        {
            Ok(p) => p,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let req = AcquireRequest::new(name, d, Metadata::new());
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the contender never got the name"
            );
            if let Ok(Some(g)) = p.try_acquire(&req).await {
                let at = Instant::now();
                p.release(&g).await.expect("release");
                return (at, g.fencing_token);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Grants and releases `req` three times, each token above the one before and above
/// `max_token`; returns the last.
async fn grant_three_rising(p: &RedisLeaseProvider, req: &AcquireRequest, max_token: u64) -> u64 {
    let mut max_token = max_token;
    for _ in 0..3 {
        let g = p.try_acquire(req).await.expect("acquire").expect("free");
        assert!(g.fencing_token > max_token);
        max_token = g.fencing_token;
        p.release(&g).await.expect("release");
    }
    max_token
}

/// Signed overlap in ms of two believed holders: > 0 when the contender got the name
/// before the holder knew it had lost it.
fn overlap_ms(holder_lost: Instant, contender_got: Instant) -> f64 {
    if contender_got < holder_lost {
        (holder_lost - contender_got).as_secs_f64() * 1e3
    } else {
        -((contender_got - holder_lost).as_secs_f64() * 1e3)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_persistence_overlap_before_and_after_the_restart_fence() {
    if !RedisServer::installed() {
        return;
    }
    let d = Duration::from_secs(3);
    for fence in [Duration::ZERO, d] {
        let mut server = RedisServer::start().expect("start redis-server");
        let holder = provider(&server.url(), fence).await;
        let manager = LeaseManager::new(Arc::new(holder), renewing_options(d)).expect("manager");
        let name = unique("restart-fence");
        let lease = manager.acquire(&name).await.expect("acquire");
        // Just after a renewal would be the worst case; any moment will do.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lost = lost_at(&lease, d * 3);
        server.restart().expect("restart redis-server");
        let (got, token) = contend(&server.url(), fence, &name, d).await;
        let lost = lost.await.expect("watcher");
        let overlap = overlap_ms(lost, got);
        eprintln!(
            "restart without persistence, restart_fence {fence:?}: overlap of two believed holders {overlap:.0} ms (> 0: both believed they held it)"
        );
        assert!(
            token > lease.fencing_token(),
            "fencing went backwards across the restart"
        );
        if !fence.is_zero() {
            assert!(
                overlap < 0.0,
                "with a restart fence the contender got the name {overlap:.0} ms before the holder knew it was lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_replica_that_missed_grants_keeps_fencing_and_exclusion() {
    if !RedisServer::installed() {
        return;
    }
    let d = Duration::from_secs(3);
    for fence in [Duration::ZERO, d] {
        let mut primary = RedisServer::start().expect("start redis-server");
        // The replica reaches its primary through the fault proxy, to be cut off.
        let link = FaultProxy::start(primary.addr()).await.expect("proxy");
        let port = link.addr().port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])
            .expect("start the replica");
        common::wait_replica_synced(&replica.url()).await;
        // Clients reach "the service" through a front door that moves on failover.
        let front = FrontDoor::start(primary.addr()).await;
        let holder = provider(&front.url(), fence).await;
        let counted = unique("failover-counted");
        let req = AcquireRequest::new(&counted, d, Metadata::new());
        let mut max_token = 0;
        for _ in 0..3 {
            let g = holder
                .try_acquire(&req)
                .await
                .expect("acquire")
                .expect("free");
            max_token = max_token.max(g.fencing_token);
            holder.release(&g).await.expect("release");
        }
        // Let the replica see those, then cut it off: what follows it never learns.
        tokio::time::sleep(Duration::from_millis(300)).await;
        link.cut();
        max_token = grant_three_rising(&holder, &req, max_token).await;
        let manager = LeaseManager::new(Arc::new(holder), renewing_options(d)).expect("manager");
        let name = unique("failover-held");
        let lease = manager.acquire(&name).await.expect("acquire");
        max_token = max_token.max(lease.fencing_token());
        // The primary dies; the replica is promoted and the front door moves to it.
        let lost = lost_at(&lease, d * 3);
        primary.stop();
        let mut admin = raw(&replica.url()).await;
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async(&mut admin)
            .await
            .expect("promote");
        front.switch(replica.addr());
        let (got, token) = contend(&front.url(), fence, &name, d).await;
        let lost = lost.await.expect("watcher");
        let overlap = overlap_ms(lost, got);
        eprintln!(
            "failover to a replica that missed the grant, restart_fence {fence:?}: overlap of two believed holders {overlap:.0} ms (> 0: both believed they held it)"
        );
        assert!(
            token > max_token,
            "token {token} after the failover is not above {max_token} granted before"
        );
        let (_, again) = contend(&front.url(), fence, &counted, d).await;
        assert!(
            again > max_token,
            "the promoted replica's stale counter repeated a token: {again} ≤ {max_token}"
        );
        if !fence.is_zero() {
            assert!(
                overlap < 0.0,
                "with a restart fence the contender got the name {overlap:.0} ms before the holder knew it was lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_name_leaves_no_keys_and_its_next_token_is_higher() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = RedisLeaseProvider::builder()
        .url(&url)
        .fence_retention(Duration::from_millis(300))
        .build()
        .await
        .expect("build");
    let name = unique("idle");
    let req = AcquireRequest::new(&name, Duration::from_secs(5), Metadata::new());
    let g1 = p.try_acquire(&req).await.expect("acquire").expect("free");
    p.release(&g1).await.expect("release");
    let mut c = raw(&url).await;
    let fence_key = format!("lease:{{{name}}}:fence");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&fence_key)
        .query_async(&mut c)
        .await
        .expect("pttl");
    assert!(
        (1..=300).contains(&pttl),
        "the counter expires with the retention: {pttl}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("*{name}*"))
        .arg("COUNT")
        .arg(100_000)
        .query_async(&mut c)
        .await
        .expect("scan");
    assert!(keys.is_empty(), "an idle name left keys behind: {keys:?}");
    let g2 = p.try_acquire(&req).await.expect("acquire").expect("free");
    assert!(
        g2.fencing_token > g1.fencing_token,
        "the token after the counter expired went back: {} ≤ {}",
        g2.fencing_token,
        g1.fencing_token
    );
    p.release(&g2).await.expect("release");
}

/// `CLUSTER NODES` of the node at `url`: `(id, "host:port", flags, master id)` per node.
async fn cluster_nodes(url: &str) -> Vec<(String, String, String, String)> {
    let mut c = raw(url).await;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await
        .expect("cluster nodes");
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f.get(1)?.split('@').next()?.to_owned();
            Some((
                f[0].to_owned(),
                addr,
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
            ))
        })
        .collect()
}

async fn cluster_ok(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    info.contains("cluster_state:ok")
}

/// A grant of `req` from `p`, waiting out a restart fence (a fresh cluster's nodes are
/// young): retried while `ProviderUnavailable`, for up to 30 s.
async fn grant_when_unfenced(p: &RedisLeaseProvider, req: &AcquireRequest) -> LeaseGrant {
    let started = Instant::now();
    loop {
        match p.try_acquire(req).await {
            Ok(Some(g)) => return g,
            Ok(None) => panic!("{} is held", req.name),
            Err(e) if e.kind() == ErrorKind::ProviderUnavailable => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "never granted: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("acquire: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_to_a_replica_that_missed_a_grant_keeps_fencing() {
    if !RedisServer::installed() {
        return;
    }
    let d = Duration::from_secs(3);
    for fence in [Duration::ZERO, d] {
        let overlap = cluster_failover_overlap(d, fence).await;
        if !fence.is_zero() {
            assert!(
                overlap < 0.0,
                "with a restart fence the contender got the name {overlap:.0} ms before the holder knew it was lost"
            );
        }
    }
}

/// One run on a private cluster (3 masters + 3 replicas): a grant the name's replica
/// misses, the master killed, the replica promoted with `CLUSTER FAILOVER TAKEOVER`, a
/// fresh client polling for the name. Returns the overlap of two believed holders (ms).
async fn cluster_failover_overlap(d: Duration, fence: Duration) -> f64 {
    // Three masters with one replica each, on free ports (cluster bus ports chosen too).
    let mut servers: Vec<RedisServer> = (0..6)
        .map(|_| {
            RedisServer::builder()
                .cluster_node()
                .args(["--cluster-node-timeout", "2000"])
                .start()
                .expect("start a cluster node")
        })
        .collect();
    let addrs: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect();
    let created = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(created.success(), "redis-cli --cluster create");
    let started = Instant::now();
    for s in &servers {
        while !cluster_ok(&s.url()).await {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cluster not ok"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let build = || {
        RedisLeaseProvider::builder()
            .cluster_urls(&urls)
            .call_timeout(Duration::from_millis(500))
            .restart_fence(fence)
            .build()
    };
    let holder = build().await.expect("cluster provider");
    let name = unique("cluster-failover");
    // The name's master and that master's replica.
    let mut admin = raw(&urls[0]).await;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(format!("lease:{{{name}}}"))
        .query_async(&mut admin)
        .await
        .expect("keyslot");
    let owners: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut admin)
        .await
        .expect("slots");
    let mut master_addr = String::new();
    for range in owners {
        let range: Vec<redis::Value> = redis::from_redis_value(range).expect("range");
        let first: i64 = redis::from_redis_value(range[0].clone()).expect("first");
        let last: i64 = redis::from_redis_value(range[1].clone()).expect("last");
        if (first..=last).contains(&slot) {
            let m: Vec<redis::Value> = redis::from_redis_value(range[2].clone()).expect("m");
            let port: i64 = redis::from_redis_value(m[1].clone()).expect("port");
            master_addr = format!("127.0.0.1:{port}");
        }
    }
    // The replica relation reaches every node's view by gossip: wait for it.
    let replica_addr = loop {
        let nodes = cluster_nodes(&urls[0]).await;
        let master_id = nodes
            .iter()
            .find(|n| n.1 == master_addr)
            .map(|n| n.0.clone())
            .expect("master node");
        if let Some(r) = nodes.iter().find(|n| n.3 == master_id) {
            break r.1.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the master never showed a replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    common::wait_replica_synced(&format!("redis://{replica_addr}")).await;
    let index = |addr: &str| addrs.iter().position(|a| a == addr).expect("ours");
    let (mi, ri) = (index(&master_addr), index(&replica_addr));
    // Grants the replica sees, then grants it misses (stopped; the master dies before it
    // could send them). With the fence, the fresh nodes grant nothing for its first F.
    let req = AcquireRequest::new(&name, d, Metadata::new());
    let mut max_token = 0;
    for _ in 0..3 {
        let g = grant_when_unfenced(&holder, &req).await;
        max_token = max_token.max(g.fencing_token);
        holder.release(&g).await.expect("release");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Cut the replica off: stopped (it cannot reconnect) and its link closed by the
    // master, so what follows never reaches it (SIGSTOP alone would not do: the kernel
    // would buffer the stream for it).
    servers[ri].signal("STOP");
    let mut master = raw(&servers[mi].url()).await;
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut master)
        .await
        .expect("client kill");
    max_token = grant_three_rising(&holder, &req, max_token).await;
    let manager = LeaseManager::new(Arc::new(holder), renewing_options(d)).expect("manager");
    let lease = manager.acquire(&name).await.expect("acquire");
    max_token = max_token.max(lease.fencing_token());
    let lost = lost_at(&lease, d * 5);
    servers[mi].stop();
    servers[ri].signal("CONT");
    let mut replica = raw(&servers[ri].url()).await;
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .arg("TAKEOVER")
        .query_async(&mut replica)
        .await
        .expect("takeover");
    // A fresh client gets the name from the promoted replica.
    let started = Instant::now();
    let mut refused = None;
    let (got, token) = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "never granted");
        if let Ok(p) = build().await {
            match p.try_acquire(&req).await {
                Ok(Some(g)) => {
                    let at = Instant::now();
                    p.release(&g).await.expect("release");
                    break (at, g.fencing_token);
                }
                Err(e) if e.message().contains("restart fence") => refused = Some(e),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lost = lost.await.expect("watcher");
    let overlap = overlap_ms(lost, got);
    eprintln!(
        "cluster failover (CLUSTER FAILOVER TAKEOVER) to a replica that missed the grant, restart_fence {fence:?}: overlap of two believed holders {overlap:.0} ms (> 0: both believed they held it)"
    );
    assert!(
        token > max_token,
        "token {token} after the cluster failover is not above {max_token} granted before"
    );
    if fence.is_zero() {
        assert!(refused.is_none(), "fenced without a fence: {refused:?}");
    } else {
        // The promoted replica (uptime well above F) was fenced by its promotion marker.
        let e = refused.expect("the promoted replica never refused with the restart fence");
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
        eprintln!("  refused while fenced: {e}");
        let mut c = raw(&servers[ri].url()).await;
        // One marker per hash slot, under the slot's tag (another hash tag, same slot).
        let lease_key = format!("lease:{{{name}}}");
        let marker_key = format!("lease:{{{}}}:promoted", slot_tag(&lease_key));
        assert_eq!(
            keyslot(&mut c, &marker_key).await,
            keyslot(&mut c, &lease_key).await,
            "{marker_key} is not in the slot of {lease_key}"
        );
        let marker: String = redis::cmd("GET")
            .arg(&marker_key)
            .query_async(&mut c)
            .await
            .expect("the promotion marker is on the promoted replica");
        let replid: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await
            .expect("info");
        let replid = replid
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("master_replid:"))
            .expect("master_replid")
            .to_owned();
        let first_notice: u64 = marker
            .strip_prefix(&format!("{replid}|"))
            .unwrap_or_else(|| {
                panic!(
                    "marker {marker} is not under the promoted replica's replication id {replid}"
                )
            })
            .parse()
            .expect("first notice ms");
        same_slot_names_share_the_fence(&urls, &servers[ri].url(), fence, &name, first_notice)
            .await;
    }
    overlap
}

/// The smallest number whose decimal digits hash to the slot of `key`: the hash tag of
/// that slot's promotion marker (as the provider computes it).
fn slot_tag(key: &str) -> u32 {
    let slot = Slot::for_key(key);
    (0u32..)
        .find(|i| Slot::for_key(i.to_string()) == slot)
        .expect("every slot has a tag")
}

/// After the promoted replica (at `promoted`) granted `name` once its fence had passed:
/// a never-used name in the same hash slot is granted at once (the slot's marker already
/// dates from `first_notice`, server ms), while a never-used name in another slot of the
/// same node is fenced from its own first notice (one marker per slot, not per node).
/// The markers never show up as leases in a listing.
async fn same_slot_names_share_the_fence(
    urls: &[String],
    promoted: &str,
    fence: Duration,
    name: &str,
    first_notice: u64,
) {
    let mut c = raw(promoted).await;
    let lease_key = |n: &str| format!("lease:{{{n}}}");
    let slot = keyslot(&mut c, &lease_key(name)).await;
    // Names cannot carry a hash tag of their own: search for one in the same slot (by the
    // client's CRC16, confirmed by the server)…
    let same = (0u32..)
        .map(|i| format!("{name}-{i}"))
        .find(|n| Slot::for_key(lease_key(n)) == Slot::for_key(lease_key(name)))
        .expect("a name in the slot");
    assert_eq!(keyslot(&mut c, &lease_key(&same)).await, slot);
    // …and one in another slot served by the promoted replica.
    let mine = my_slots(&mut c).await;
    let mut other = None;
    for i in 0u32.. {
        let n = format!("{name}-other-{i}");
        let at = keyslot(&mut c, &lease_key(&n)).await;
        if at != slot && mine.iter().any(|r| r.contains(&at)) {
            other = Some(n);
            break;
        }
    }
    let other = other.expect("another slot of the promoted node");
    let p = RedisLeaseProvider::builder()
        .cluster_urls(urls)
        .call_timeout(Duration::from_millis(500))
        .restart_fence(fence)
        .build()
        .await
        .expect("cluster provider");
    let d = Duration::from_secs(3);
    let g = p
        .try_acquire(&AcquireRequest::new(&same, d, Metadata::new()))
        .await
        .expect("a never-used name in an already fenced slot is not fenced again")
        .expect("free");
    let now_ms = server_ms(&mut c).await;
    eprintln!(
        "  never-used {same} in the same slot: granted at once, {} ms after the slot's first notice (fence {fence:?})",
        now_ms - first_notice
    );
    assert!(now_ms >= first_notice + u64::try_from(fence.as_millis()).expect("ms"));
    let e = p
        .try_acquire(&AcquireRequest::new(&other, d, Metadata::new()))
        .await
        .expect_err("a never-used slot on the promoted node is fenced from its first notice");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.message().contains("restart fence"), "{e}");
    eprintln!("  never-used {other} in another slot of the promoted node: refused: {e}");
    // Listing sees the held lease only: markers (`{<tag>}:promoted`) are no leases.
    let page = p.list(&ListRequest::new("")).await.expect("list");
    let mut listed: Vec<String> = page.leases.iter().map(|l| l.name.clone()).collect();
    let mut cursor = page.cursor;
    while let Some(next) = cursor {
        let page = p
            .list(&ListRequest::new("").with_cursor(Some(next)))
            .await
            .expect("list");
        listed.extend(page.leases.iter().map(|l| l.name.clone()));
        cursor = page.cursor;
    }
    assert_eq!(listed, vec![same.clone()], "listing of the private cluster");
    p.release(&g).await.expect("release");
}

/// The slot ranges the node of `c` serves.
async fn my_slots(c: &mut redis::aio::MultiplexedConnection) -> Vec<std::ops::RangeInclusive<i64>> {
    let me: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(c)
        .await
        .expect("myid");
    common::cluster_slots(c)
        .await
        .into_iter()
        .filter_map(|r| (r.master_id == me).then_some(r.first..=r.last))
        .collect()
}

async fn server_ms(c: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(c).await.expect("time");
    s * 1000 + us / 1000
}

/// Copies the record and counter of `name` from `from` to `to` with the same TTL (a
/// replica that did receive the grant).
async fn copy_lease(from: &str, to: &str, name: &str) {
    let (mut a, mut b) = (raw(from).await, raw(to).await);
    for key in [
        format!("lease:{{{name}}}"),
        format!("lease:{{{name}}}:fence"),
    ] {
        let v: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut a)
            .await
            .expect("get");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut a)
            .await
            .expect("pttl");
        let v = v.expect("the key exists");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(v)
            .arg("PX")
            .arg(ttl.max(1))
            .query_async(&mut b)
            .await
            .expect("set");
    }
}

/// Long enough for a provider's watcher to see a server that went away answer again (it
/// polls every 10–25 ms) and refresh the node's connection. A direct provider call sooner
/// may meet the dead connection and fail (`ProviderUnavailable`: the core would retry it);
/// it never trusts the server it finds.
async fn watcher_noticed() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_on_a_replaced_server_is_lost_even_when_its_key_is_there() {
    if !RedisServer::installed() {
        return;
    }
    let (a, b) = (
        RedisServer::start().expect("start redis-server"),
        RedisServer::start().expect("start redis-server"),
    );
    let front = FrontDoor::start(a.addr()).await;
    let p = provider(&front.url(), Duration::ZERO).await;
    let d = Duration::from_secs(10);
    let one = AcquireRequest::new(unique("replaced-one"), d, Metadata::new());
    let many = AcquireRequest::new(unique("replaced-many"), d, Metadata::new());
    let g1 = p.try_acquire(&one).await.expect("acquire").expect("free");
    let g2 = p.try_acquire(&many).await.expect("acquire").expect("free");
    p.renew(&g1).await.expect("renew on the same server");
    // Another server behind the same address, holding copies of both leases.
    copy_lease(&a.url(), &b.url(), &one.name).await;
    copy_lease(&a.url(), &b.url(), &many.name).await;
    front.switch(b.addr());
    // The provider's watcher sees the server answer again (it polls every 10–25 ms) and
    // refreshes the command connection: the first renewal after that learns that the
    // server changed and reports Lost without trusting the copy.
    watcher_noticed().await;
    let e = p.renew(&g1).await.expect_err("replaced");
    assert_eq!(e.kind(), leasing_abstractions::ErrorKind::Lost, "{e}");
    let r = p.renew_many(&[Arc::new(g2.clone())]).await;
    assert_eq!(
        r[0].as_ref().expect_err("replaced").kind(),
        leasing_abstractions::ErrorKind::Lost
    );
    // A grant made on the new server renews normally.
    p.release(&g1).await.expect("release");
    p.release(&g2).await.expect("release");
    let g3 = p.try_acquire(&one).await.expect("acquire").expect("free");
    p.renew(&g3).await.expect("renew");
    let arc = Arc::new(g3.clone());
    assert!(p.renew_many(&[arc]).await[0].is_ok());
    p.release(&g3).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_rejects_a_cursor_from_elsewhere() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = common::connect(&url).await;
    let e = p
        .list(&leasing_abstractions::ListRequest::new("").with_cursor(Some("5:0".into())))
        .await
        .expect_err("unknown scan space");
    assert_eq!(e.kind(), leasing_abstractions::ErrorKind::InvalidArgument);
    let e = p
        .list(&leasing_abstractions::ListRequest::new("").with_cursor(Some("x".into())))
        .await
        .expect_err("not a cursor");
    assert_eq!(e.kind(), leasing_abstractions::ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_servers_restarted_without_data_are_fenced_and_count_as_refusals() {
    let Some((mut servers, urls)) = common::private_servers(3, &[]) else {
        return;
    };
    let fence = Duration::from_secs(2);
    let build = || {
        leasing_redis::RedlockLeaseProvider::builder()
            .urls(&urls)
            .call_timeout(Duration::from_millis(300))
            .restart_fence(fence)
            .build()
    };
    let p = build().await.expect("build");
    let d = Duration::from_secs(10);
    let req = AcquireRequest::new(unique("rl-restart"), d, Metadata::new());
    // Fresh servers are inside the fence: nothing is granted yet.
    let e = p.try_acquire(&req).await.expect_err("all fenced");
    assert_eq!(
        e.kind(),
        leasing_abstractions::ErrorKind::ProviderUnavailable,
        "{e}"
    );
    tokio::time::sleep(fence + Duration::from_millis(200)).await;
    let g = p.try_acquire(&req).await.expect("acquire").expect("free");
    // One server restarts without its data: the lease still has a majority; that server
    // refuses the renewal (another run) and grants nothing during its fence.
    servers[0].restart().expect("restart redis-server");
    p.renew(&g).await.expect("a majority still holds it");
    let other = build().await.expect("build");
    assert!(
        other.try_acquire(&req).await.expect("contended").is_none(),
        "the name is still held on a majority"
    );
    // A second server restarts: the majority is gone; once the watcher saw it answer again
    // the holder is told at its first renewal.
    servers[1].restart().expect("restart redis-server");
    watcher_noticed().await;
    let e = p.renew(&g).await.expect_err("lost");
    assert_eq!(e.kind(), leasing_abstractions::ErrorKind::Lost, "{e}");
    // And nobody is granted the name while two of three servers are fenced (refused as
    // unavailable, or as held when the server that still has the old lease answers first).
    let r = other.try_acquire(&req).await;
    assert!(
        matches!(&r, Ok(None))
            || matches!(&r, Err(e) if e.kind() == leasing_abstractions::ErrorKind::ProviderUnavailable),
        "{r:?}"
    );
    // The lost holder cleans up what is left of its lease (the server that kept it); the
    // name is granted again once the fences (counted from when each client noticed the
    // restart) have passed.
    let _ = p.release(&g).await;
    let started = Instant::now();
    let g2 = loop {
        if let Ok(Some(g2)) = other.try_acquire(&req).await {
            break g2;
        }
        assert!(
            started.elapsed() < fence * 3,
            "never granted after the fences"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(g2.fencing_token > g.fencing_token);
    other.release(&g2).await.expect("release");
}
