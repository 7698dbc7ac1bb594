//! Cluster mode against a real Redis Cluster (three masters on 6411-6413 from
//! scripts/redis-up.sh, `LEASING_REDIS_CLUSTER_URLS`): the conformance suite, names spread
//! over the masters and renewed by one `renew_many`, script reloads on the node that lost
//! them, release notifications across nodes, ACL credentials, and connection failures.

mod common;

use common::{keyslot, raw, req, service_env, unique};
use leasing_abstractions::{BoxError, BoxFuture, ErrorKind, LeaseGrant, LeaseProvider};
use leasing_redis::{AccessToken, RedisLeaseProvider, TokenCredential};
use leasing_testkit::conformance::{run_all, Subject};
use redis::cluster_routing::Slot;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const SHORT: Duration = Duration::from_millis(600);

fn cluster_urls() -> Option<Vec<String>> {
    service_env("LEASING_REDIS_CLUSTER_URLS").map(|v| v.split(',').map(str::to_owned).collect())
}

/// The master of every slot: `(first slot, last slot, "host:port")` from `CLUSTER SLOTS`.
async fn slot_owners(seed: &str) -> Vec<(i64, i64, String)> {
    let mut c = raw(seed).await;
    common::cluster_slots(&mut c)
        .await
        .into_iter()
        .map(|r| (r.first, r.last, r.master))
        .collect()
}

async fn owner_of(
    c: &mut redis::aio::MultiplexedConnection,
    owners: &[(i64, i64, String)],
    key: &str,
) -> String {
    let slot = keyslot(c, key).await;
    owners
        .iter()
        .find(|(first, last, _)| (*first..=*last).contains(&slot))
        .map(|o| o.2.clone())
        .expect("every slot has a master")
}

async fn on_node<T: redis::FromRedisValue>(addr: &str, cmd: &redis::Cmd) -> T {
    let mut c = raw(&format!("redis://{addr}")).await;
    cmd.query_async(&mut c).await.expect("node command")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_passes_the_suite() {
    let Some(urls) = cluster_urls() else { return };
    let build = || {
        RedisLeaseProvider::builder()
            .cluster_urls(&urls)
            .key_prefix("conf:")
            .build()
    };
    let p: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    let q: Arc<dyn LeaseProvider> = Arc::new(build().await.expect("connect"));
    run_all(&Subject::new(p, q).with_short_duration(SHORT)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_land_on_every_master_and_one_renew_many_renews_them_all() {
    let Some(urls) = cluster_urls() else { return };
    // A single seed is enough: the other masters are discovered.
    let p = RedisLeaseProvider::builder()
        .cluster_urls([&urls[0]])
        .max_renew_batch(128)
        .build()
        .await
        .expect("connect");
    let owners = slot_owners(&urls[0]).await;
    let masters: BTreeSet<String> = owners.iter().map(|o| o.2.clone()).collect();
    assert!(masters.len() >= 2, "not a multi-master cluster: {owners:?}");
    let mut admin = raw(&urls[0]).await;
    let prefix = unique("spread");
    let d = Duration::from_secs(10);
    let mut grants: Vec<Arc<LeaseGrant>> = Vec::new();
    let mut by_master: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..60 {
        let name = format!("{prefix}-{i}");
        let g = p
            .try_acquire(&req(&name, d))
            .await
            .expect("acquire")
            .expect("free");
        let key = format!("lease:{{{name}}}");
        let master = owner_of(&mut admin, &owners, &key).await;
        // The lease and its fencing counter live on that master, as one slot.
        let fence = format!("lease:{{{name}}}:fence");
        assert_eq!(
            keyslot(&mut admin, &key).await,
            keyslot(&mut admin, &fence).await
        );
        let held: String = on_node(&master, redis::cmd("GET").arg(&key)).await;
        assert_eq!(held.get(1..=g.lease_id.len()), Some(g.lease_id.as_str()));
        by_master.entry(master).or_default().push(key);
        grants.push(Arc::new(g));
    }
    assert_eq!(
        by_master.len(),
        masters.len(),
        "60 names should reach every master: {:?}",
        by_master.keys()
    );
    // One renew_many call renews every lease on every master, in order.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lost = grants[7].clone();
    assert!(p.break_lease(&lost.name).await.expect("break"));
    let results = p.renew_many(&grants).await;
    assert_eq!(results.len(), grants.len());
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            let e = r.as_ref().expect_err("broken");
            assert_eq!(e.kind(), ErrorKind::Lost, "{e}");
            assert_eq!(e.lease_id(), Some(lost.lease_id.as_str()));
        } else {
            r.as_ref().expect("renewed");
        }
    }
    for (master, keys) in &by_master {
        for key in keys {
            if *key == format!("lease:{{{}}}", lost.name) {
                continue;
            }
            let pttl: i64 = on_node(master, redis::cmd("PTTL").arg(key)).await;
            assert!(
                pttl > 9_000,
                "{key} on {master} was not renewed: {pttl} ms left"
            );
        }
    }
    // Scripts flushed on every master: each slot's batch reloads where it lives, and so do
    // single calls.
    for master in &masters {
        let () = on_node(master, redis::cmd("SCRIPT").arg("FLUSH")).await;
    }
    grants.remove(7);
    assert!(p.renew_many(&grants).await.iter().all(Result::is_ok));
    for master in &masters {
        let () = on_node(master, redis::cmd("SCRIPT").arg("FLUSH")).await;
    }
    let again = p
        .try_acquire(&req(&lost.name, d))
        .await
        .expect("acquire after a flush")
        .expect("free after the break");
    assert!(again.fencing_token > lost.fencing_token);
    let info = p.inspect(&lost.name).await.expect("inspect").expect("held");
    assert_eq!(info.lease_id.as_deref(), Some(again.lease_id.as_str()));
    p.release(&again).await.expect("release");
    for g in &grants {
        p.release(g).await.expect("release");
    }
    assert!(p.renew_many(&[]).await.is_empty());
}

/// `field` of `INFO replication` on the node at `addr`.
async fn replication_field(addr: &str, field: &str) -> String {
    let text: String = on_node(addr, redis::cmd("INFO").arg("replication")).await;
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO"))
        .to_owned()
}

/// The promotion marker of the slot of `lease_key`: `lease:{<tag>}:promoted`, the tag the
/// smallest number whose digits hash to that slot (as the provider computes it).
fn marker_key(lease_key: &str) -> String {
    let slot = Slot::for_key(lease_key);
    let tag = (0u32..)
        .find(|i| Slot::for_key(i.to_string()) == slot)
        .expect("every slot has a tag");
    format!("lease:{{{tag}}}:promoted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_may_declare_keys_of_other_hash_tags_in_the_same_slot() {
    let Some(urls) = cluster_urls() else { return };
    let owners = slot_owners(&urls[0]).await;
    let mut admin = raw(&urls[0]).await;
    // What the fenced acquire declares: lease, counter and the slot's marker, whose hash
    // tag (a number) differs from the name's. Redis Cluster checks slots, not tags.
    let name = unique("cross-tag");
    let lease = format!("lease:{{{name}}}");
    let marker = marker_key(&lease);
    assert!(!marker.contains(&name), "{marker}");
    assert_eq!(
        keyslot(&mut admin, &marker).await,
        keyslot(&mut admin, &lease).await
    );
    let owner = owner_of(&mut admin, &owners, &lease).await;
    let script = "redis.call('SET', KEYS[3], 'x', 'PX', 60000) return redis.call('GET', KEYS[3])";
    let keys = [lease.clone(), format!("{lease}:fence"), marker.clone()];
    let got: String = on_node(&owner, redis::cmd("EVAL").arg(script).arg(3).arg(&keys)).await;
    assert_eq!(got, "x");
    let _: i64 = on_node(&owner, redis::cmd("DEL").arg(&marker)).await;
    // The contrast: a key of another slot is refused (CROSSSLOT), whatever the node.
    let mut elsewhere = format!("lease:{{{name}-0}}");
    for i in 1.. {
        if keyslot(&mut admin, &elsewhere).await != keyslot(&mut admin, &lease).await {
            break;
        }
        elsewhere = format!("lease:{{{name}-{i}}}");
    }
    let mut c = raw(&format!("redis://{owner}")).await;
    let e = redis::cmd("EVAL")
        .arg(script)
        .arg(3)
        .arg(&lease)
        .arg(format!("{lease}:fence"))
        .arg(&elsewhere)
        .query_async::<String>(&mut c)
        .await
        .expect_err("keys of two slots");
    assert!(e.to_string().to_uppercase().contains("CROSSSLOT"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_fence_is_decided_on_the_node_that_grants() {
    let Some(urls) = cluster_urls() else { return };
    let owners = slot_owners(&urls[0]).await;
    let mut admin = raw(&urls[0]).await;
    let prefix = unique("cfence");
    // Names on every master.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..30 {
        let name = format!("{prefix}-{i}");
        let owner = owner_of(&mut admin, &owners, &format!("lease:{{{name}}}")).await;
        names.entry(owner).or_insert(name);
    }
    assert!(names.len() >= 2, "names on one master only: {names:?}");
    let build = |fence: Duration| {
        RedisLeaseProvider::builder()
            .cluster_urls(&urls)
            .restart_fence(fence)
            .build()
    };
    // A fence longer than any node's uptime: every node refuses, and writes nothing.
    let young = build(Duration::from_secs(365 * 86_400))
        .await
        .expect("connect");
    for (owner, name) in &names {
        let e = young
            .try_acquire(&req(name, SHORT))
            .await
            .expect_err("inside the fence");
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
        assert!(e.is_retryable());
        assert!(e.message().contains("restart fence"), "{e}");
        assert_eq!(e.lease_name(), Some(name.as_str()));
        let exists: i64 = on_node(
            owner,
            redis::cmd("EXISTS")
                .arg(format!("lease:{{{name}}}"))
                .arg(format!("lease:{{{name}}}:fence")),
        )
        .await;
        assert_eq!(exists, 0, "a fenced acquire wrote {name} on {owner}");
    }
    // A short fence: nodes up longer than it grant, renew and release as usual (the
    // fenced script is loaded after NOSCRIPT like the others).
    let p = build(Duration::from_millis(1)).await.expect("connect");
    for (owner, name) in &names {
        let started = Instant::now();
        let g = loop {
            match p.try_acquire(&req(name, SHORT)).await {
                Ok(g) => break g.expect("free"),
                // Only a node started within the last second is still fenced.
                Err(e) if e.kind() == ErrorKind::ProviderUnavailable => {
                    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("acquire: {e}"),
            }
        };
        assert!(p
            .try_acquire(&req(name, SHORT))
            .await
            .expect("held")
            .is_none());
        p.renew(&g).await.expect("renew");
        // A master that was never promoted gets no promotion marker (one per slot).
        let marker: Option<String> = on_node(
            owner,
            redis::cmd("GET").arg(marker_key(&format!("lease:{{{name}}}"))),
        )
        .await;
        if replication_field(owner, "second_repl_offset").await == "-1" {
            assert_eq!(marker, None, "a marker on a never-promoted master {owner}");
        } else {
            let replid = replication_field(owner, "master_replid").await;
            assert!(
                marker.is_some_and(|m| m.starts_with(&format!("{replid}|"))),
                "no marker under {replid} on promoted {owner}"
            );
        }
        p.release(&g).await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquirer_on_the_cluster_wakes_on_release_not_on_polling() {
    let Some(urls) = cluster_urls() else { return };
    // The subscriber listens on the first seed; pick a name that lives on another master,
    // so the announcement has to cross the cluster bus.
    let owners = slot_owners(&urls[0]).await;
    let mut admin = raw(&urls[0]).await;
    let seed = urls[0].trim_start_matches("redis://").to_owned();
    let mut name = unique("cluster-handoff");
    while owner_of(&mut admin, &owners, &format!("lease:{{{name}}}")).await == seed {
        name = unique("cluster-handoff");
    }
    let build = || RedisLeaseProvider::builder().cluster_urls(&urls).build();
    let (a, b) = (build().await.expect("a"), build().await.expect("b"));
    // Let the waiter find the name held and subscribe.
    let channel = format!("lease:{{{name}}}:released");
    let settle = move || async move {
        let started = Instant::now();
        loop {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut admin)
                .await
                .expect("numsub");
            if n == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never subscribed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    common::assert_release_wakes_the_waiter(a, b, &name, settle).await;
}

async fn acl_on_every_master(seed: &str, args: &[&str]) {
    let masters: BTreeSet<String> = slot_owners(seed).await.into_iter().map(|o| o.2).collect();
    for master in masters {
        let () = on_node(&master, redis::cmd("ACL").arg(args)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_credentials_reach_every_node_and_are_never_shown() {
    let Some(urls) = cluster_urls() else { return };
    let user = unique("cluster-user");
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let pass = format!(">{password}");
    acl_on_every_master(
        &urls[0],
        &["SETUSER", &user, "on", &pass, "~*", "&*", "+@all"],
    )
    .await;
    let p = RedisLeaseProvider::builder()
        .cluster_urls(&urls)
        .username(&user)
        .password(&password)
        .build()
        .await
        .expect("connect with the ACL user");
    let shown = format!("{p:?}");
    assert!(!shown.contains(&password), "{shown}");
    let prefix = unique("acl");
    let mut grants = Vec::new();
    for i in 0..12 {
        let g = p
            .try_acquire(&req(&format!("{prefix}-{i}"), Duration::from_secs(5)))
            .await
            .expect("acquire")
            .expect("free");
        grants.push(Arc::new(g));
    }
    assert!(p.renew_many(&grants).await.iter().all(Result::is_ok));
    for g in &grants {
        p.release(g).await.expect("release");
    }
    // The password in the URLs works too; a wrong one is Unauthorized and never printed.
    let with = |pw: &str| {
        urls.iter()
            .map(|u| u.replacen("redis://", &format!("redis://{user}:{pw}@"), 1))
            .collect::<Vec<_>>()
    };
    let q = RedisLeaseProvider::builder()
        .cluster_urls(with(&password))
        .build()
        .await
        .expect("connect with the password in the URLs");
    assert!(q.inspect(&grants[0].name).await.expect("inspect").is_none());
    assert!(!format!("{q:?}").contains(&password));
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let e = RedisLeaseProvider::builder()
        .cluster_urls(with(&wrong))
        .build()
        .await
        .expect_err("a wrong password must be rejected");
    assert_eq!(
        e.kind(),
        ErrorKind::Unauthorized,
        "{e} {:?}",
        std::error::Error::source(&e).map(ToString::to_string)
    );
    let text = format!("{e} {e:?}");
    assert!(!text.contains(&wrong), "{text}");
    acl_on_every_master(&urls[0], &["DELUSER", &user]).await;
}

/// A token credential handing out an ACL user's password, counting the requests.
#[derive(Debug)]
struct CountingToken {
    user: String,
    password: String,
    calls: AtomicUsize,
}

impl TokenCredential for CountingToken {
    fn get_token(&self) -> BoxFuture<'_, Result<AccessToken, BoxError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(AccessToken::new(
                &self.user,
                &self.password,
                std::time::SystemTime::now() + Duration::from_secs(3600),
            ))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_credential_authenticates_the_cluster_and_its_subscriber() {
    let Some(urls) = cluster_urls() else { return };
    let user = unique("cluster-token");
    let password = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let pass = format!(">{password}");
    acl_on_every_master(
        &urls[0],
        &["SETUSER", &user, "on", &pass, "~*", "&*", "+@all"],
    )
    .await;
    let cred = Arc::new(CountingToken {
        user: user.clone(),
        password: password.clone(),
        calls: AtomicUsize::new(0),
    });
    let build = || {
        RedisLeaseProvider::builder()
            .cluster_urls(&urls)
            .credential(cred.clone())
            .build()
    };
    let holder = build().await.expect("connect with a token");
    let waiter = build().await.expect("connect with a token");
    assert!(!format!("{waiter:?}").contains(&password));
    let name = unique("token-wake");
    let g = holder
        .try_acquire(&req(&name, Duration::from_secs(10)))
        .await
        .expect("acquire")
        .expect("free");
    assert!(waiter
        .try_acquire(&req(&name, Duration::from_secs(10)))
        .await
        .expect("contended")
        .is_none());
    let calls_before = cred.calls.load(Ordering::SeqCst);
    let mut rx = waiter.release_notifications(&name).expect("notifications");
    // The subscriber authenticates with a fresh token; its first message is the wake-up
    // of a fresh subscription, the second the release.
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(woke.expect("subscribed").expect("message"), name);
    assert!(cred.calls.load(Ordering::SeqCst) > calls_before);
    holder.release(&g).await.expect("release");
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(woke.expect("released").expect("message"), name);
    drop(rx);
    acl_on_every_master(&urls[0], &["DELUSER", &user]).await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_options_reach_the_cluster_client() {
    let Some(ca) = service_env("LEASING_REDIS_TLS_CA") else {
        return;
    };
    // No TLS cluster runs here: a CA is accepted by the cluster client and the down seed
    // reported as unavailable (not as a configuration error).
    let seed = format!("rediss://127.0.0.1:{}", common::free_port());
    let e = RedisLeaseProvider::builder()
        .cluster_urls([&seed])
        .ca_file(&ca)
        .expect("ca")
        .connect_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect_err("nothing listens there");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    // A CA without rediss:// seeds is refused before connecting.
    let e = RedisLeaseProvider::builder()
        .cluster_urls(["redis://127.0.0.1:6411"])
        .ca_file(&ca)
        .expect("ca")
        .build()
        .await
        .expect_err("CA without TLS");
    assert_eq!(e.field(), Some("ca_cert_pem"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_seed_is_skipped_by_the_connection_and_the_subscriber() {
    let Some(urls) = cluster_urls() else { return };
    // The first seed never answers: the cluster connection starts from the others, and
    // the release subscriber moves on to the next seed.
    let mut seeds = vec![format!("redis://127.0.0.1:{}", common::free_port())];
    seeds.extend(urls.iter().cloned());
    let p = RedisLeaseProvider::builder()
        .cluster_urls(&seeds)
        .connect_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect("connect through the live seeds");
    let q = RedisLeaseProvider::builder()
        .cluster_urls(&urls)
        .build()
        .await
        .expect("connect");
    let name = unique("dead-seed");
    let g = q
        .try_acquire(&req(&name, Duration::from_secs(10)))
        .await
        .expect("acquire")
        .expect("free");
    assert!(p
        .try_acquire(&req(&name, Duration::from_secs(10)))
        .await
        .expect("contended")
        .is_none());
    let mut rx = p.release_notifications(&name).expect("notifications");
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(woke.expect("subscribed").expect("message"), name);
    q.release(&g).await.expect("release");
    let woke = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(woke.expect("released").expect("message"), name);
}

#[tokio::test]
async fn unreachable_or_non_cluster_seeds_fail_the_build() {
    let Some(urls) = cluster_urls() else { return };
    let nobody = format!("redis://127.0.0.1:{}", common::free_port());
    let e = RedisLeaseProvider::builder()
        .cluster_urls([&nobody])
        .connect_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect_err("nothing listens there");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    // A server without cluster support is not silently used as one.
    if let Some(single) = service_env("LEASING_REDIS_URL") {
        let e = RedisLeaseProvider::builder()
            .cluster_urls([&single])
            .connect_timeout(Duration::from_millis(500))
            .build()
            .await
            .expect_err("not a cluster");
        assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
        assert_eq!(e.field(), Some("cluster_urls"));
    }
    // Seeds that mix schemes, or a malformed one, are configuration errors.
    let mixed = RedisLeaseProvider::builder()
        .cluster_urls([urls[0].as_str(), "rediss://127.0.0.1:6412"])
        .build()
        .await
        .expect_err("mixed schemes");
    assert_eq!(mixed.kind(), ErrorKind::Configuration);
    let bad = RedisLeaseProvider::builder()
        .cluster_urls(["http://127.0.0.1:6411"])
        .build()
        .await
        .expect_err("bad scheme");
    assert_eq!(bad.field(), Some("url"));
}

#[tokio::test]
async fn cluster_from_env_reads_the_seed_list() {
    let Some(urls) = cluster_urls() else { return };
    let b = leasing_redis::RedisLeaseProviderBuilder::cluster_from_env();
    assert_eq!(b.config().cluster_urls, urls);
    let p = b.build().await.expect("connect");
    assert!(p.inspect(&unique("env")).await.expect("inspect").is_none());
}
