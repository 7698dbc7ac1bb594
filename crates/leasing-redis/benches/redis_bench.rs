//! Acquire+release latency and throughput of the Redis and Redlock providers next to raw
//! redis-rs (`SET NX PX` + compare-and-delete) and rslock, plus release→waiter hand-off.
//!
//! Run: `scripts/redis-up.sh && source target/services/redis.env &&
//! cargo bench -p leasing-redis --bench redis_bench`. Prints a markdown table.
#![allow(missing_docs, clippy::unwrap_used)]

use leasing_abstractions::{AcquireRequest, LeaseManager, LeaseOptions, LeaseProvider, Metadata};
use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 64;
const SEQ_OPS: usize = 3000;
const PER_TASK: usize = 1000;
const TTL: Duration = Duration::from_secs(30);

struct Row {
    name: String,
    p50: f64,
    p99: f64,
    ops: f64,
    tp50: f64,
    /// Per op of the 64-task phase: server CPU µs (summed over the servers the row talks
    /// to), server commands (including those run inside scripts), client process CPU µs.
    server_us: f64,
    cmds: f64,
    client_us: f64,
}

/// CPU seconds (user + system) of this process.
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// (CPU seconds, commands processed) summed over `urls`, from INFO.
async fn server_stats(urls: &[String]) -> (f64, f64) {
    let mut cpu = 0.0;
    let mut cmds = 0.0;
    for u in urls {
        let mut c = redis::Client::open(u.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("all")
            .query_async(&mut c)
            .await
            .unwrap();
        for line in info.lines() {
            let field = |k: &str| {
                line.strip_prefix(k)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            };
            if let Some(v) = field("used_cpu_user:").or_else(|| field("used_cpu_sys:")) {
                cpu += v;
            }
            // Every command, top-level or run by a script, minus this function's own
            // connection set-up and INFO.
            if line.starts_with("cmdstat_")
                && !["cmdstat_info:", "cmdstat_client|", "cmdstat_hello:"]
                    .iter()
                    .any(|p| line.starts_with(p))
            {
                if let Some(calls) = line
                    .split(&[':', ','][..])
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    cmds += calls;
                }
            }
        }
    }
    (cpu, cmds)
}

/// Which rows to run: `LEASING_BENCH_ONLY=raw,ours,rslock,redlock,rslock5,handoff`
/// (default all); for profiling one row at a time.
fn wanted(row: &str) -> bool {
    std::env::var("LEASING_BENCH_ONLY").map_or(true, |v| v.split(',').any(|r| r == row))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Sequential latency (one task) and 64-task throughput of `op(task, i)`.
async fn measure<F, Fut>(name: &str, servers: &[String], op: F) -> Row
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    for i in 0..200 {
        op(0, i).await;
    }
    let mut lat = Vec::with_capacity(SEQ_OPS);
    for i in 0..SEQ_OPS {
        let t = Instant::now();
        op(0, i + 1000).await;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (cpu0, cmds0) = server_stats(servers).await;
    let own0 = own_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut l = Vec::with_capacity(PER_TASK);
                for i in 0..PER_TASK {
                    let s = Instant::now();
                    op(t + 1, i).await;
                    l.push(s.elapsed().as_secs_f64() * 1e6);
                }
                l
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let own1 = own_cpu();
    let (cpu1, cmds1) = server_stats(servers).await;
    let n = (TASKS * PER_TASK) as f64;
    let ops = n / elapsed;
    Row {
        server_us: (cpu1 - cpu0) * 1e6 / n,
        // minus the INFO calls of the two snapshots
        cmds: (cmds1 - cmds0) / n,
        client_us: (own1 - own0) * 1e6 / n,
        name: name.to_owned(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        ops,
        tp50: pct(&mut all, 0.5),
    }
}

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

async fn ours(p: Arc<dyn LeaseProvider>, label: &str, servers: &[String]) -> Row {
    let run = run_id();
    let mut md = Metadata::new();
    md.insert("host".into(), "bench-host".into());
    md.insert("region".into(), "westeurope".into());
    measure(label, servers, move |t, _| {
        let p = p.clone();
        let req = AcquireRequest::new(format!("bench-{run}-{t}"), TTL, md.clone());
        async move {
            let g = p.try_acquire(&req).await.unwrap().expect("free");
            p.release(&g).await.unwrap();
        }
    })
    .await
}

const CAD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

async fn raw(url: &str) -> Row {
    let client = redis::Client::open(url).unwrap();
    // The same connection set-up as the provider's (see node.rs).
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(0)
        .set_min_delay(Duration::from_millis(1))
        .set_max_delay(Duration::from_millis(10));
    let conn = redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .unwrap();
    let script = Arc::new(redis::Script::new(CAD));
    let run = run_id();
    measure(
        "raw redis-rs SET NX PX + compare-and-delete",
        &[url.to_owned()],
        move |t, _| {
            let mut c = conn.clone();
            let script = script.clone();
            let key = format!("rawbench-{run}-{t}");
            async move {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let ok: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(TTL.as_millis() as u64)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert!(ok.is_some());
                let _: i64 = script
                    .key(&key)
                    .arg(&token)
                    .invoke_async(&mut c)
                    .await
                    .unwrap();
            }
        },
    )
    .await
}

async fn rslock(urls: Vec<String>, label: &str) -> Row {
    let lm = Arc::new(rslock::LockManager::new(urls.clone()));
    let run = run_id();
    measure(label, &urls, move |t, _| {
        let lm = lm.clone();
        let key = format!("rslockbench-{run}-{t}");
        async move {
            let l = lm.lock(key.as_str(), TTL).await.unwrap();
            lm.unlock(&l).await;
        }
    })
    .await
}

async fn handoff(make: impl Fn() -> Arc<dyn LeaseProvider>, label: &str) -> (String, f64, f64) {
    let opts = LeaseOptions::default()
        .with_acquire_retry_interval(Duration::from_secs(5))
        .with_auto_renew(false);
    let a = LeaseManager::new(make(), opts.clone()).unwrap();
    let b = Arc::new(LeaseManager::new(make(), opts).unwrap());
    let name = format!("handoff-{}", run_id());
    let mut lat = Vec::new();
    for _ in 0..100 {
        let held = a.acquire(&name).await.unwrap();
        let b2 = b.clone();
        let n2 = name.clone();
        let waiter = tokio::spawn(async move {
            let l = b2.acquire(&n2).await.unwrap();
            let at = Instant::now();
            l.release().await.unwrap();
            at
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = Instant::now();
        held.release().await.unwrap();
        let got = waiter.await.unwrap();
        lat.push((got - t).as_secs_f64() * 1e6);
    }
    (label.to_owned(), pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

#[tokio::main]
async fn main() {
    let url =
        std::env::var("LEASING_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390".into());
    let redlock: Vec<String> = std::env::var("LEASING_REDLOCK_URLS")
        .unwrap_or_else(|_| {
            (6401..=6405)
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .split(',')
        .map(str::to_owned)
        .collect();
    let single: Arc<dyn LeaseProvider> = Arc::new(
        RedisLeaseProvider::builder()
            .url(&url)
            .build()
            .await
            .unwrap(),
    );
    let rl: Arc<dyn LeaseProvider> = Arc::new(
        RedlockLeaseProvider::builder()
            .urls(&redlock)
            .build()
            .await
            .unwrap(),
    );
    let single_urls = [url.clone()];
    let mut rows = Vec::new();
    if wanted("raw") {
        rows.push(raw(&url).await);
    }
    if wanted("ours") {
        rows.push(
            ours(
                single.clone(),
                "leasing-redis (fencing + 2 metadata fields)",
                &single_urls,
            )
            .await,
        );
    }
    if wanted("rslock") {
        rows.push(rslock(single_urls.to_vec(), "rslock 0.10 (1 instance)").await);
    }
    if wanted("redlock") {
        rows.push(ours(rl.clone(), "leasing-redis Redlock over 5", &redlock).await);
    }
    if wanted("rslock5") {
        rows.push(rslock(redlock.clone(), "rslock 0.10 over 5").await);
    }
    println!("\n| acquire+release | p50 µs (1 task) | p99 µs (1 task) | ops/s (64 tasks) | p50 µs (64 tasks) | server CPU µs/op | server cmds/op | client CPU µs/op |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
            r.name, r.p50, r.p99, r.ops, r.tp50, r.server_us, r.cmds, r.client_us
        );
    }
    let find = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix));
    if let (Some(raw), Some(ours), Some(rs)) = (
        find("raw"),
        find("leasing-redis (fencing"),
        find("rslock 0.10 (1"),
    ) {
        println!(
            "\nours/raw: p50 {:.2}×, throughput {:.2}×; ours/rslock throughput {:.2}×",
            ours.p50 / raw.p50,
            ours.ops / raw.ops,
            ours.ops / rs.ops
        );
    }
    if !wanted("handoff") {
        return;
    }
    let mut hand = Vec::new();
    let s1: Arc<dyn LeaseProvider> = Arc::new(
        RedisLeaseProvider::builder()
            .url(&url)
            .build()
            .await
            .unwrap(),
    );
    let s2: Arc<dyn LeaseProvider> = Arc::new(
        RedisLeaseProvider::builder()
            .url(&url)
            .build()
            .await
            .unwrap(),
    );
    let pair = std::sync::Mutex::new(vec![s2, s1]);
    hand.push(
        handoff(
            || pair.lock().unwrap().pop().unwrap(),
            "release → waiting acquirer (single)",
        )
        .await,
    );
    let r1: Arc<dyn LeaseProvider> = Arc::new(
        RedlockLeaseProvider::builder()
            .urls(&redlock)
            .build()
            .await
            .unwrap(),
    );
    let r2: Arc<dyn LeaseProvider> = Arc::new(
        RedlockLeaseProvider::builder()
            .urls(&redlock)
            .build()
            .await
            .unwrap(),
    );
    let pair = std::sync::Mutex::new(vec![r2, r1]);
    hand.push(
        handoff(
            || pair.lock().unwrap().pop().unwrap(),
            "release → waiting acquirer (Redlock over 5)",
        )
        .await,
    );
    println!("\n| hand-off | p50 µs | p99 µs |\n|---|---:|---:|");
    for (n, p50, p99) in hand {
        println!("| {n} | {p50:.0} | {p99:.0} |");
    }
}
