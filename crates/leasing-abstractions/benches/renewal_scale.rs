//! 10 000 auto-renewing leases held at once on the in-memory backend.
//!
//! ```text
//! cargo bench -p leasing-abstractions --bench renewal_scale
//! ```
//!
//! Reports, for the same renewal work in the same run:
//! - `raw`: the provider's own `renew_many` called directly on every grant at the same
//!   cadence (the least work the renewals can cost);
//! - `engine`: leases held through `LeaseManager` (one scheduler task, batched renewals,
//!   state, events, metrics, spans);
//! - `naive`: one tokio task per lease sleeping and calling `renew` (a timer per lease).
//!
//! CPU time is the sum of every thread's `/proc/self/task/*/schedstat` (nanoseconds),
//! memory the growth of the resident set (`/proc/self/statm`) while the leases are taken. Set `LEASES`, `SECONDS` to change the size.
#![allow(clippy::unwrap_used, missing_docs)]

use leasing_abstractions::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DURATION: Duration = Duration::from_millis(1500); // renewed every 1 s

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of every thread of this process, in seconds, at nanosecond resolution (the
/// first field of each `/proc/self/task/*/schedstat`).
fn cpu_seconds() -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Counts renewals that reached the store.
#[derive(Debug)]
struct Counted {
    inner: InMemoryLeaseProvider,
    renewals: AtomicU64,
}

impl leasing_abstractions::provider::ProviderLayer for Counted {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.inner
    }
    fn provider_name(&self) -> &'static str {
        "in-memory"
    }
    fn renew<'a>(&'a self, g: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        self.renewals.fetch_add(1, Ordering::Relaxed);
        self.inner.renew(g)
    }
    fn renew_many<'a>(&'a self, g: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        self.renewals.fetch_add(g.len() as u64, Ordering::Relaxed);
        self.inner.renew_many(g)
    }
}
leasing_abstractions::provider_layer!(Counted);

fn counted() -> Arc<Counted> {
    Arc::new(Counted {
        inner: InMemoryLeaseProvider::new(),
        renewals: AtomicU64::new(0),
    })
}

struct Row {
    name: &'static str,
    renewals: u64,
    cpu: f64,
    rss_per_lease: f64,
    all_held: bool,
}

async fn raw(n: u64, secs: u64) -> Row {
    let p = counted();
    let rss0 = rss_bytes();
    let mut grants = Vec::new();
    for i in 0..n {
        let r = AcquireRequest::new(format!("raw-{i}"), DURATION, Metadata::new());
        grants.push(Arc::new(p.try_acquire(&r).await.unwrap().unwrap()));
    }
    let rss = rss_bytes().saturating_sub(rss0) as f64 / n as f64;
    let interval = DURATION.mul_f64(2.0 / 3.0);
    let cpu0 = cpu_seconds();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut all_held = true;
    while Instant::now() < end {
        tokio::time::sleep(interval).await;
        for chunk in grants.chunks(1024) {
            all_held &= p.renew_many(chunk).await.iter().all(Result::is_ok);
        }
    }
    let cpu = cpu_seconds() - cpu0;
    Row {
        name: "raw renew_many",
        renewals: p.renewals.load(Ordering::Relaxed),
        cpu,
        rss_per_lease: rss,
        all_held,
    }
}

/// Lets the leases on `p` run for `secs` s: the renewals that reached the store and the
/// CPU time spent meanwhile.
async fn run_for(p: &Counted, secs: u64) -> (u64, f64) {
    let before = p.renewals.load(Ordering::Relaxed);
    let cpu0 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_seconds() - cpu0;
    (p.renewals.load(Ordering::Relaxed) - before, cpu)
}

async fn engine(n: u64, secs: u64) -> Row {
    let p = counted();
    let m = LeaseManager::new(
        p.clone(),
        LeaseOptions::default()
            .with_default_lease_duration(DURATION)
            .with_auto_renew_retry_interval(Duration::from_millis(50)),
    )
    .unwrap();
    let rss0 = rss_bytes();
    let mut leases = Vec::new();
    for i in 0..n {
        leases.push(m.acquire(&format!("engine-{i}")).await.unwrap());
    }
    let rss = rss_bytes().saturating_sub(rss0) as f64 / n as f64;
    let (renewals, cpu) = run_for(&p, secs).await;
    let all_held = leases.iter().all(|l| l.state() == LeaseState::Held);
    Row {
        name: "engine (LeaseManager)",
        renewals,
        cpu,
        rss_per_lease: rss,
        all_held,
    }
}

async fn naive(n: u64, secs: u64) -> Row {
    let p = counted();
    let rss0 = rss_bytes();
    let mut tasks = Vec::new();
    let lost = Arc::new(AtomicU64::new(0));
    for i in 0..n {
        let r = AcquireRequest::new(format!("naive-{i}"), DURATION, Metadata::new());
        let g = p.try_acquire(&r).await.unwrap().unwrap();
        let (p, lost) = (p.clone(), lost.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = tokio::time::Instant::now();
            loop {
                next += DURATION.mul_f64(2.0 / 3.0);
                tokio::time::sleep_until(next).await;
                if p.renew(&g).await.is_err() {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let rss = rss_bytes().saturating_sub(rss0) as f64 / n as f64;
    let (renewals, cpu) = run_for(&p, secs).await;
    for t in tasks {
        t.abort();
    }
    Row {
        name: "naive task per lease",
        renewals,
        cpu,
        rss_per_lease: rss,
        all_held: lost.load(Ordering::Relaxed) == 0,
    }
}

fn main() {
    let n = env("LEASES", 10_000);
    let secs = env("SECONDS", 10);
    if let Ok(variant) = std::env::var("RENEWAL_SCALE_VARIANT") {
        // Child: run one variant in a fresh process, so its memory is its own.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(async {
            match variant.as_str() {
                "raw" => raw(n, secs).await,
                "engine" => engine(n, secs).await,
                _ => naive(n, secs).await,
            }
        });
        println!(
            "{}\t{}\t{}\t{}\t{}",
            r.name, r.renewals, r.cpu, r.rss_per_lease, r.all_held
        );
        return;
    }
    println!("{n} leases of {DURATION:?} (renewed every 1 s) held for {secs} s; 2 worker threads; each variant in its own process\n");
    let exe = std::env::current_exe().unwrap();
    let rows: Vec<Row> = ["raw", "engine", "naive"]
        .iter()
        .map(|v| {
            let out = std::process::Command::new(&exe)
                .env("RENEWAL_SCALE_VARIANT", v)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{v}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8(out.stdout).unwrap();
            let f: Vec<&str> = line.trim().split('\t').collect();
            Row {
                name: match *v {
                    "raw" => "raw renew_many",
                    "engine" => "engine (LeaseManager)",
                    _ => "naive task per lease",
                },
                renewals: f[1].parse().unwrap(),
                cpu: f[2].parse().unwrap(),
                rss_per_lease: f[3].parse().unwrap(),
                all_held: f[4] == "true",
            }
        })
        .collect();
    let base = rows[0].cpu / rows[0].renewals.max(1) as f64;
    println!(
        "| variant | renewals | CPU s | CPU µs / renewal | × raw | RSS bytes / lease | all held |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        let per = r.cpu / r.renewals.max(1) as f64;
        println!(
            "| {} | {} | {:.3} | {:.2} | {:.2} | {:.0} | {} |",
            r.name,
            r.renewals,
            r.cpu,
            per * 1e6,
            per / base,
            r.rss_per_lease,
            r.all_held
        );
    }
}
