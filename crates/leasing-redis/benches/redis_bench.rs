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
const PER_TASK: usize = 250;
const TTL: Duration = Duration::from_secs(30);

struct Row {
    name: String,
    p50: f64,
    p99: f64,
    ops: f64,
    tp50: f64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Sequential latency (one task) and 64-task throughput of `op(task, i)`.
async fn measure<F, Fut>(name: &str, op: F) -> Row
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
    let ops = (TASKS * PER_TASK) as f64 / started.elapsed().as_secs_f64();
    Row {
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

async fn ours(p: Arc<dyn LeaseProvider>, label: &str) -> Row {
    let run = run_id();
    let mut md = Metadata::new();
    md.insert("host".into(), "bench-host".into());
    md.insert("region".into(), "westeurope".into());
    measure(label, move |t, _| {
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
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let script = Arc::new(redis::Script::new(CAD));
    let run = run_id();
    measure(
        "raw redis-rs SET NX PX + compare-and-delete",
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
    let lm = Arc::new(rslock::LockManager::new(urls));
    let run = run_id();
    measure(label, move |t, _| {
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
    let mut rows = Vec::new();
    rows.push(raw(&url).await);
    rows.push(
        ours(
            single.clone(),
            "leasing-redis (fencing + 2 metadata fields)",
        )
        .await,
    );
    rows.push(rslock(vec![url.clone()], "rslock 0.10 (1 instance)").await);
    rows.push(ours(rl.clone(), "leasing-redis Redlock over 5").await);
    rows.push(rslock(redlock.clone(), "rslock 0.10 over 5").await);
    println!("\n| acquire+release | p50 µs (1 task) | p99 µs (1 task) | ops/s (64 tasks) | p50 µs (64 tasks) |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.name, r.p50, r.p99, r.ops, r.tp50
        );
    }
    let (raw_p50, raw_ops) = (rows[0].p50, rows[0].ops);
    println!(
        "\nours/raw: p50 {:.2}×, throughput {:.2}×; ours/rslock throughput {:.2}×",
        rows[1].p50 / raw_p50,
        rows[1].ops / raw_ops,
        rows[1].ops / rows[2].ops
    );
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
