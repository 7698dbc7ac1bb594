//! The Blob fenced resource against Azurite: the recipe suite's fenced-resource contract
//! (account key and SAS), round trips per call, keys, and errors.

mod common;

use common::{azurite, container, key_provider};
use leasing_abstractions::fence::{Fence, FencedResource, FencedWrite};
use leasing_abstractions::{ErrorKind, LeaseProvider};
use leasing_blob::{BlobFencedResource, BlobLeaseProvider, DEV_ACCOUNT};
use leasing_testkit::conformance::Subject;
use leasing_testkit::recipes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A resource in a fresh container of its own.
async fn items(provider: &BlobLeaseProvider) -> BlobFencedResource {
    let r = BlobFencedResource::new(provider, &container("items")).expect("resource");
    assert!(r.create_container().await.expect("create"), "a new one");
    assert!(!r.create_container().await.expect("again"), "exists now");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_key_refuses_stale_writes() {
    let Some(url) = azurite() else { return };
    let c = container("fenced-key");
    let p = Arc::new(key_provider(&url, &c));
    let resource = items(&p).await;
    let q: Arc<dyn LeaseProvider> = Arc::new(key_provider(&url, &c));
    recipes::fenced_resource(&Subject::new(p, q), &resource).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sas_refuses_stale_writes() {
    let Some(url) = azurite() else { return };
    let c = container("fenced-sas");
    let p = Arc::new(common::sas_provider(&url, &c));
    let resource = items(&p).await;
    let q: Arc<dyn LeaseProvider> = Arc::new(common::sas_provider(&url, &c));
    recipes::fenced_resource(&Subject::new(p, q), &resource).await;
}

/// Tokens are decimal strings in metadata: compared exactly at any size; the value may
/// be empty or any bytes; the key is the blob name as it is (`/`, spaces, non-ASCII).
#[tokio::test]
async fn values_keys_and_large_tokens() {
    let Some(url) = azurite() else { return };
    let p = key_provider(&url, &container("fenced-lease"));
    let r = items(&p).await;
    let key = format!("reports/{}/2026 Q1 zoë ✓ ?#%.csv", common::unique("k"));
    let big = (1u64 << 60) + 1;
    let w = |t: u64, v: &'static [u8]| {
        let (r, key) = (&r, &key);
        async move {
            r.write(&Fence::new("lease", t), key, v)
                .await
                .expect("write")
        }
    };
    assert_eq!(w(big, b"").await, FencedWrite::Written);
    assert_eq!(r.read(&key).await.expect("read").as_deref(), Some(&b""[..]));
    assert_eq!(
        w(big - 1, b"stale").await,
        FencedWrite::Stale { highest: big }
    );
    let bytes: &'static [u8] = &[0, 255, 10, 13, 0x80, b'x'];
    assert_eq!(w(u64::MAX, bytes).await, FencedWrite::Written);
    assert_eq!(r.read(&key).await.expect("read").as_deref(), Some(bytes));
    assert_eq!(
        r.highest(&key, "lease").await.expect("highest"),
        Some(u64::MAX)
    );
    assert_eq!(r.highest(&key, "other").await.expect("highest"), None);
    assert_eq!(r.read("reports").await.expect("read"), None, "not a prefix");
}

/// A TCP relay that counts the HTTP requests passing through it (request lines).
struct Counter {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Counter {
    async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(target)
                    .await
                    .expect("connect");
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let needle = b" HTTP/1.1\r\n";
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        tail.extend_from_slice(&buf[..n]);
                        let hits = tail.windows(needle.len()).filter(|w| w == needle).count();
                        count.fetch_add(hits as u64, Ordering::Relaxed);
                        let keep = tail.len().min(needle.len() - 1);
                        tail.drain(..tail.len() - keep);
                    }
                });
            }
        });
        Self { addr, requests }
    }

    fn take(&self) -> u64 {
        self.requests.swap(0, Ordering::Relaxed)
    }
}

/// What each call costs, counted on the wire: a write 2 round trips (properties, then
/// the conditional upload), a refused write 1, `read` 1, `highest` 1.
#[tokio::test]
async fn round_trips_per_call() {
    let Some(url) = azurite() else { return };
    let target: SocketAddr = url::Url::parse(&url)
        .expect("url")
        .socket_addrs(|| None)
        .expect("addr")[0];
    let counter = Counter::start(target).await;
    let relayed = format!("http://{}/{DEV_ACCOUNT}", counter.addr);
    let p = key_provider(&relayed, &container("rt-leases"));
    let r = items(&p).await;
    let key = common::unique("rt");
    counter.take();
    let f = Fence::new("lease", 5);
    let started = std::time::Instant::now();
    assert_eq!(
        r.write(&f, &key, b"a").await.expect("w"),
        FencedWrite::Written
    );
    assert_eq!(counter.take(), 2, "first write");
    assert_eq!(
        r.write(&f, &key, b"b").await.expect("w"),
        FencedWrite::Written
    );
    assert_eq!(counter.take(), 2, "write");
    let took = started.elapsed() / 2;
    assert_eq!(
        r.write(&Fence::new("lease", 4), &key, b"c")
            .await
            .expect("w"),
        FencedWrite::Stale { highest: 5 }
    );
    assert_eq!(counter.take(), 1, "refused write");
    assert_eq!(r.read(&key).await.expect("r").as_deref(), Some(&b"b"[..]));
    assert_eq!(counter.take(), 1, "read");
    assert_eq!(r.highest(&key, "lease").await.expect("h"), Some(5));
    assert_eq!(counter.take(), 1, "highest");
    eprintln!("blob fenced write on Azurite: 2 round trips, {took:?} each");
}

#[tokio::test]
async fn bad_keys_and_names_are_refused_before_any_request() {
    // No service needed: an endpoint nothing listens on.
    let p = key_provider("http://127.0.0.1:9/devstoreaccount1", "leases");
    let r = BlobFencedResource::new(&p, "items").expect("resource");
    let f = Fence::new("lease", 1);
    for key in [
        "", "a/", "/a", "a//b", "..", "a/../b", "end.", "a\\b", "nul\0",
    ] {
        for e in [
            r.write(&f, key, b"v").await.expect_err(key),
            r.read(key).await.expect_err(key),
            r.highest(key, "lease").await.expect_err(key),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{key:?}: {e}");
            assert_eq!(e.field(), Some("key"), "{key:?}: {e}");
        }
    }
    let long = "k".repeat(1025);
    let e = r.write(&f, &long, b"v").await.expect_err("long");
    assert_eq!(e.field(), Some("key"));
    assert!(e.to_string().contains("1025"), "{e}");
    let e = r
        .write(&Fence::new("no spaces", 1), "k", b"v")
        .await
        .expect_err("name");
    assert_eq!(
        (e.kind(), e.field()),
        (ErrorKind::InvalidArgument, Some("name"))
    );
    // Nothing listens: unavailable, retryable, quickly.
    let e = r.write(&f, "k", b"v").await.expect_err("no service");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    let e = BlobFencedResource::new(&p, "leases").expect_err("the lease container");
    assert_eq!(e.field(), Some("container"));
}

#[tokio::test]
async fn a_missing_container_is_a_configuration_error() {
    let Some(url) = azurite() else { return };
    let p = key_provider(&url, &container("fenced-lease"));
    let missing = container("missing");
    let r = BlobFencedResource::new(&p, &missing).expect("resource");
    let f = Fence::new("lease", 1);
    for e in [
        r.write(&f, "k", b"v").await.expect_err("write"),
        r.read("k").await.expect_err("read"),
    ] {
        assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
        assert_eq!(e.field(), Some("container"), "{e}");
        assert!(e.to_string().contains(&missing), "{e}");
        assert!(e.to_string().contains("create_container"), "{e}");
    }
    let highest = r.highest("k", "lease").await;
    assert!(
        matches!(&highest, Err(e) if e.field() == Some("container")),
        "{highest:?}"
    );
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized_and_never_printed() {
    let Some(url) = azurite() else { return };
    let good = key_provider(&url, &container("fenced-lease"));
    let r = items(&good).await;
    let wrong = "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmUtU0VDUkVU";
    let bad = BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(&url)
            .account_key(DEV_ACCOUNT, wrong)
            .container("leases")
            .call_timeout(Duration::from_secs(5))
            .into_config()
            .expect("config"),
    )
    .expect("build");
    let rb = BlobFencedResource::new(&bad, r.container()).expect("resource");
    let f = Fence::new("lease", 1);
    for e in [
        rb.write(&f, "k", b"v").await.expect_err("write"),
        rb.read("k").await.expect_err("read"),
        rb.highest("k", "lease").await.expect_err("highest"),
    ] {
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
        let text = format!("{e} {e:?} {rb:?}");
        assert!(!text.contains(wrong), "{text}");
    }
    assert_eq!(r.read("k").await.expect("read"), None, "nothing written");
}

/// Every lease name is a metadata entry, and every entry a response header: past 64 a
/// write is refused (the item would become unreadable), and the item stays usable.
#[tokio::test]
async fn an_item_tracks_at_most_64_lease_names() {
    let Some(url) = azurite() else { return };
    let p = key_provider(&url, &container("fenced-lease"));
    let r = items(&p).await;
    let name = |i: usize| format!("{}-{i:03}", "n".repeat(36));
    for i in 0..64 {
        let f = Fence::new(name(i), 1);
        assert_eq!(
            r.write(&f, "k", b"v").await.expect("write"),
            FencedWrite::Written
        );
    }
    let e = r
        .write(&Fence::new(name(64), 1), "k", b"w")
        .await
        .expect_err("the 65th name");
    assert_eq!(
        (e.kind(), e.field()),
        (ErrorKind::InvalidArgument, Some("fence")),
        "{e}"
    );
    assert_eq!(r.read("k").await.expect("read").as_deref(), Some(&b"v"[..]));
    let f = Fence::new(name(3), 2);
    assert_eq!(
        r.write(&f, "k", b"x").await.expect("a known name"),
        FencedWrite::Written
    );
    assert_eq!(r.highest("k", &name(3)).await.expect("highest"), Some(2));
    assert_eq!(r.highest("k", &name(64)).await.expect("highest"), None);
}
