//! Hold a lease on Redis while doing some work, with auto-renewal and a fencing token.
//!
//! ```text
//! scripts/redis-up.sh && source target/services/redis.env
//! cargo run -p distributed-leasing --features redis --example redis_quickstart
//! ```
//! Reads `LEASING_REDIS_URL`.
//!
//! The restart fence is set to the lease duration: a Redis that restarts without
//! persistence, or fails over to a replica that missed the last write, then grants nothing
//! until every lease granted before could have expired. Keep it unless every server
//! persists each write and has no replicas (docs/providers/redis.md).

use distributed_leasing::redis::RedisLeaseProviderBuilder;
use distributed_leasing::{LeaseManager, LeaseOptions};
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = RedisLeaseProviderBuilder::from_env()
        .restart_fence(LEASE) // at least the longest lease duration in use
        .build()
        .await?;
    let options = LeaseOptions::default()
        .with_default_lease_duration(LEASE)
        .with_acquire_timeout(Duration::from_secs(10))
        .with_metadata(distributed_leasing::environment_metadata(Some(env!(
            "CARGO_PKG_VERSION"
        ))));
    let manager = LeaseManager::new(Arc::new(provider), options)?;

    let lease = manager.acquire("quickstart:invoice-batch-42").await?;
    println!(
        "holding {} with fencing token {}",
        lease.name(),
        lease.fencing_token()
    );
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(2)) => println!("work done"),
        reason = lease.lost() => return Err(format!("lease lost: {reason}").into()),
    }
    if let Some(info) = manager.inspect(lease.name()).await? {
        println!(
            "holder: token {} expires {:?} metadata {:?}",
            info.fencing_token, info.expires_at, info.metadata
        );
    }
    lease.release().await?;
    println!("released");
    Ok(())
}
