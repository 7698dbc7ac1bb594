//! The Cosmos DB fenced resource against the patched emulator: the recipe suite's
//! fenced-resource contract, round trips per call, keys, tokens past 2^53, and errors.

mod common;

use common::{skip_if_missing, CosmosEmulator};
use leasing_abstractions::fence::{Fence, FencedResource, FencedWrite};
use leasing_abstractions::{ErrorKind, LeaseManager, LeaseOptions, LeaseProvider};
use leasing_cosmos::{CosmosFencedResource, CosmosLeaseProvider};
use leasing_testkit::conformance::Subject;
use leasing_testkit::recipes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A resource in container `items` of the provider's database (created).
async fn items(provider: &CosmosLeaseProvider) -> CosmosFencedResource {
    CosmosFencedResource::create(provider, "items")
        .await
        .expect("create the resource")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn emulator_refuses_stale_writes() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let db = common::unique("fenced");
    let p = Arc::new(common::provider(&cs, &db).await);
    let resource = items(&p).await;
    let q: Arc<dyn LeaseProvider> = Arc::new(common::provider(&cs, &db).await);
    recipes::fenced_resource(&Subject::new(p, q), &resource).await;
    eprintln!(
        "request charge of the recipe: {} RU",
        resource.request_charge_total()
    );
}

/// Tokens are strings in the document: compared exactly past 2^53; the value may be
/// empty or any bytes; keys may hold the characters an id cannot (`/ \ ? #`, escaped).
#[tokio::test]
async fn values_keys_and_large_tokens() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let r = items(&common::provider(&cs, &common::unique("fenced")).await).await;
    let key = format!("reports/{}/2026 Q1 zoë ✓ ?#%\\.csv", common::unique("k"));
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
    // big - 1 is the same double as big: only an exact comparison refuses it.
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
    assert_eq!(r.read("reports").await.expect("read"), None);
}

/// A TCP relay that counts the HTTP requests passing through it (request lines).
struct Counter {
    listener: Option<tokio::net::TcpListener>,
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Counter {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        Self {
            listener: Some(listener),
            addr,
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    fn relay_to(&mut self, target: SocketAddr) {
        let listener = self.listener.take().expect("not relaying yet");
        let count = Arc::clone(&self.requests);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
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
    }

    fn take(&self) -> u64 {
        self.requests.swap(0, Ordering::Relaxed)
    }
}

/// What each call costs, counted on the wire (a private emulator that advertises the
/// counting relay as its endpoint): a write 2 round trips (point read, then the
/// conditional replace or the create), a refused write 1, `read` 1, `highest` 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_call() {
    let mut counter = Counter::bind().await;
    let advertised = CosmosEmulator::builder().advertise_port(counter.addr.port());
    let Some(emu) = skip_if_missing(advertised.start()) else {
        return;
    };
    counter.relay_to(emu.addr());
    let cs = CosmosEmulator::connection_string_for(counter.addr);
    let r = items(&common::provider(&cs, "rt").await).await;
    let key = common::unique("rt");
    // Warm up (the SDK reads the partition-key ranges on first use of a container).
    let _ = r.read(&common::unique("warm")).await.expect("warm up");
    counter.take();
    let f = Fence::new("lease", 5);
    let started = std::time::Instant::now();
    assert_eq!(
        r.write(&f, &key, b"a").await.expect("w"),
        FencedWrite::Written
    );
    assert_eq!(counter.take(), 2, "first write: read, create");
    assert_eq!(
        r.write(&f, &key, b"b").await.expect("w"),
        FencedWrite::Written
    );
    assert_eq!(counter.take(), 2, "write: read, replace");
    let took = started.elapsed() / 2;
    assert_eq!(
        r.write(&Fence::new("lease", 4), &key, b"c")
            .await
            .expect("w"),
        FencedWrite::Stale { highest: 5 }
    );
    assert_eq!(counter.take(), 1, "refused write: read");
    assert_eq!(r.read(&key).await.expect("r").as_deref(), Some(&b"b"[..]));
    assert_eq!(counter.take(), 1, "read");
    assert_eq!(r.highest(&key, "lease").await.expect("h"), Some(5));
    assert_eq!(counter.take(), 1, "highest");
    eprintln!("cosmos fenced write on the emulator: 2 round trips, {took:?} each");
}

#[tokio::test]
async fn bad_keys_and_names_are_refused_before_any_request() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let r = items(&common::provider(&cs, &common::unique("fenced")).await).await;
    let f = Fence::new("lease", 1);
    let long = "k".repeat(1024);
    let escaped = "?".repeat(342); // 1 026 bytes once escaped
    for key in ["", long.as_str(), escaped.as_str()] {
        for e in [
            r.write(&f, key, b"v").await.expect_err("write"),
            r.read(key).await.expect_err("read"),
            r.highest(key, "lease").await.expect_err("highest"),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            assert_eq!(e.field(), Some("key"), "{e}");
        }
    }
    let e = r
        .write(&Fence::new("no spaces", 1), "k", b"v")
        .await
        .expect_err("name");
    assert_eq!(
        (e.kind(), e.field()),
        (ErrorKind::InvalidArgument, Some("name"))
    );
    let e = r
        .write(&f, "k", &vec![7u8; 1536 * 1024])
        .await
        .expect_err("too large");
    assert_eq!(
        (e.kind(), e.field()),
        (ErrorKind::InvalidArgument, Some("value"))
    );
    assert_eq!(r.read("k").await.expect("read"), None, "nothing written");
    // The largest value fits.
    let big = vec![7u8; 1536 * 1024 - 48 * 1024];
    assert_eq!(
        r.write(&f, "big", &big).await.expect("largest"),
        FencedWrite::Written
    );
    assert_eq!(
        r.read("big").await.expect("read").map(|v| v.len()),
        Some(big.len())
    );
}

#[tokio::test]
async fn a_missing_database_or_container_is_a_configuration_error() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let db = common::unique("missing");
    let p = common::provider(&cs, &db).await;
    let e = CosmosFencedResource::new(&p, "items")
        .await
        .expect_err("no database");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert_eq!(e.field(), Some("container"), "{e}");
    assert!(e.to_string().contains(&db), "{e}");
    assert!(
        e.to_string().contains("CosmosFencedResource::create"),
        "{e}"
    );
    // The database exists, the container does not.
    let _made = items(&p).await;
    let e = CosmosFencedResource::new(&p, "nope")
        .await
        .expect_err("no container");
    assert_eq!(e.field(), Some("container"), "{e}");
    assert!(e.to_string().contains("\"nope\""), "{e}");
    assert!(!format!("{e} {e:?}").contains(common::KEY));
    CosmosFencedResource::new(&p, "items")
        .await
        .expect("opens an existing container");
    let long = "c".repeat(256);
    for bad in ["leases", "", ".", "..", "a/b", long.as_str()] {
        let e = CosmosFencedResource::create(&p, bad).await.expect_err(bad);
        assert_eq!(e.field(), Some("container"), "{bad:?}: {e}");
    }
}

/// Items never overwrite a document that is not one (a lease container by mistake).
#[tokio::test]
async fn a_lease_document_is_never_overwritten() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let db = common::unique("fenced");
    let leases = Arc::new(common::provider(&cs, &db).await);
    let m = LeaseManager::new(leases, LeaseOptions::default()).expect("manager");
    let name = common::unique("job");
    let lease = m.acquire(&name).await.expect("acquire");
    // Another provider whose lease container is elsewhere, pointed at the first one's.
    let other = common::builder(&cs, &db)
        .container("other-leases")
        .build()
        .await
        .expect("provider");
    let wrong = CosmosFencedResource::new(&other, "leases")
        .await
        .expect("the lease container exists");
    let e = wrong
        .write(&Fence::of(&lease), &name, b"v")
        .await
        .expect_err("not an item");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(e.to_string().contains("not a fenced item"), "{e}");
    assert!(wrong.read(&name).await.is_err());
    lease.renew().await.expect("the lease document is intact");
    lease.release().await.expect("release");
}

/// The local emulator accepts any key, so a refused key is played by a server that
/// answers every request as the service does for a wrong key (401 and its error body):
/// the provider the resource is made from fails to build, typed, without the key.
#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_printed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let body = r#"{"code":"Unauthorized","message":"The input authorization token can't serve the request."}"#;
                    let resp = format!("HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let wrong = "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmUtU0VDUkVU";
    let e = CosmosLeaseProvider::builder()
        .key(format!("http://{addr}/"), wrong)
        .call_timeout(Duration::from_secs(5))
        .build()
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!format!("{e} {e:?}").contains(wrong), "{e:?}");
}

/// A private emulator, a resource on it (call timeout `timeout`) and the fence of one
/// write already made; `None` (SKIPPED) without the emulator.
async fn private_with_one_write(
    timeout: Duration,
) -> Option<(CosmosEmulator, CosmosFencedResource, Fence)> {
    let emu = skip_if_missing(CosmosEmulator::start())?;
    let p = CosmosLeaseProvider::builder()
        .connection_string(emu.connection_string())
        .call_timeout(timeout)
        .build()
        .await
        .expect("provider");
    let r = items(&p).await;
    let f = Fence::new("lease", 1);
    assert_eq!(
        r.write(&f, "k", b"v").await.expect("write"),
        FencedWrite::Written
    );
    Some((emu, r, f))
}

/// The emulator goes away under a built resource: typed, retryable errors, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_service_is_unavailable() {
    let Some((mut emu, r, f)) = private_with_one_write(Duration::from_secs(2)).await else {
        return;
    };
    emu.stop();
    for e in [
        r.write(&f, "k", b"w").await.expect_err("write"),
        r.read("k").await.expect_err("read"),
    ] {
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
        assert!(e.is_retryable(), "{e}");
    }
}

/// Creating a resource that exists already is fine (the database and the container
/// answer 409, which `create` takes as "there"), and both handles see the same items.
#[tokio::test]
async fn creating_twice_finds_what_is_there() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let db = common::unique("fenced-twice");
    let p = common::provider(&cs, &db).await;
    let first = items(&p).await;
    let second = items(&p).await;
    let opened = CosmosFencedResource::new(&p, "items").await.expect("open");
    let f = Fence::new("lease", 3);
    assert_eq!(
        first.write(&f, "k", b"v").await.expect("write"),
        FencedWrite::Written
    );
    for r in [&second, &opened] {
        assert_eq!(r.read("k").await.expect("read").as_deref(), Some(&b"v"[..]));
        assert_eq!(r.highest("k", "lease").await.expect("highest"), Some(3));
    }
    let d = format!("{opened:?}");
    assert!(
        d.contains("CosmosFencedResource") && d.contains("items"),
        "{d}"
    );
    assert!(!d.contains("AccountKey"), "{d}");
}

/// A service that stops answering (SIGSTOP) fails each call at the call timeout, as
/// `ProviderUnavailable`; when it answers again, writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_stops_answering_fails_at_the_call_timeout() {
    let Some((emu, r, f)) = private_with_one_write(Duration::from_secs(1)).await else {
        return;
    };
    emu.signal("STOP");
    let e = r.write(&f, "k", b"w").await.expect_err("no answer");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    // The fenced container's own bound or the transport's (both `call_timeout`), whichever
    // fires first.
    let text = e.to_string();
    assert!(
        text.contains("within the call timeout") || text.contains("operation timed out"),
        "{e}"
    );
    let e = r.highest("k", "lease").await.expect_err("no answer");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    emu.signal("CONT");
    assert_eq!(
        r.write(&f, "k", b"x").await.expect("answers again"),
        FencedWrite::Written
    );
    assert_eq!(r.read("k").await.expect("read").as_deref(), Some(&b"x"[..]));
}

/// Deletes container `coll` of database `db` on the local emulator (which does not check
/// signatures), with a bare HTTP request.
async fn delete_container(endpoint: &str, db: &str, coll: &str) -> u16 {
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut s = tokio::net::TcpStream::connect(&hostport)
        .await
        .expect("emulator");
    let req = format!(
        "DELETE /dbs/{db}/colls/{coll} HTTP/1.1\r\nHost: {hostport}\r\nx-ms-version: 2018-12-31\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    // The status line is enough (the emulator keeps the connection open).
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf).await.expect("answer");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A container deleted under a resource: reads, writes of a new item and of an existing
/// one say that it does not exist (a configuration error naming it), never panic.
#[tokio::test]
async fn a_container_deleted_under_the_resource_is_named() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let endpoint = cs
        .split(';')
        .find_map(|p| p.strip_prefix("AccountEndpoint="))
        .expect("an endpoint")
        .to_owned();
    if !endpoint.starts_with("http://127.0.0.1") && !endpoint.starts_with("http://localhost") {
        return; // only the local emulator takes an unsigned request
    }
    let db = common::unique("fenced-gone");
    let p = common::provider(&cs, &db).await;
    let r = items(&p).await;
    let f = Fence::new("lease", 1);
    assert_eq!(
        r.write(&f, "old", b"v").await.expect("write"),
        FencedWrite::Written
    );
    let code = delete_container(&endpoint, &db, "items").await;
    assert!((200..300).contains(&code), "DELETE answered {code}");
    for e in [
        r.write(&f, "new", b"v").await.expect_err("gone"),
        r.write(&f, "old", b"w").await.expect_err("gone"),
    ] {
        assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
        assert!(e.to_string().contains("\"items\""), "{e}");
    }
}
