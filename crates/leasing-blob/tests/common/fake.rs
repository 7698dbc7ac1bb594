//! A scripted HTTP server standing in for the Blob service: answers Azurite does not give
//! on demand.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scripted answer: status (0: no answer ever), `x-ms-error-code`, extra header lines,
/// body.
#[derive(Clone, Copy)]
pub struct Answer(
    pub u16,
    pub &'static str,
    pub &'static str,
    pub &'static str,
);

pub type Script = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// Serves `script` (given "METHOD /path?query") on a free loopback port; records requests.
pub async fn serve(script: Script) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let Some(end) = find(&buf, b"\r\n\r\n") else {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + len);
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let target = line
                        .rsplit_once(' ')
                        .map_or(line.as_str(), |x| x.0)
                        .to_owned();
                    log.lock().expect("log").push(target.clone());
                    let Answer(status, code, extra, body) = script(&target);
                    if status == 0 {
                        // Status 0: never answer (a stalled service).
                        std::future::pending::<()>().await;
                    }
                    let code = if code.is_empty() {
                        String::new()
                    } else {
                        format!("x-ms-error-code: {code}\r\n")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ndate: Mon, 30 Nov 2026 12:00:00 GMT\r\n{code}{extra}\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/devstoreaccount1"), seen)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Serves `lease` to every lease operation (`comp=lease`) and `other` to the rest.
pub async fn serve_lease_ops(lease: Answer, other: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
    serve(Arc::new(move |t: &str| {
        if t.contains("comp=lease") {
            lease
        } else {
            other
        }
    }))
    .await
}
