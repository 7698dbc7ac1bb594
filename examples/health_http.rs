//! A health endpoint over plain HTTP/1.1 for a process that holds leases.
//!
//! `GET /health/leases` reports the held-leases check, `GET /health/provider` probes the
//! backend; the status code is 200 for Healthy and Degraded, 503 for Unhealthy, so a
//! Kubernetes probe or a load balancer can use it as is.
//!
//! ```text
//! cargo run --example health_http            # serves on 127.0.0.1:8080 until Ctrl-C
//! cargo run --example health_http -- --once  # serves one request to itself and exits
//! ```

use distributed_leasing::{
    HealthReport, HealthStatus, InMemoryLeaseProvider, LeaseManager, LeaseOptions,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = LeaseManager::new(
        Arc::new(InMemoryLeaseProvider::new()),
        LeaseOptions::default(),
    )?;
    let _leader = manager.acquire("leader").await?;
    let once = std::env::args().any(|a| a == "--once");
    let listener = TcpListener::bind(if once {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:8080"
    })
    .await?;
    let addr = listener.local_addr()?;
    println!("health endpoint on http://{addr}/health/leases and /health/provider");
    if once {
        let server = tokio::spawn(serve_one(listener, manager.clone()));
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /health/leases HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).await?;
        println!("{reply}");
        server.await??;
        return Ok(());
    }
    loop {
        tokio::select! {
            r = serve_one_from(&listener, &manager) => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn serve_one(listener: TcpListener, manager: LeaseManager) -> std::io::Result<()> {
    serve_one_from(&listener, &manager).await
}

async fn serve_one_from(listener: &TcpListener, manager: &LeaseManager) -> std::io::Result<()> {
    let (mut stream, _) = listener.accept().await?;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await?;
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let report = match path {
        "/health/leases" => Some(manager.check_held_leases()),
        "/health/provider" => Some(manager.probe(Duration::from_secs(5)).await),
        _ => None,
    };
    let (status, body) = match report {
        Some(r) => (code(&r), to_json(&r)),
        None => ("404 Not Found", "{\"error\":\"not found\"}".to_owned()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

fn code(r: &HealthReport) -> &'static str {
    match r.status {
        HealthStatus::Unhealthy => "503 Service Unavailable",
        _ => "200 OK",
    }
}

fn to_json(r: &HealthReport) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let data: Vec<String> = r
        .data
        .iter()
        .map(|(k, v)| format!("\"{}\":\"{}\"", esc(k), esc(v)))
        .collect();
    format!(
        "{{\"status\":\"{}\",\"description\":\"{}\",\"data\":{{{}}}}}",
        r.status,
        esc(&r.description),
        data.join(",")
    )
}
