//! A failed accept (here: out of file descriptors) does not stop the fault proxy or the
//! fenced server; they accept the waiting connection once descriptors are free again.
//!
//! Alone in its test binary: it lowers the process's descriptor limit for a moment.
#![cfg(unix)]

use leasing_testkit::fenced::{FencedClient, FencedServer};
use leasing_testkit::proxy::FaultProxy;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn a_failed_accept_stops_neither_the_proxy_nor_the_fenced_server() {
    // An echo target for the proxy.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
    });
    let proxy = FaultProxy::start(target).await.unwrap();
    let fenced = FencedServer::start().await.unwrap();

    // The two lowest free descriptors go to the two clients; a third (the servers'
    // accept) is over the limit.
    let probe = [
        std::fs::File::open("/dev/null").unwrap(),
        std::fs::File::open("/dev/null").unwrap(),
    ];
    let highest = probe[1].as_raw_fd().max(probe[0].as_raw_fd());
    drop(probe);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(
        Resource::RLIMIT_NOFILE,
        u64::try_from(highest + 1).unwrap(),
        hard,
    )
    .unwrap();
    let to_proxy = TcpStream::connect(proxy.addr()).await;
    let to_fenced = TcpStream::connect(fenced.addr()).await;
    // Both servers try to accept and fail for a while.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let accepted_meanwhile = proxy.accepted();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    let (mut to_proxy, to_fenced) = (to_proxy.unwrap(), to_fenced.unwrap());
    assert_eq!(accepted_meanwhile, 0, "the accept did not fail");

    to_proxy.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), to_proxy.read_exact(&mut buf))
        .await
        .expect("the proxy never accepted")
        .expect("the proxy dropped the connection");
    assert_eq!(&buf, b"ping");
    assert_eq!(proxy.accepted(), 1);
    // It goes on as before: a cut closes new connections, and after a restore the
    // finished connection is reaped as the next one is taken.
    drop(to_proxy);
    proxy.cut();
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buf))
        .await
        .expect("a connection stayed open during the cut");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    proxy.restore();
    let _forwarded = TcpStream::connect(proxy.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(proxy.accepted(), 3);

    let (r, mut w) = to_fenced.into_split();
    w.write_all(b"W x 1\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(r).read_line(&mut answer),
    )
    .await
    .expect("the fenced server never accepted")
    .expect("the fenced server dropped the connection");
    assert_eq!(answer, "OK\n");
    assert_eq!(fenced.resource().highest("x"), 1);
    // And it serves the next client after that one left.
    drop(w);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = FencedClient::new(fenced.addr());
    assert!(c.write("x", 2).await.unwrap());
}
