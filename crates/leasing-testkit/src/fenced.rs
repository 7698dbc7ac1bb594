//! A fenced resource: every write carries the writer's fencing token, and a write with a
//! token lower than one already accepted for that name is rejected. This is what makes a
//! lease safe against a holder that acts late (paused, partitioned) without knowing it
//! lost its lease; the [`checker`](crate::checker) counts the writes it saved.
//!
//! [`FencedResource`] is the in-process resource; [`FencedServer`] serves one over TCP on
//! loopback (one line per write: `W <name> <token>` → `OK` or `STALE <highest>`) so that
//! client processes share it, through [`FencedClient`].
//!
//! ```
//! use leasing_testkit::fenced::FencedResource;
//! let r = FencedResource::new();
//! assert!(r.write("job", 5).is_ok());
//! assert!(r.write("job", 5).is_ok());        // the same holder again
//! assert_eq!(r.write("job", 4), Err(5));     // a stale holder: rejected
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long the accept loops of [`FencedServer`] and
/// [`FaultProxy`](crate::proxy::FaultProxy) wait after a failed accept before the next.
pub(crate) const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// Highest accepted token per name; rejects writes with a lower one.
#[derive(Debug, Clone, Default)]
pub struct FencedResource {
    highest: Arc<Mutex<HashMap<String, u64>>>,
}

impl FencedResource {
    /// An empty resource.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes to `name` with `token`: accepted if `token` is at least the highest token
    /// accepted so far for `name`.
    ///
    /// # Errors
    /// The highest accepted token, when `token` is lower (the writer is stale).
    pub fn write(&self, name: &str, token: u64) -> Result<(), u64> {
        let mut map = self.highest.lock().unwrap_or_else(PoisonError::into_inner);
        let highest = map.entry(name.to_owned()).or_insert(0);
        if token < *highest {
            return Err(*highest);
        }
        *highest = token;
        Ok(())
    }

    /// The highest token accepted for `name`, 0 if none.
    pub fn highest(&self, name: &str) -> u64 {
        self.highest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

/// A [`FencedResource`] served over TCP on `127.0.0.1:0`; dropped, it stops serving (and
/// closes the connections it has).
#[derive(Debug)]
pub struct FencedServer {
    addr: SocketAddr,
    resource: FencedResource,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FencedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FencedServer {
    /// Starts serving a fresh resource.
    ///
    /// # Errors
    /// If no loopback port can be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let resource = FencedResource::new();
        let r = resource.clone();
        let task = tokio::spawn(async move {
            // The connections die with this task, so with the server.
            let mut connections = JoinSet::new();
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        connections.spawn(serve(stream, r.clone()));
                        // Reap finished connections so the set does not grow.
                        while connections.try_join_next().is_some() {}
                    }
                    // A failed accept (out of file descriptors, say) concerns that moment,
                    // not the server: wait a little and accept again.
                    Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
                }
            }
        });
        Ok(Self {
            addr,
            resource,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The resource served.
    pub fn resource(&self) -> &FencedResource {
        &self.resource
    }
}

async fn serve(stream: TcpStream, resource: FencedResource) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut parts = line.split_whitespace();
        let reply = match (
            parts.next(),
            parts.next(),
            parts.next().map(str::parse::<u64>),
        ) {
            (Some("W"), Some(name), Some(Ok(token))) => match resource.write(name, token) {
                Ok(()) => "OK\n".to_owned(),
                Err(h) => format!("STALE {h}\n"),
            },
            _ => "ERR expected: W <name> <token>\n".to_owned(),
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A connection to a [`FencedServer`] (reconnects after an error).
#[derive(Debug)]
pub struct FencedClient {
    addr: SocketAddr,
    conn: Option<(
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    )>,
}

impl FencedClient {
    /// A client of the server at `addr` (connects on first write).
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// Writes to `name` with `token`: `Ok(true)` accepted, `Ok(false)` rejected as stale.
    ///
    /// # Errors
    /// If the server cannot be reached or answers something else.
    pub async fn write(&mut self, name: &str, token: u64) -> std::io::Result<bool> {
        let result = self.try_write(name, token).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn try_write(&mut self, name: &str, token: u64) -> std::io::Result<bool> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let s = TcpStream::connect(self.addr).await?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (BufReader::new(r), w)
            }
        };
        let (r, w) = self.conn.insert(conn);
        w.write_all(format!("W {name} {token}\n").as_bytes())
            .await?;
        let mut line = String::new();
        r.read_line(&mut line).await?;
        match line.split_whitespace().next() {
            Some("OK") => Ok(true),
            Some("STALE") => Ok(false),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unexpected answer {line:?}"),
            )),
        }
    }
}
