//! A fault-injecting TCP proxy for integration tests (network cut, partition, added
//! latency).
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use leasing_testkit::proxy::FaultProxy;
//! let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await?;
//! let url = format!("redis://{}", proxy.addr()); // point the client here
//! proxy.cut();      // drop every connection and refuse new ones
//! proxy.restore();  // forward again
//! proxy.set_latency(std::time::Duration::from_millis(50)); // each chunk delayed
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const FORWARD: u8 = 0;
const CUT: u8 = 1;
const PARTITION: u8 = 2;

#[derive(Debug, Default)]
struct State {
    mode: AtomicU8,
    latency_us: AtomicU64,
    connections: Mutex<JoinSet<()>>,
    accepted: AtomicU64,
}

impl State {
    fn mode(&self) -> u8 {
        self.mode.load(Ordering::SeqCst)
    }

    fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_us.load(Ordering::SeqCst))
    }

    fn abort_connections(&self) {
        if let Ok(mut set) = self.connections.lock() {
            set.abort_all();
        }
    }
}

/// A TCP proxy on `127.0.0.1:0` in front of one target. Dropping it stops the listener
/// and every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    state: Arc<State>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.listener.abort();
        self.state.abort_connections();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    ///
    /// # Errors
    /// If the listener cannot be bound.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let st = state.clone();
        let listener = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::SeqCst);
                match st.mode() {
                    CUT => drop(inbound),
                    mode => {
                        let st2 = st.clone();
                        if let Ok(mut set) = st.connections.lock() {
                            set.spawn(serve(inbound, target, st2, mode == PARTITION));
                            // Reap finished connections so the set does not grow.
                            while set.try_join_next().is_some() {}
                        }
                    }
                }
            }
        });
        Ok(Self {
            addr,
            target,
            state,
            listener,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Network cut: closes every open connection and closes new ones at once.
    pub fn cut(&self) {
        self.state.mode.store(CUT, Ordering::SeqCst);
        self.state.abort_connections();
    }

    /// Partition: connections stay open but nothing gets through in either direction
    /// (requests hang until the client's own deadline); new connections hang too.
    pub fn partition(&self) {
        self.state.mode.store(PARTITION, Ordering::SeqCst);
    }

    /// Forward normally again (connections cut earlier stay closed).
    pub fn restore(&self) {
        self.state.mode.store(FORWARD, Ordering::SeqCst);
    }

    /// Delay every chunk by `latency`, in each direction.
    pub fn set_latency(&self, latency: Duration) {
        self.state.latency_us.store(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

async fn serve(inbound: TcpStream, target: SocketAddr, state: Arc<State>, partitioned: bool) {
    if partitioned {
        // Hold the socket without answering until the proxy or the connection goes away.
        let _hold = inbound;
        return std::future::pending::<()>().await;
    }
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    tokio::select! {
        _ = pump(ri, wo, state.clone()) => {}
        _ = pump(ro, wi, state) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let latency = state.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match state.mode() {
            FORWARD => {}
            PARTITION => continue, // swallowed
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
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
}
