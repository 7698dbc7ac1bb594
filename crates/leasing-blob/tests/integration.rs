//! Integration tests against Azurite: container-creation race, listing, batches, infinite
//! leases, break, durations rejected before any request, network faults, a restart.

mod common;

use common::{azurite, container, key_provider, skip_if_missing, unique, AzuriteServer};
use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseDuration, LeaseExpiry, LeaseManager, LeaseOptions,
    LeaseProvider, LeaseState, ListRequest, Metadata,
};
use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use leasing_testkit::proxy::FaultProxy;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const D: Duration = Duration::from_secs(15);

fn req(name: &str) -> AcquireRequest {
    AcquireRequest::new(name, D, Metadata::new())
}

fn via(addr: std::net::SocketAddr, container: &str, timeout: Duration) -> BlobLeaseProvider {
    BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(format!("http://{addr}/devstoreaccount1"))
            .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
            .container(container)
            .call_timeout(timeout)
            .into_config()
            .expect("config"),
    )
    .expect("build")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_providers_create_the_container_at_once() {
    let Some(url) = azurite() else { return };
    let c = container("race");
    let providers: Vec<_> = (0..12).map(|_| key_provider(&url, &c)).collect();
    let same = unique("same");
    let results = futures::future::join_all(providers.iter().enumerate().map(|(i, p)| {
        let same = same.clone();
        async move {
            let own = p.try_acquire(&req(&format!("own-{i}"))).await;
            let shared = p.try_acquire(&req(&same)).await;
            (own, shared)
        }
    }))
    .await;
    let mut winners = 0;
    for (own, shared) in results {
        assert!(
            own.expect("own name").is_some(),
            "a free name was not granted"
        );
        winners += usize::from(shared.expect("shared name").is_some());
    }
    assert_eq!(winners, 1, "{winners} providers won one name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_outside_the_service_rules_are_rejected_without_a_request() {
    let Some(_) = azurite() else { return };
    let proxy = FaultProxy::start("127.0.0.1:10000".parse().expect("addr"))
        .await
        .expect("proxy");
    let p: Arc<dyn LeaseProvider> = Arc::new(via(proxy.addr(), &container("dur"), D));
    let name = unique("dur");
    for d in [
        Duration::from_secs(14),
        Duration::from_secs(61),
        Duration::from_millis(15_500),
    ] {
        let e = p
            .try_acquire(&AcquireRequest::new(&name, d, Metadata::new()))
            .await
            .expect_err("rejected");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{d:?}: {e}");
        assert_eq!(e.field(), Some("lease_duration"));
        let manager = LeaseManager::new(p.clone(), LeaseOptions::default()).expect("manager");
        let e = manager
            .try_acquire_with(
                &name,
                leasing_abstractions::AcquireOptions::new().duration(d),
            )
            .await
            .expect_err("rejected by the core");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{d:?}: {e}");
    }
    assert_eq!(proxy.accepted(), 0, "a request reached the service");
    let caps = p.capabilities();
    assert_eq!(caps.min_duration, Duration::from_secs(15));
    assert_eq!(caps.max_duration, Duration::from_secs(60));
    assert_eq!(caps.duration_granularity, Duration::from_secs(1));
    assert!(caps.infinite_leases && caps.listing);
    assert_eq!(p.provider_name(), "blob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_leases_hold_until_released_or_broken() {
    let Some(url) = azurite() else { return };
    let c = container("inf");
    let p = key_provider(&url, &c);
    let q = key_provider(&url, &c);
    let name = unique("inf");
    let inf = AcquireRequest::new(&name, LeaseDuration::Infinite, Metadata::new());
    let g = p.try_acquire(&inf).await.expect("acquire").expect("free");
    assert!(q.try_acquire(&inf).await.expect("try").is_none());
    let info = q.inspect(&name).await.expect("inspect").expect("held");
    assert_eq!(info.expires_at, LeaseExpiry::Never);
    assert_eq!(info.fencing_token, g.fencing_token);
    p.renew(&g)
        .await
        .expect("renewing an infinite lease is harmless");
    assert!(q.break_lease(&name).await.expect("break"));
    assert!(!q.break_lease(&name).await.expect("break again"));
    let e = p.renew(&g).await.expect_err("renew after break");
    assert_eq!(e.kind(), ErrorKind::Lost);
    let g2 = q.try_acquire(&inf).await.expect("acquire").expect("free");
    assert!(g2.fencing_token > g.fencing_token);
    q.release(&g2).await.expect("release");
    p.release(&g).await.expect("stale release is Ok");
    assert!(p.inspect(&name).await.expect("inspect").is_none());
    // Through the manager: no renewal, held until released.
    let manager = LeaseManager::new(Arc::new(p), LeaseOptions::default()).expect("manager");
    let lease = manager
        .acquire_with(
            &name,
            leasing_abstractions::AcquireOptions::new().duration(LeaseDuration::Infinite),
        )
        .await
        .expect("infinite through the manager");
    assert!(lease.is_held());
    assert!(lease.fencing_token() > g2.fencing_token);
    lease.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_metadata_round_trips_and_plain_values_stay_readable() {
    let Some(url) = azurite() else { return };
    let p = key_provider(&url, &container("meta"));
    let name = unique("meta/ü:x");
    let name = name.replace('ü', "u");
    let mut md = Metadata::new();
    md.insert("hebrew".into(), "שלום עולם".into());
    md.insert("arabic".into(), "مرحبا بالعالم".into());
    md.insert("emoji".into(), "👩‍👩‍👧‍👦 🚀".into());
    md.insert("Host".into(), "node-1.example".into());
    md.insert("looks_encoded".into(), "=?UTF-8?B?eA==?=".into());
    let g = p
        .try_acquire(&AcquireRequest::new(&name, D, md.clone()))
        .await
        .expect("acquire")
        .expect("free");
    let info = p.inspect(&name).await.expect("inspect").expect("held");
    assert_eq!(info.metadata, md);
    assert_eq!(info.expires_at, LeaseExpiry::Unknown);
    assert_eq!(info.acquired_at, g.acquired_at);
    assert!(
        g.version.get().is_some(),
        "the grant carries the blob's ETag"
    );
    p.release(&g).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_held_leases_under_their_names() {
    let Some(url) = azurite() else { return };
    let c = container("list");
    let p = key_provider(&url, &c);
    let empty = p
        .list(&ListRequest::new("nothing"))
        .await
        .expect("list of a missing container");
    assert!(empty.leases.is_empty() && empty.cursor.is_none());
    let base = unique("ls");
    let names: Vec<String> = (0..7)
        .map(|i| format!("{base}/a:{i}%~."))
        .chain([format!("{base}/b"), format!("{base}.")])
        .collect();
    let mut grants = Vec::new();
    for n in &names {
        grants.push(
            p.try_acquire(&req(n))
                .await
                .expect("acquire")
                .expect("free"),
        );
    }
    // A free lease is not listed.
    p.release(&grants.pop().expect("last"))
        .await
        .expect("release");
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = p
            .list(
                &ListRequest::new(format!("{base}/a"))
                    .with_cursor(cursor)
                    .with_limit(3),
            )
            .await
            .expect("list");
        pages += 1;
        assert!(!page.leases.is_empty() || page.cursor.is_none());
        for l in page.leases {
            let g = grants
                .iter()
                .find(|g| g.name == l.name)
                .expect("listed a held name");
            assert_eq!(l.fencing_token, g.fencing_token);
            assert_eq!(l.expires_at, LeaseExpiry::Unknown);
            seen.push(l.name);
        }
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert!(pages >= 3, "limit 3 over 7 leases gave {pages} pages");
    seen.sort();
    let mut want: Vec<String> = names[..7].to_vec();
    want.sort();
    assert_eq!(seen, want);
    let all = p.list(&ListRequest::new(&base)).await.expect("list");
    assert_eq!(all.leases.len(), 8);
    // A first service page holding only the released lease is skipped, not returned empty.
    let first = p
        .list(&ListRequest::new(&base).with_limit(1))
        .await
        .expect("list");
    assert_eq!(first.leases.len(), 1);
    // A blob in the container that is not a lease blob is ignored.
    let foreign = azure_storage_blob::BlobClient::new(
        azure_core::http::Url::parse(&format!(
            "{url}/{c}/lease-{base}~zz?{}",
            common::account_sas()
        ))
        .expect("url"),
        None,
        None,
    )
    .expect("client");
    foreign
        .upload(
            azure_core::http::RequestContent::from(Vec::<u8>::new()),
            None,
        )
        .await
        .expect("upload a foreign blob");
    assert_eq!(
        p.list(&ListRequest::new(&base))
            .await
            .expect("list")
            .leases
            .len(),
        8
    );
    let dot = p
        .list(&ListRequest::new(format!("{base}.")))
        .await
        .expect("list");
    assert!(dot.leases.is_empty(), "the released name is not listed");
    for g in &grants {
        p.release(g).await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renew_many_renews_a_batch_and_reports_each_loss() {
    let Some(url) = azurite() else { return };
    let c = container("many");
    let p = BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(&url)
            .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
            .container(&c)
            .renew_concurrency(4)
            .into_config()
            .expect("config"),
    )
    .expect("build");
    let mut grants = Vec::new();
    for i in 0..40 {
        let g = p
            .try_acquire(&req(&unique(&format!("many-{i}"))))
            .await
            .expect("acquire")
            .expect("free");
        grants.push(Arc::new(g));
    }
    assert!(p.break_lease(&grants[7].name).await.expect("break"));
    let results = p.renew_many(&grants).await;
    assert_eq!(results.len(), grants.len());
    for (i, r) in results.iter().enumerate() {
        if i == 7 {
            assert_eq!(r.as_ref().expect_err("broken").kind(), ErrorKind::Lost);
        } else {
            r.as_ref().expect("renewed");
        }
    }
    for g in &grants {
        p.release(g).await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_cut_or_stall_is_unavailable_within_the_call_deadline() {
    let Some(_) = azurite() else { return };
    let proxy = FaultProxy::start("127.0.0.1:10000".parse().expect("addr"))
        .await
        .expect("proxy");
    let timeout = Duration::from_millis(800);
    let p = via(proxy.addr(), &container("cut"), timeout);
    let name = unique("cut");
    let g = p
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    proxy.cut();
    let e = p.renew(&g).await.expect_err("renew through a cut");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.is_retryable());
    let e = p.inspect(&name).await.expect_err("inspect through a cut");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    proxy.restore();
    proxy.set_latency(Duration::from_secs(3));
    // Outside the core, the transport's request bound (`call_timeout`) ends a call.
    let e = p.renew(&g).await.expect_err("renew through a stall");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    // Within the core, the call's deadline does (here shorter than the transport's).
    let manager = LeaseManager::new(
        Arc::new(p.clone()),
        LeaseOptions::default().with_call_timeout(Duration::from_millis(300)),
    )
    .expect("manager");
    let e = manager
        .inspect(&name)
        .await
        .expect_err("inspect through a stall");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.to_string().contains("within its deadline (300ms)"), "{e}");
    for what in ["acquire", "break", "list", "release"] {
        let e = match what {
            "acquire" => p.try_acquire(&req(&unique("stall"))).await.map(|_| ()),
            "break" => p.break_lease(&name).await.map(|_| ()),
            "list" => p.list(&ListRequest::new("x")).await.map(|_| ()),
            _ => p.release(&g).await,
        }
        .expect_err(what);
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{what}: {e}");
    }
    proxy.set_latency(Duration::from_millis(20));
    p.renew(&g).await.expect("renew with some latency");
    p.release(&g).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azurite_restart_loses_the_lease_and_tokens_keep_rising() {
    let Some(mut server) = skip_if_missing(AzuriteServer::start()) else {
        return;
    };
    let url = server.url();
    let c = container("restart");
    let manager = LeaseManager::new(
        Arc::new(key_provider(&url, &c)),
        LeaseOptions::default()
            .with_default_lease_duration(D)
            .with_auto_renew_interval(Duration::from_secs(2))
            .with_auto_renew_retry_interval(Duration::from_millis(200)),
    )
    .expect("manager");
    let name = unique("restart");
    let lease = manager.acquire(&name).await.expect("acquire");
    let before = lease.fencing_token();
    server.restart().expect("restart Azurite");
    // The next renewal finds the blob gone: the holder is told at once, not at expiry.
    let started = Instant::now();
    let reason = tokio::time::timeout(D, lease.lost())
        .await
        .expect("the holder learns it lost the lease");
    assert!(started.elapsed() < D);
    assert_eq!(lease.state(), LeaseState::Lost, "{reason:?}");
    let other = key_provider(&url, &c);
    let g = other
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        g.fencing_token > before,
        "token {} after the restart is not above {before}",
        g.fencing_token
    );
    other.release(&g).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_unavailable_not_a_hang() {
    let Some(mut server) = skip_if_missing(AzuriteServer::start()) else {
        return;
    };
    let p = key_provider(&server.url(), &container("dead"));
    let name = unique("dead");
    let g = p
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    server.stop();
    let e = p.renew(&g).await.expect_err("renew on a dead server");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    let e = p
        .try_acquire(&req(&name))
        .await
        .expect_err("acquire on a dead server");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_being_broken_with_a_period_is_still_held() {
    let Some(url) = azurite() else { return };
    let c = container("breaking");
    let p = key_provider(&url, &c);
    let name = unique("breaking");
    let g = p
        .try_acquire(&req(&name))
        .await
        .expect("acquire")
        .expect("free");
    // An operator breaks it with a break period, outside this library.
    let blob = azure_storage_blob::BlobClient::new(
        azure_core::http::Url::parse(&format!("{url}/{c}/lease-{name}?{}", common::account_sas()))
            .expect("url"),
        None,
        None,
    )
    .expect("client");
    blob.break_lease(Some(
        azure_storage_blob::models::BlobClientBreakLeaseOptions {
            break_period: Some(10),
            ..Default::default()
        },
    ))
    .await
    .expect("break with a period");
    assert!(
        p.try_acquire(&req(&name))
            .await
            .expect("try_acquire")
            .is_none(),
        "a breaking lease was granted"
    );
    assert!(p.inspect(&name).await.expect("inspect").is_some());
    p.release(&g).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_holder_knows_it_lost_before_anyone_else_acquires() {
    let Some(url) = azurite() else { return };
    let proxy = FaultProxy::start("127.0.0.1:10000".parse().expect("addr"))
        .await
        .expect("proxy");
    let c = container("partition");
    let manager = LeaseManager::new(
        Arc::new(via(proxy.addr(), &c, Duration::from_secs(1))),
        LeaseOptions::default()
            .with_default_lease_duration(D)
            .with_auto_renew_interval(Duration::from_secs(5))
            .with_auto_renew_retry_interval(Duration::from_millis(200)),
    )
    .expect("manager");
    let name = unique("partition");
    let lease = manager.acquire(&name).await.expect("acquire");
    proxy.partition();
    let direct = key_provider(&url, &c);
    let taker = loop {
        if let Some(g) = direct
            .try_acquire(&req(&name))
            .await
            .expect("direct try_acquire")
        {
            break g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        lease.state(),
        LeaseState::Lost,
        "another client acquired while the partitioned holder still believed it held the lease"
    );
    assert!(!lease.is_held());
    assert!(taker.fencing_token > lease.fencing_token());
    proxy.restore();
    direct.release(&taker).await.expect("release");
}

/// `scripts/azurite-up.sh` exports exactly what `from_env()` reads: a provider built from
/// the environment alone reaches Azurite and holds a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_reaches_the_service_the_script_started() {
    if azurite().is_none() {
        return;
    }
    let Some(cs) = common::service_env("AZURE_STORAGE_CONNECTION_STRING") else {
        return;
    };
    assert_eq!(cs, "UseDevelopmentStorage=true");
    let c = container("fromenv");
    let provider = leasing_blob::BlobLeaseProviderBuilder::from_env()
        .container(c.as_str())
        .build()
        .await
        .expect("from_env build");
    let manager = LeaseManager::new(Arc::new(provider), LeaseOptions::default()).expect("manager");
    let lease = manager
        .try_acquire(&unique("env"))
        .await
        .expect("try_acquire");
    let lease = lease.expect("the name is free");
    assert!(lease.is_held());
    lease.release().await.expect("release");
}
