//! Integration scenarios against real redis-server: restarts, network faults through the
//! testkit proxy, fencing after a restart, ACL password rotation through the credential
//! hook, release notifications, pipelined renewal, and competing OS processes.

mod common;

use common::{exists, raw, renewing_options, req, service_env, unique, RedisServer};
use leasing_abstractions::{
    AcquireRequest, BoxError, BoxFuture, ErrorKind, LeaseGrant, LeaseManager, LeaseProvider,
    LeaseState, Metadata,
};
use leasing_redis::{AccessToken, RedisLeaseProvider, RedlockLeaseProvider, TokenCredential};
use leasing_testkit::proxy::FaultProxy;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

async fn wait_state(
    lease: &leasing_abstractions::Lease,
    want: LeaseState,
    limit: Duration,
) -> Instant {
    let mut rx = lease.state_changes();
    tokio::time::timeout(limit, rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "lease did not become {want:?} within {limit:?}; it is {:?}",
                lease.state()
            )
        })
        .expect("state channel");
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_lease_is_reported_lost_never_silently() {
    let Some((mut server, p)) = common::private_server(Duration::from_millis(300)).await else {
        return;
    };
    let d = Duration::from_secs(3);
    let manager = LeaseManager::new(Arc::new(p), renewing_options(d)).expect("manager");
    let name = unique("restart");
    let lease = manager.acquire(&name).await.expect("acquire");
    let sent = lease.grant().sent_at;
    // Down for a while, then back without the data (no persistence).
    server.stop();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart().expect("restart redis-server");
    let lost_at = wait_state(&lease, LeaseState::Lost, d * 2).await;
    // The holder learned of the loss before its lease could have expired on its own clock
    // (renewals before the outage extend the deadline, never shorten it).
    assert!(lease.lost_reason().is_some());
    assert!(lost_at > sent);
    // And the name is usable again after the restart.
    let again = manager.acquire(&name).await.expect("acquire after restart");
    assert!(
        again.fencing_token() > lease.fencing_token(),
        "fencing went backwards across a restart"
    );
    again.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_survives_a_short_outage_without_data_loss_or_is_reported_lost() {
    if !RedisServer::installed() {
        return;
    }
    let server = RedisServer::start().expect("start redis-server");
    let proxy = FaultProxy::start(server.addr()).await.expect("proxy");
    let p = RedisLeaseProvider::builder()
        .url(format!("redis://{}", proxy.addr()))
        .call_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("connect");
    // Retries from the renewal at 1 s run for at least 1.5 s (4 retries, jittered from
    // 0.1–0.2 s doubling), well past the restore at 1.4 s: the first call on the broken
    // connection may fail once more ("broken pipe") while the client reconnects.
    let d = Duration::from_secs(6);
    let options = renewing_options(d)
        .with_auto_renew_interval(Duration::from_secs(1))
        .with_auto_renew_retry_interval(Duration::from_millis(200))
        .with_auto_renew_max_retries(4u32);
    let manager = LeaseManager::new(Arc::new(p), options).expect("manager");
    let name = unique("blip");
    let lease = manager.acquire(&name).await.expect("acquire");
    // A cut shorter than the retry budget, just before a renewal: the renewal fails, is
    // retried, and succeeds after the manager reconnects.
    tokio::time::sleep(Duration::from_millis(900)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    tokio::time::sleep(d).await;
    assert!(
        lease.state().is_active(),
        "a short cut lost the lease: {:?}",
        lease.lost_reason()
    );
    let direct = common::connect(server.url()).await;
    let info = direct
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("still held on the server");
    assert_eq!(info.fencing_token, lease.fencing_token());
    lease.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_is_reported_lost_before_another_client_can_acquire() {
    let Some((server, proxy, via_proxy)) = common::behind_proxy(Duration::from_millis(200)).await
    else {
        return;
    };
    let direct = common::connect(server.url()).await;
    let d = Duration::from_secs(2);
    let manager = LeaseManager::new(Arc::new(via_proxy), renewing_options(d)).expect("manager");
    let name = unique("cut");
    let lease = manager.acquire(&name).await.expect("acquire");
    proxy.partition();
    // Another client polls the server directly until it gets the name.
    let r = req(&name, d);
    let taken_at = loop {
        if let Some(g) = direct.try_acquire(&r).await.expect("direct try_acquire") {
            assert!(g.fencing_token > lease.fencing_token());
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        lease.state(),
        LeaseState::Lost,
        "another client acquired while the holder still believed it held the lease"
    );
    let lost_at = wait_state(
        &lease,
        LeaseState::Lost,
        Duration::ZERO.max(Duration::from_millis(1)),
    )
    .await;
    assert!(lost_at <= taken_at + Duration::from_millis(5));
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_tolerated_and_a_stalled_call_hits_its_deadline() {
    let Some((_server, proxy, p)) = common::behind_proxy(Duration::from_millis(400)).await else {
        return;
    };
    proxy.set_latency(Duration::from_millis(30));
    let name = unique("latency");
    let g = p
        .try_acquire(&req(&name, Duration::from_secs(5)))
        .await
        .expect("acquire")
        .expect("free");
    p.renew(&g).await.expect("renew under latency");
    p.release(&g).await.expect("release under latency");
    // Latency beyond the call deadline: a transient error, not a hang.
    proxy.set_latency(Duration::from_millis(600));
    let started = Instant::now();
    let e = p
        .try_acquire(&req(&name, Duration::from_secs(5)))
        .await
        .expect_err("must time out");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a call outlived its deadline by far"
    );
    proxy.set_latency(Duration::ZERO);
    // The timed-out acquire reached the server after its deadline and granted a 5 s lease
    // nobody knows of; the provider released it in the background (on the same
    // connection, so after the grant). The name is free again long before that TTL.
    let back = Instant::now();
    let mut ok = false;
    while back.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(g)) = p.try_acquire(&req(&name, Duration::from_secs(5))).await {
            p.release(&g).await.expect("release");
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ok,
        "the name was still held 2 s after latency went away: a ghost of the timed-out acquire"
    );
}

/// How many `INFO` commands the server at `url` ran since its statistics were reset (the
/// `INFO commandstats` asking is not counted in its own answer).
async fn info_calls(url: &str) -> u64 {
    let mut c = raw(url).await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .expect("info commandstats");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_info:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a count"))
}

async fn reset_stats(url: &str) {
    let mut c = raw(url).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .expect("config resetstat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_at_the_cores_deadline_makes_the_next_call_check_the_server() {
    use leasing_abstractions::{provider::within, Operation};
    // The transport waits up to 2 s for a reply; the core's deadline is what bounds a call.
    let Some((server, proxy, p)) = common::behind_proxy(Duration::from_secs(2)).await else {
        return;
    };
    let url = server.url();
    let g = p
        .try_acquire(&req(&unique("dropped"), Duration::from_secs(10)))
        .await
        .expect("acquire")
        .expect("free");
    reset_stats(&url).await;
    p.renew(&g).await.expect("renew");
    assert_eq!(
        info_calls(&url).await,
        0,
        "an answered call asks nothing more"
    );
    reset_stats(&url).await;
    proxy.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    let deadline = started + Duration::from_millis(50);
    let e = within(deadline, Operation::Renew, p.renew(&g))
        .await
        .expect_err("dropped at its deadline");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "the core's deadline, not the transport's response timeout, bounds the call"
    );
    proxy.set_latency(Duration::ZERO);
    // (The dropped renewal's late reply arrives on the connection and is discarded.)
    p.renew(&g).await.expect("renew");
    assert_eq!(
        info_calls(&url).await,
        1,
        "the call after the dropped one asked the server who it is first"
    );
    p.release(&g).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_keep_increasing_across_a_restart_without_persistence() {
    let Some((mut server, p)) = common::private_server(Duration::from_millis(500)).await else {
        return;
    };
    let name = unique("fence-restart");
    let r = req(&name, Duration::from_secs(5));
    let mut last = 0;
    for _ in 0..3 {
        let g = p.try_acquire(&r).await.expect("acquire").expect("free");
        assert!(g.fencing_token > last);
        last = g.fencing_token;
        p.release(&g).await.expect("release");
    }
    server.restart().expect("restart redis-server");
    let mut after = None;
    for _ in 0..50 {
        match p.try_acquire(&r).await {
            Ok(g) => {
                after = g;
                break;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let g = after.expect("acquire after restart");
    assert!(
        g.fencing_token > last,
        "token {} after restart is not above {last}",
        g.fencing_token
    );
    // The lease's own reported acquisition time comes from the server clock.
    let info = p.inspect(&name).await.expect("inspect").expect("held");
    assert!(info.expires_at.at().expect("expiry") > SystemTime::now() - Duration::from_secs(5));
}

#[derive(Debug)]
struct RotatingCredential {
    user: String,
    password: Mutex<String>,
    calls: AtomicUsize,
    lifetime: Duration,
}

impl TokenCredential for RotatingCredential {
    fn get_token(&self) -> BoxFuture<'_, Result<AccessToken, BoxError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let pw = self.password.lock().expect("lock").clone();
            if pw.is_empty() {
                return Err("no token".into());
            }
            Ok(AccessToken::new(
                &self.user,
                pw,
                SystemTime::now() + self.lifetime,
            ))
        })
    }
}

async fn acl(admin: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let mut c = redis::cmd("ACL");
    for a in args {
        c.arg(*a);
    }
    let _: redis::Value = c.query_async(admin).await.expect("ACL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_password_rotation_through_the_credential_hook() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let mut admin = raw(&url).await;
    let user = unique("rot");
    let pw1 = format!("one-{}", uuid::Uuid::new_v4().simple());
    let pw2 = format!("two-{}", uuid::Uuid::new_v4().simple());
    acl(
        &mut admin,
        &[
            "SETUSER",
            &user,
            "on",
            &format!(">{pw1}"),
            "~*",
            "&*",
            "+@all",
        ],
    )
    .await;
    let cred = Arc::new(RotatingCredential {
        user: user.clone(),
        password: Mutex::new(pw1.clone()),
        calls: AtomicUsize::new(0),
        lifetime: Duration::from_millis(800),
    });
    let p = RedisLeaseProvider::builder()
        .url(&url)
        .credential(cred.clone())
        .refresh_before_expiry(Duration::from_millis(400))
        .call_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("connect with a token");
    let dbg = format!("{p:?}");
    assert!(!dbg.contains(&pw1));
    let d = Duration::from_secs(3);
    let manager = LeaseManager::new(Arc::new(p), renewing_options(d)).expect("manager");
    let name = unique("rotation");
    let lease = manager.acquire(&name).await.expect("acquire");
    // Rotate: the server accepts both, the credential hands out the new one, then the old
    // password is removed and every connection of the user is killed.
    acl(&mut admin, &["SETUSER", &user, &format!(">{pw2}")]).await;
    *cred.password.lock().expect("lock") = pw2.clone();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    acl(&mut admin, &["SETUSER", &user, &format!("<{pw1}")]).await;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .expect("kill");
    tokio::time::sleep(d).await;
    assert!(
        lease.state().is_active(),
        "rotation lost the lease: {:?}",
        lease.lost_reason()
    );
    assert!(
        cred.calls.load(Ordering::SeqCst) >= 3,
        "the token was not refreshed"
    );
    let other = manager
        .try_acquire(&unique("rotation-2"))
        .await
        .expect("works with the new password");
    other.expect("free").release().await.expect("release");
    lease.release().await.expect("release");
    // A credential that fails is Unauthorized at build time, without the password.
    *cred.password.lock().expect("lock") = String::new();
    let e = RedisLeaseProvider::builder()
        .url(&url)
        .credential(cred.clone())
        .build()
        .await
        .expect_err("no token");
    assert!(!e.to_string().contains(&pw2));
    acl(&mut admin, &["DELUSER", &user]).await;
}

/// `e` is of `kind`, and neither it, its debug form nor its source shows `secret`.
fn assert_kind_without_secret(e: &leasing_abstractions::LeaseError, kind: ErrorKind, secret: &str) {
    assert_eq!(e.kind(), kind, "{e}");
    let text = format!(
        "{e} {e:?} {:?}",
        std::error::Error::source(e).map(|s| s.to_string())
    );
    assert!(!text.contains(secret), "{text}");
}

#[tokio::test]
async fn failed_connections_never_show_the_password() {
    let secret = "Sup3rS3cretPw";
    let e = RedisLeaseProvider::builder()
        .url(format!(
            "redis://user:{secret}@127.0.0.1:{}",
            common::free_port()
        ))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect_err("nothing listens there");
    assert_kind_without_secret(&e, ErrorKind::ProviderUnavailable, secret);
    let e = RedisLeaseProvider::builder()
        .url("http://x")
        .build()
        .await
        .expect_err("bad scheme");
    assert_eq!(e.kind(), ErrorKind::Configuration);
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let e = RedisLeaseProvider::builder()
        .url(&url)
        .username("nobody-like-this")
        .password(secret)
        .build()
        .await
        .expect_err("wrong password");
    assert_kind_without_secret(&e, ErrorKind::Unauthorized, secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquirer_wakes_on_release_not_on_polling() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let build = || RedisLeaseProvider::builder().url(&url).build();
    let (a, b) = (build().await.expect("a"), build().await.expect("b"));
    let name = unique("handoff");
    common::assert_release_wakes_the_waiter(a, b, &name, || {
        tokio::time::sleep(Duration::from_millis(300))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_many_is_one_pipeline_and_reloads_flushed_scripts() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = RedisLeaseProvider::builder()
        .url(&url)
        .max_renew_batch(64)
        .build()
        .await
        .expect("connect");
    assert_eq!(p.capabilities().max_renew_batch, 64);
    assert_eq!(p.provider_name(), "redis");
    assert!(p.config().url.starts_with("redis://"));
    let prefix = unique("many");
    let mut grants: Vec<Arc<LeaseGrant>> = Vec::new();
    for i in 0..40 {
        let g = p
            .try_acquire(&req(&format!("{prefix}-{i}"), Duration::from_secs(10)))
            .await
            .expect("acquire")
            .expect("free");
        grants.push(Arc::new(g));
    }
    assert!(p.renew_many(&grants).await.iter().all(Result::is_ok));
    assert!(p.break_lease(&grants[3].name).await.expect("break"));
    let mut admin = raw(&url).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .expect("flush");
    let results = p.renew_many(&grants).await;
    for (i, r) in results.iter().enumerate() {
        if i == 3 {
            assert_eq!(r.as_ref().expect_err("broken").kind(), ErrorKind::Lost);
        } else {
            r.as_ref().expect("renewed after NOSCRIPT reload");
        }
    }
    assert!(p.renew_many(&[]).await.is_empty());
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .expect("flush");
    for g in &grants {
        p.release(g).await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_renews_many_leases_through_the_provider() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = common::connect(&url).await;
    let d = Duration::from_millis(1500);
    let manager = LeaseManager::new(Arc::new(p), renewing_options(d)).expect("manager");
    let prefix = unique("batch");
    let mut leases = Vec::new();
    for i in 0..20 {
        leases.push(
            manager
                .acquire(&format!("{prefix}-{i}"))
                .await
                .expect("acquire"),
        );
    }
    tokio::time::sleep(d * 3).await;
    assert!(
        leases.iter().all(|l| l.is_held()),
        "a lease was not renewed"
    );
    for l in leases {
        l.release().await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_fencing_survives_lost_counters_and_uneven_servers() {
    let Some(urls) = service_env("LEASING_REDLOCK_URLS") else {
        return;
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    let p = RedlockLeaseProvider::builder()
        .urls(&urls)
        .build()
        .await
        .expect("build");
    assert_eq!(p.provider_name(), "redlock");
    assert!(p.release_notifications("any").is_some());
    let name = unique("rl-fence");
    let mut md = Metadata::new();
    md.insert("region".into(), "eu".into());
    let r = AcquireRequest::new(&name, Duration::from_secs(5), md.clone());
    let g1 = p.try_acquire(&r).await.expect("acquire").expect("free");
    assert!(p.try_acquire(&r).await.expect("contended").is_none());
    let info = p.inspect(&name).await.expect("inspect").expect("held");
    assert_eq!(info.metadata, md);
    assert_eq!(info.fencing_token, g1.fencing_token);
    p.release(&g1).await.expect("release");
    // Two servers forget their counters (a restart without persistence) and one jumps ahead.
    let mut sorted = urls.clone();
    sorted.sort();
    for u in &sorted[..2] {
        let mut c = raw(u).await;
        let _: () = redis::cmd("DEL")
            .arg(format!("lease:{{{name}}}:fence"))
            .query_async(&mut c)
            .await
            .expect("del");
    }
    let mut c = raw(&sorted[4]).await;
    let ahead = g1.fencing_token + 1_000_000;
    let _: () = redis::cmd("SET")
        .arg(format!("lease:{{{name}}}:fence"))
        .arg(ahead)
        .query_async(&mut c)
        .await
        .expect("set");
    let g2 = p.try_acquire(&r).await.expect("acquire").expect("free");
    // The guarantee is relative to earlier grants (whose majority intersects this one),
    // not to every counter: the grant is decided as soon as a majority granted, which may
    // or may not include the server that jumped ahead (a late grant there records the
    // chosen token, its counter stays ahead).
    assert!(
        g2.fencing_token > g1.fencing_token,
        "token {} not above the previous grant's {}",
        g2.fencing_token,
        g1.fencing_token
    );
    let info = p.inspect(&name).await.expect("inspect").expect("held");
    assert_eq!(info.fencing_token, g2.fencing_token);
    p.release(&g2).await.expect("release");
    let g3 = p.try_acquire(&r).await.expect("acquire").expect("free");
    assert!(g3.fencing_token > g2.fencing_token);
    // Renew and batch renew on all; lost once a majority no longer holds it.
    p.renew(&g3).await.expect("renew");
    let arc = Arc::new(g3.clone());
    assert!(p.renew_many(std::slice::from_ref(&arc)).await[0].is_ok());
    assert!(p.break_lease(&name).await.expect("break"));
    assert_eq!(
        p.renew(&g3).await.expect_err("lost").kind(),
        ErrorKind::Lost
    );
    assert_eq!(
        p.renew_many(&[arc]).await[0]
            .as_ref()
            .expect_err("lost")
            .kind(),
        ErrorKind::Lost
    );
    assert!(!p.break_lease(&name).await.expect("break"));
}

/// The shared Redlock servers, sorted (the order the provider tries them in), and a
/// provider over them; `None` when they are not configured.
async fn shared_redlock() -> Option<(Vec<String>, RedlockLeaseProvider)> {
    let mut urls: Vec<String> = service_env("LEASING_REDLOCK_URLS")?
        .split(',')
        .map(str::to_owned)
        .collect();
    urls.sort();
    let p = RedlockLeaseProvider::builder()
        .urls(&urls)
        .build()
        .await
        .expect("build");
    Some((urls, p))
}

/// Runs `cmd` on each of `urls`.
async fn on_each(urls: &[String], cmd: &redis::Cmd) {
    for u in urls {
        let mut c = raw(u).await;
        let _: () = cmd.query_async(&mut c).await.expect("command");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_raises_the_first_server_to_a_token_chosen_by_the_others() {
    let Some((urls, p)) = shared_redlock().await else {
        return;
    };
    let name = unique("rl-raise");
    let counter = format!("lease:{{{name}}}:fence");
    // Every server but the first (the one tried first) has a counter far ahead: whichever
    // of them make up the majority, the token is above the first server's own, so the
    // first server must be raised to it before the grant is returned.
    let ahead: u64 = 9_000_000_000_000_000;
    on_each(&urls[1..], redis::cmd("SET").arg(&counter).arg(ahead)).await;
    let r = req(&name, Duration::from_secs(5));
    let g = p.try_acquire(&r).await.expect("acquire").expect("free");
    assert_eq!(g.fencing_token, ahead + 1, "the majority's token");
    let mut first = raw(&urls[0]).await;
    let raised: u64 = redis::cmd("GET")
        .arg(&counter)
        .query_async(&mut first)
        .await
        .expect("get");
    assert!(
        raised >= g.fencing_token,
        "the first server's counter {raised} was not raised to the grant's {}",
        g.fencing_token
    );
    let info = p.inspect(&name).await.expect("inspect").expect("held");
    assert_eq!(info.fencing_token, g.fencing_token, "recorded in the lease");
    p.release(&g).await.expect("release");
    on_each(&urls, redis::cmd("DEL").arg(&counter)).await;
}

#[tokio::test]
async fn redlock_without_a_majority_is_unavailable_and_cleans_up() {
    let Some((up, p)) = common::redlock_without_a_majority("127.0.0.1").await else {
        return;
    };
    let name = unique("rl-minority");
    let r = req(&name, Duration::from_secs(5));
    let e = p.try_acquire(&r).await.expect_err("no majority");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    for u in &up {
        assert!(
            !exists(u, &name).await,
            "a partial acquisition was left on {u}"
        );
    }
    let fake = LeaseGrant::new(&r, "nope", 1, SystemTime::now(), Instant::now());
    for (op, result) in [
        ("inspect", p.inspect(&name).await.map(drop)),
        ("break_lease", p.break_lease(&name).await.map(drop)),
        ("renew", p.renew(&fake).await.map(drop)),
        ("release", p.release(&fake).await.map(drop)),
    ] {
        let e = result.expect_err("no majority");
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{op}: {e}");
    }
    // All servers down: the first phase cannot find any server.
    let p = common::redlock_all_down(3, &up[0]).await;
    assert_eq!(
        p.try_acquire(&r).await.expect_err("down").kind(),
        ErrorKind::ProviderUnavailable
    );
}

#[tokio::test]
async fn redlock_split_votes_are_cleaned_up_and_report_contention() {
    let Some((urls, p)) = shared_redlock().await else {
        return;
    };
    let name = unique("rl-split");
    // Someone else holds the name on three of the five servers, but not on the first.
    on_each(
        &urls[2..],
        redis::cmd("SET")
            .arg(format!("lease:{{{name}}}"))
            .arg("0other|1|1|")
            .arg("PX")
            .arg(5000),
    )
    .await;
    let r = req(&name, Duration::from_secs(5));
    assert!(p
        .try_acquire(&r)
        .await
        .expect("contention is not an error")
        .is_none());
    assert!(
        !exists(&urls[0], &name).await,
        "the partial acquisition on the first server was not cleaned up"
    );
    assert!(p
        .inspect(&name)
        .await
        .expect("inspect")
        .is_some_and(|i| i.lease_id.as_deref() == Some("other")));
    assert!(p.break_lease(&name).await.expect("break"));
}

/// One worker of `competing_processes_hold_the_lease_one_at_a_time`; a no-op unless run
/// as a child with `LEASING_WORKER_NAME` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() {
    let Ok(name) = std::env::var("LEASING_WORKER_NAME") else {
        return;
    };
    let url = std::env::var("LEASING_REDIS_URL").expect("url");
    let p = common::connect(&url).await;
    let manager =
        LeaseManager::new(Arc::new(p), renewing_options(Duration::from_secs(5))).expect("manager");
    let mut c = raw(&url).await;
    for _ in 0..5 {
        let lease = manager.acquire(&name).await.expect("acquire");
        let inside: i64 = redis::cmd("INCR")
            .arg(format!("{name}:inside"))
            .query_async(&mut c)
            .await
            .expect("incr");
        assert_eq!(inside, 1, "two processes inside the critical section");
        let _: () = redis::cmd("RPUSH")
            .arg(format!("{name}:tokens"))
            .arg(lease.fencing_token())
            .query_async(&mut c)
            .await
            .expect("rpush");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _: i64 = redis::cmd("DECR")
            .arg(format!("{name}:inside"))
            .query_async(&mut c)
            .await
            .expect("decr");
        lease.release().await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_processes_hold_the_lease_one_at_a_time() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let name = unique("procs");
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "worker_process",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("LEASING_WORKER_NAME", &name)
                .env("LEASING_REDIS_URL", &url)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success(), "a worker process failed");
    }
    let mut c = raw(&url).await;
    let tokens: Vec<u64> = redis::cmd("LRANGE")
        .arg(format!("{name}:tokens"))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .expect("lrange");
    assert_eq!(tokens.len(), 20);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens not strictly increasing in critical-section order: {tokens:?}"
    );
    let _: () = redis::cmd("DEL")
        .arg(format!("{name}:tokens"))
        .arg(format!("{name}:inside"))
        .query_async(&mut c)
        .await
        .expect("del");
}

/// The shared Redlock servers, sorted.
fn shared_sorted() -> Option<Vec<String>> {
    let urls = service_env("LEASING_REDLOCK_URLS")?;
    let mut all: Vec<String> = urls.split(',').map(str::to_owned).collect();
    all.sort();
    Some(all)
}

/// A fault proxy in front of the server at `url` (`redis://ip:port`).
async fn proxy_to(url: &str) -> FaultProxy {
    let target: std::net::SocketAddr = url.trim_start_matches("redis://").parse().expect("addr");
    FaultProxy::start(target).await.expect("proxy")
}

/// A Redlock provider on `urls` with a per-call deadline of `call_timeout`.
async fn redlock_with_deadline(urls: &[String], call_timeout: Duration) -> RedlockLeaseProvider {
    RedlockLeaseProvider::builder()
        .urls(urls)
        .call_timeout(call_timeout)
        .build()
        .await
        .expect("build")
}

/// The first four of the sorted shared Redlock servers plus `extra`.
fn redlock_with(extra: String) -> Option<Vec<String>> {
    let mut all = shared_sorted()?;
    all.truncate(4);
    all.push(extra);
    Some(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_releases_a_ghost_left_by_a_slow_first_server() {
    let Some(shared) = shared_sorted() else {
        return;
    };
    // The first shared server behind a slow proxy; the proxy's ephemeral port sorts
    // before the shared servers' 64xx, so it is the first server of the first phase.
    let proxy = proxy_to(&shared[0]).await;
    let slow = format!("redis://{}", proxy.addr());
    let mut all = vec![slow.clone()];
    all.extend(shared[1..].iter().cloned());
    all.sort();
    assert_eq!(all[0], slow, "the proxy must sort first");
    let p = redlock_with_deadline(&all, Duration::from_millis(100)).await;
    let name = unique("rl-ghost");
    // Someone else holds the name on the second server, which then decides: held.
    let mut c = raw(&shared[1]).await;
    let _: () = redis::cmd("SET")
        .arg(format!("lease:{{{name}}}"))
        .arg("0other|1|1|")
        .query_async(&mut c)
        .await
        .expect("set");
    let _: () = redis::cmd("PEXPIRE")
        .arg(format!("lease:{{{name}}}"))
        .arg(10_000)
        .query_async(&mut c)
        .await
        .expect("pexpire");
    // Warm the proxied connection, then make it slower than the call deadline.
    let _ = p.inspect(&name).await;
    proxy.set_latency(Duration::from_millis(300));
    let r = req(&name, Duration::from_secs(10));
    assert!(p
        .try_acquire(&r)
        .await
        .expect("contention is not an error")
        .is_none());
    // The first server's timed-out acquire still granted there (late); the cleanup sent
    // after it on the same connection removes it well before its 10 s TTL.
    let started = Instant::now();
    let mut gone = false;
    while started.elapsed() < Duration::from_secs(3) {
        if !exists(&shared[0], &name).await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // (Without the cleanup the late grant stays for the full TTL.)
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        gone && !exists(&shared[0], &name).await,
        "a ghost grant was left on the slow server"
    );
    let _: () = redis::cmd("DEL")
        .arg(format!("lease:{{{name}}}"))
        .query_async(&mut c)
        .await
        .expect("del");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_with_a_blackholed_server_acquires_early_and_keeps_renewing() {
    let Some(shared) = shared_sorted() else {
        return;
    };
    let direct = &shared[..4];
    let proxy = proxy_to(&shared[4]).await;
    proxy.partition();
    let d = Duration::from_secs(2);
    let validity = d - leasing_abstractions::clock_drift(d);
    // The blackholed server sorts last ("localhost" > "127…": decided in the parallel
    // phase) or first (its ephemeral port sorts before 64xx: the sequential phase).
    for host in ["localhost", "127.0.0.1"] {
        let urls = redlock_with(format!("redis://{host}:{}", proxy.addr().port())).expect("urls");
        let p = redlock_with_deadline(&urls, Duration::from_secs(2)).await;
        let name = unique("rl-blackhole");
        let g = p
            .try_acquire(&req(&name, d))
            .await
            .expect("acquire")
            .expect("free");
        let remaining = validity.saturating_sub(g.sent_at.elapsed());
        assert!(
            remaining >= d / 2,
            "{host}: the grant came back with only {remaining:?} of {validity:?} validity left"
        );
        // The servers that had not answered when a majority granted join the lease when
        // they answer.
        let started = Instant::now();
        for u in direct {
            while !exists(u, &name).await {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{host}: not held on {u}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        p.renew(&g).await.expect("renew");
        let arc = Arc::new(g.clone());
        assert!(p.renew_many(std::slice::from_ref(&arc)).await[0].is_ok());
        p.release(&g).await.expect("release");
    }
    // Auto-renewal under the core's safety deadline: held for three durations.
    let urls = redlock_with(format!("redis://localhost:{}", proxy.addr().port())).expect("urls");
    let p = redlock_with_deadline(&urls, Duration::from_secs(2)).await;
    let manager = LeaseManager::new(Arc::new(p), renewing_options(d)).expect("manager");
    let name = unique("rl-blackhole-renew");
    let lease = manager.acquire(&name).await.expect("acquire");
    tokio::time::sleep(d * 3).await;
    assert!(
        lease.state().is_active(),
        "the lease was lost with one of five servers blackholed: {:?}",
        lease.lost_reason()
    );
    lease.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_are_multiples_of_1e8_are_stored_exactly() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = common::connect(&url).await;
    let name = unique("fmt-1e8");
    let mut c = raw(&url).await;
    // A counter just below a multiple of 1e8 that is ahead of the server clock (tokens are
    // max(counter + 1, clock µs)), so the next token is that multiple.
    let want = next_multiple_of_1e8_ahead_of_the_clock();
    let g = grant_after_counter(&p, &mut c, &name, want).await;
    let info = p.inspect(&name).await.expect("inspect").expect("held");
    assert_eq!(info.fencing_token, want);
    let record: String = redis::cmd("GET")
        .arg(format!("lease:{{{name}}}"))
        .query_async(&mut c)
        .await
        .expect("get");
    let fields: Vec<&str> = record.splitn(4, '|').collect();
    assert_eq!(fields[1], want.to_string(), "record {record}");
    assert!(
        fields[2].bytes().all(|b| b.is_ascii_digit()),
        "acquired-at in {record}"
    );
    p.release(&g).await.expect("release");
    // Redlock raises counters through the floor (a SET written by the script).
    if let Some(urls) = shared_sorted() {
        let rl = RedlockLeaseProvider::builder()
            .urls(&urls)
            .build()
            .await
            .expect("build");
        let name = unique("fmt-1e8-rl");
        let mut first = raw(&urls[0]).await;
        let want = next_multiple_of_1e8_ahead_of_the_clock() + 100_000_000;
        let g = grant_after_counter(&rl, &mut first, &name, want).await;
        // Every server ends up storing the token exactly (the slower ones once they
        // answer).
        let started = Instant::now();
        for u in &urls[1..] {
            let mut c = raw(u).await;
            loop {
                let counter: Option<String> = redis::cmd("GET")
                    .arg(format!("lease:{{{name}}}:fence"))
                    .query_async(&mut c)
                    .await
                    .expect("get");
                let record: Option<String> = redis::cmd("GET")
                    .arg(format!("lease:{{{name}}}"))
                    .query_async(&mut c)
                    .await
                    .expect("get");
                let stored = record
                    .as_deref()
                    .and_then(|r| r.split('|').nth(1))
                    .map(str::to_owned);
                if counter.is_some() && stored.is_some() {
                    assert_eq!(counter, Some(want.to_string()), "counter on {u}");
                    assert_eq!(stored, Some(want.to_string()), "token on {u}");
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "nothing stored on {u}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(
            rl.inspect(&name)
                .await
                .expect("inspect")
                .expect("held")
                .fencing_token,
            want
        );
        rl.release(&g).await.expect("release");
    }
}

/// Sets the fencing counter of `name` (on the server of `c`) to one below `want`, then
/// acquires `name` from `p`: the grant must carry `want` exactly.
async fn grant_after_counter(
    p: &impl LeaseProvider,
    c: &mut redis::aio::MultiplexedConnection,
    name: &str,
    want: u64,
) -> LeaseGrant {
    let _: () = redis::cmd("SET")
        .arg(format!("lease:{{{name}}}:fence"))
        .arg((want - 1).to_string())
        .query_async(c)
        .await
        .expect("set");
    let g = p
        .try_acquire(&req(name, Duration::from_secs(5)))
        .await
        .expect("acquire")
        .expect("free");
    assert_eq!(g.fencing_token, want);
    g
}

/// The next multiple of 1e8 µs at least 100 s ahead of this machine's clock (the servers
/// run on it).
fn next_multiple_of_1e8_ahead_of_the_clock() -> u64 {
    let now_us = u64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_micros(),
    )
    .expect("µs fit in u64");
    (now_us / 100_000_000 + 2) * 100_000_000
}
