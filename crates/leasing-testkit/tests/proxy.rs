//! The fault proxy end to end: forwarding, cut, partition, latency, and the ends of a
//! connection (an unreachable target, a target that closes).

use leasing_testkit::proxy::FaultProxy;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn roundtrip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await?;
    Ok(buf.to_vec())
}

#[tokio::test]
async fn forwards_cuts_and_restores() {
    let target = echo_server().await;
    let p = FaultProxy::start(target).await.unwrap();
    assert_eq!(p.target(), target);
    assert_eq!(roundtrip(p.addr()).await.unwrap(), b"ping");
    // A connection open during the cut is closed.
    let mut open = TcpStream::connect(p.addr()).await.unwrap();
    open.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).await.unwrap();
    p.cut();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "cut connection still open");
    assert!(
        roundtrip(p.addr()).await.is_err(),
        "new connection not refused during cut"
    );
    p.restore();
    assert_eq!(roundtrip(p.addr()).await.unwrap(), b"ping");
    assert!(p.accepted() >= 3);
}

#[tokio::test]
async fn adds_latency_and_partitions() {
    let target = echo_server().await;
    let p = FaultProxy::start(target).await.unwrap();
    p.set_latency(Duration::from_millis(100));
    let t = Instant::now();
    roundtrip(p.addr()).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "latency not applied both ways"
    );
    p.set_latency(Duration::ZERO);
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(b"a").await.unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
    p.partition();
    s.write_all(b"b").await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut one)).await;
    assert!(r.is_err(), "data crossed a partition");
    let r = tokio::time::timeout(Duration::from_millis(300), roundtrip(p.addr())).await;
    assert!(r.is_err(), "a new connection got through a partition");
    p.restore();
    assert_eq!(roundtrip(p.addr()).await.unwrap(), b"ping");
    drop(p);
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

#[tokio::test]
async fn an_unreachable_target_closes_the_client_connection() {
    let p = FaultProxy::start(closed_port()).await.unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the connection stayed open though the target is unreachable");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert_eq!(p.accepted(), 1);
}

#[tokio::test]
async fn the_target_closing_closes_the_client_connection() {
    // A target that greets each connection and closes it without reading.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
    });
    let p = FaultProxy::start(target).await.unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the client connection stayed open after the target closed")
        .unwrap();
    assert_eq!(got, b"bye");
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections_and_its_port() {
    let target = echo_server().await;
    let p = FaultProxy::start(target).await.unwrap();
    let addr = p.addr();
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).await.unwrap();
    drop(p);
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
        .await
        .expect("a connection outlived the proxy");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    // The listener task is aborted, not awaited: give it a moment to go.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(roundtrip(addr).await.is_err(), "the proxy still accepts");
}
