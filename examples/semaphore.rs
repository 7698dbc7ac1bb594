//! Six workers share a semaphore of two permits on the in-memory backend: never more
//! than two run at once, a released permit wakes a waiter at once, and every worker gets
//! its turns. Runs for about 5 s and exits 0.
//!
//! ```text
//! cargo run --example semaphore
//! ```

use distributed_leasing::semaphore::Semaphore;
use distributed_leasing::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = LeaseManager::new(
        Arc::new(InMemoryLeaseProvider::new()),
        LeaseOptions::default().with_default_lease_duration(Duration::from_secs(10)),
    )?;
    let downloads = Semaphore::builder(&manager, "downloads", 2).build()?;
    let running = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(5);
    let mut workers = Vec::new();
    for w in 1..=6 {
        let (sem, running) = (downloads.clone(), running.clone());
        workers.push(tokio::spawn(async move {
            let mut turns = 0;
            while Instant::now() < until {
                let permit = sem.acquire().await?;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= 2, "{now} workers at once");
                println!(
                    "worker {w}: permit {} (token {}), {now} running",
                    permit.slot(),
                    permit.fencing_token()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                permit.release().await?;
                turns += 1;
            }
            Ok::<_, distributed_leasing::LeaseError>((w, turns))
        }));
    }
    for worker in workers {
        let (w, turns) = worker.await??;
        println!("worker {w}: {turns} turns");
    }
    println!("free permits now: {}", downloads.available().await?);
    Ok(())
}
