//! The fenced server and client over TCP: connections that end badly, answers that are
//! not the protocol's, and a server that goes away.

use leasing_testkit::fenced::{FencedClient, FencedServer};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Waits until `cond` holds (5 s at most).
async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn clients_that_leave_or_vanish_do_not_disturb_the_others() {
    let server = FencedServer::start().await.unwrap();
    // One leaves without a word.
    drop(TcpStream::connect(server.addr()).await.unwrap());
    // One writes and resets the connection before the answer: its write counts, the
    // answer finds no one.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(b"W x 3\n").await.unwrap();
    s.set_zero_linger().unwrap();
    drop(s);
    eventually(|| server.resource().highest("x") == 3).await;
    let mut c = FencedClient::new(server.addr());
    assert!(
        !c.write("x", 2).await.unwrap(),
        "a stale token was accepted"
    );
    assert!(c.write("x", 4).await.unwrap());
    assert_eq!(server.resource().highest("x"), 4);
}

#[tokio::test]
async fn an_answer_outside_the_protocol_is_an_error_and_the_client_reconnects() {
    let server = FencedServer::start().await.unwrap();
    let mut c = FencedClient::new(server.addr());
    // A name with a space makes the request ill-formed: the server answers ERR.
    let e = c.write("a b", 1).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().starts_with("unexpected answer \"ERR"), "{e}");
    assert_eq!(server.resource().highest("a"), 0);
    assert!(c.write("a", 1).await.unwrap());
    assert_eq!(server.resource().highest("a"), 1);
}

#[tokio::test]
async fn a_dropped_server_closes_its_connections() {
    let server = FencedServer::start().await.unwrap();
    let mut c = FencedClient::new(server.addr());
    assert!(c.write("x", 1).await.unwrap());
    drop(server);
    let r = tokio::time::timeout(Duration::from_secs(5), c.write("x", 2))
        .await
        .expect("the write hung");
    assert!(r.is_err(), "a dropped server still answered: {r:?}");
}
