//! Three workers in one process compete for one lease on the in-memory backend.
//!
//! One wins, holds the lease while it renews itself in the background, and stops; the
//! next worker, woken by the release, takes over with a higher fencing token. Every event
//! prints as it happens. Runs for about 12 s and exits 0.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use distributed_leasing::{
    environment_metadata, InMemoryLeaseProvider, LeaseEvent, LeaseManager, LeaseOptions,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let provider = Arc::new(InMemoryLeaseProvider::new());
    let options = LeaseOptions::default()
        .with_default_lease_duration(Duration::from_secs(3)) // renewed every 2 s
        .with_auto_renew_retry_interval(Duration::from_millis(100))
        .with_acquire_timeout(Duration::from_secs(25))
        .with_acquire_retry_interval(Duration::from_millis(250))
        .with_metadata(environment_metadata(Some(env!("CARGO_PKG_VERSION"))));
    let manager = LeaseManager::new(provider, options)?;

    let mut workers = Vec::new();
    for id in 1..=3 {
        let manager = manager.clone();
        workers.push(tokio::spawn(async move {
            let t = move || format!("[{:>5.2}s] worker {id}", started.elapsed().as_secs_f64());
            println!("{} waiting for lease \"leader\"", t());
            let lease = manager.acquire("leader").await?;
            println!(
                "{} ACQUIRED \"leader\" (fencing token {}, lease id {})",
                t(),
                lease.fencing_token(),
                &lease.lease_id()[..8]
            );
            let mut events = lease.events();
            let printer = tokio::spawn(async move {
                while let Ok(event) = events.recv().await {
                    match event {
                        LeaseEvent::Renewed { remaining } => {
                            println!(
                                "{} renewed, valid for {:.2}s more",
                                t(),
                                remaining.as_secs_f64()
                            )
                        }
                        other => println!("{} event: {other:?}", t()),
                    }
                }
            });
            // Work while holding the lease; stop early if it is lost.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(4)) => {}
                reason = lease.lost() => println!("{} LOST the lease: {reason}", t()),
            }
            if id % 2 == 0 {
                println!(
                    "{} stops without releasing: dropping the lease releases it in the background",
                    t()
                );
                drop(lease);
            } else {
                println!("{} done, releasing", t());
                lease.release().await?;
            }
            printer.await.ok();
            Ok::<u64, distributed_leasing::LeaseError>(id)
        }));
    }
    for w in workers {
        w.await??;
    }
    let info = manager.inspect("leader").await?;
    println!(
        "[{:>5.2}s] all workers done; holder now: {info:?}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
