//! How short a Redis lease can be in practice: holds 20 auto-renewing leases of each
//! duration for a while, with every core kept busy by spinning threads (a loaded host),
//! and counts the leases lost and whether a warning (`RenewalFailed` / `AtRisk`) came
//! first. The figures behind "practical minimum lease duration" in docs/providers/redis.md.
//!
//! ```text
//! cargo run --release -p leasing-redis --example min_duration -- redis://127.0.0.1:6379 [seconds per duration] [busy threads]
//! ```

use leasing_abstractions::{LeaseEvent, LeaseManager, LeaseOptions};
use leasing_redis::RedisLeaseProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let secs: u64 = args.next().map_or(Ok(20), |s| s.parse())?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let busy: usize = args.next().map_or(Ok(cores * 2), |s| s.parse())?;
    let provider = Arc::new(
        RedisLeaseProvider::builder()
            .url(&url)
            .key_prefix("min-duration:")
            .build()
            .await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..busy)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    println!("{busy} busy threads on {cores} cores; 20 leases per duration for {secs} s");
    println!("| duration | leases lost | lost without a warning first | renewals failed |");
    println!("|---:|---:|---:|---:|");
    for ms in [100u64, 200, 300, 500, 1000, 2000, 5000] {
        let d = Duration::from_millis(ms);
        let manager = LeaseManager::new(
            provider.clone(),
            LeaseOptions::default().with_default_lease_duration(d),
        )?;
        let until = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let manager = manager.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("lease-{ms}-{i}-{}", std::process::id());
                let (mut lost, mut unwarned, mut failed) = (0u32, 0u32, 0u32);
                while Instant::now() < until {
                    let Ok(lease) = manager.acquire(&name).await else {
                        continue;
                    };
                    let mut events = lease.events();
                    let mut warned = false;
                    let ended = tokio::time::timeout_at(until.into(), async {
                        loop {
                            match events.recv().await {
                                Ok(LeaseEvent::RenewalFailed { .. }) => {
                                    failed += 1;
                                    warned = true;
                                }
                                Ok(LeaseEvent::AtRisk { .. }) => warned = true,
                                Ok(LeaseEvent::Lost { .. }) => return true,
                                Ok(_) => {}
                                Err(_) => return false,
                            }
                        }
                    })
                    .await;
                    if ended == Ok(true) || !lease.is_held() {
                        lost += 1;
                        if !warned {
                            unwarned += 1;
                        }
                    }
                    drop(lease);
                }
                (lost, unwarned, failed)
            }));
        }
        let (mut lost, mut unwarned, mut failed) = (0, 0, 0);
        for t in tasks {
            let (l, u, f) = t.await?;
            lost += l;
            unwarned += u;
            failed += f;
        }
        println!("| {ms} ms | {lost} | {unwarned} | {failed} |");
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    Ok(())
}
