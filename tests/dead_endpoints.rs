//! A dead or silent endpoint fails in `build()` on every backend, naming what was tried,
//! instead of surfacing later at the first acquisition. Loopback only: a port nobody
//! listens on (refused) and a listener that accepts and never answers (silent).

use distributed_leasing::blob::BlobLeaseProvider;
use distributed_leasing::cosmos::CosmosLeaseProvider;
use distributed_leasing::redis::{RedisLeaseProvider, RedlockLeaseProvider};
use distributed_leasing::{ErrorKind, LeaseError};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A loopback port with nothing listening on it.
fn refused() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A loopback listener that accepts connections and never answers; kept open for the test.
fn silent() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let t = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().take(16) {
            match c {
                Ok(c) => held.push(c),
                Err(_) => return,
            }
        }
        std::thread::sleep(Duration::from_secs(600));
        drop(held);
    });
    (addr, t)
}

const KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

async fn redis(addr: SocketAddr) -> LeaseError {
    RedisLeaseProvider::builder()
        .url(format!("redis://{addr}"))
        .connect_timeout(Duration::from_secs(2))
        .restart_fence(Duration::from_secs(30))
        .build()
        .await
        .expect_err("a Redis build against a dead endpoint must fail")
}

async fn redlock(addrs: &[SocketAddr]) -> LeaseError {
    RedlockLeaseProvider::builder()
        .urls(addrs.iter().map(|a| format!("redis://{a}")))
        .build()
        .await
        .expect_err("a Redlock build with no server answering must fail")
}

async fn blob(addr: SocketAddr) -> LeaseError {
    BlobLeaseProvider::builder()
        .endpoint(format!("http://{addr}/devstoreaccount1"))
        .account_key("devstoreaccount1", DEV_KEY)
        .call_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect_err("a Blob build against a dead endpoint must fail")
}

async fn cosmos(addr: SocketAddr) -> LeaseError {
    CosmosLeaseProvider::builder()
        .key(format!("http://{addr}/"), KEY)
        .emulator(true)
        .call_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect_err("a Cosmos build against a dead endpoint must fail")
}

fn check(backend: &str, how: &str, addr: SocketAddr, e: &LeaseError, took: Duration) {
    let text = e.to_string();
    println!(
        "{backend:8} {how:8} {:>6} ms  {:?}: {text}",
        took.as_millis(),
        e.kind()
    );
    assert!(
        text.contains(&addr.to_string()) || text.contains(&format!("localhost:{}", addr.port())),
        "{backend} ({how}): the error must name the endpoint tried ({addr}): {text}"
    );
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ProviderUnavailable | ErrorKind::Timeout
        ),
        "{backend} ({how}): a dead endpoint is unavailable or timed out, not {:?}: {text}",
        e.kind()
    );
}

/// Every backend against `addrs[0]` (Redlock against all three).
async fn each(how: &str, addrs: [SocketAddr; 3]) {
    let addr = addrs[0];
    let t = Instant::now();
    let e = redis(addr).await;
    check("redis", how, addr, &e, t.elapsed());
    let t = Instant::now();
    let e = redlock(&addrs).await;
    check("redlock", how, addr, &e, t.elapsed());
    let t = Instant::now();
    let e = blob(addr).await;
    check("blob", how, addr, &e, t.elapsed());
    let t = Instant::now();
    let e = cosmos(addr).await;
    check("cosmos", how, addr, &e, t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_fails_the_build_naming_it() {
    each("refused", [refused(), refused(), refused()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_fails_the_build_naming_it() {
    let (a, _ka) = silent();
    let (b, _kb) = silent();
    let (c, _kc) = silent();
    each("silent", [a, b, c]).await;
}
