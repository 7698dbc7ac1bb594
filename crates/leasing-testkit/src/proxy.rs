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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

    /// The open connections. A poisoned lock is taken over: the set itself stays sound
    /// (no method of it that the proxy calls can leave it half-changed).
    fn connections(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn abort_connections(&self) {
        self.connections().abort_all();
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
            loop {
                let inbound = match listener.accept().await {
                    Ok((inbound, _)) => inbound,
                    // A failed accept (out of file descriptors, say) concerns that moment,
                    // not the proxy: wait a little and accept again.
                    Err(_) => {
                        tokio::time::sleep(crate::fenced::ACCEPT_RETRY).await;
                        continue;
                    }
                };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                match st.mode() {
                    CUT => drop(inbound),
                    mode => {
                        let mut set = st.connections();
                        set.spawn(serve(inbound, target, st.clone(), mode == PARTITION));
                        // Reap finished connections so the set does not grow.
                        while set.try_join_next().is_some() {}
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
    //! `pump` on its own; the proxy end to end is tested in tests/proxy.rs.
    use super::*;

    /// Two ends of one loopback connection.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(l.local_addr().unwrap()), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    fn state(mode: u8) -> Arc<State> {
        let s = State::default();
        s.mode.store(mode, Ordering::SeqCst);
        Arc::new(s)
    }

    #[tokio::test]
    async fn a_pump_forwards_every_chunk_late_until_its_source_closes() {
        let (mut client, from) = pair().await;
        let (to, mut server) = pair().await;
        let (from, _from_w) = from.into_split();
        let (to_r, to) = to.into_split();
        let st = state(FORWARD);
        st.latency_us.store(30_000, Ordering::SeqCst);
        let pumping = tokio::spawn(pump(from, to, st));
        let sent = tokio::time::Instant::now();
        client.write_all(b"one").await.unwrap();
        let mut got = [0u8; 3];
        server.read_exact(&mut got).await.unwrap();
        assert!(sent.elapsed() >= Duration::from_millis(30), "no latency");
        assert_eq!(&got, b"one");
        client.write_all(b"two").await.unwrap();
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), pumping)
            .await
            .expect("the pump outlived its source")
            .unwrap();
        drop(to_r);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"two");
    }

    #[tokio::test]
    async fn a_partitioned_pump_swallows_chunks_until_restored() {
        let (mut client, from) = pair().await;
        let (to, mut server) = pair().await;
        let (from, _from_w) = from.into_split();
        let (_to_r, to) = to.into_split();
        let st = state(PARTITION);
        let pumping = tokio::spawn(pump(from, to, st.clone()));
        client.write_all(b"lost").await.unwrap();
        // The pump swallows it (it reads all the client sent, forwards nothing).
        tokio::time::sleep(Duration::from_millis(100)).await;
        st.mode.store(FORWARD, Ordering::SeqCst);
        client.write_all(b"kept").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"kept");
        assert!(!pumping.is_finished());
    }

    #[tokio::test]
    async fn after_a_cut_a_pump_drops_the_next_chunk_and_stops() {
        let (mut client, from) = pair().await;
        let (to, mut server) = pair().await;
        client.write_all(b"late").await.unwrap();
        let (from, _from_w) = from.into_split();
        let (to_r, to) = to.into_split();
        tokio::time::timeout(Duration::from_secs(5), pump(from, to, state(CUT)))
            .await
            .expect("the pump kept running after the cut");
        drop(to_r);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"", "a chunk crossed the cut");
    }

    #[tokio::test]
    async fn a_pump_stops_when_its_destination_is_gone() {
        let (mut client, from) = pair().await;
        let (to, server) = pair().await;
        // The destination resets the connection; the read takes the reset in.
        server.set_zero_linger().unwrap();
        drop(server);
        let (mut to_r, to) = to.into_split();
        let mut one = [0u8; 1];
        let r = to_r.read(&mut one).await;
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        client.write_all(b"data").await.unwrap();
        let (from, _from_w) = from.into_split();
        tokio::time::timeout(Duration::from_secs(5), pump(from, to, state(FORWARD)))
            .await
            .expect("the pump kept running after its destination was gone");
    }
}
