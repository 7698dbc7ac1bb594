//! Hold a lease on Azure Cosmos DB while doing some work, with auto-renewal and a fencing
//! token.
//!
//! ```text
//! scripts/cosmos-up.sh && source target/services/cosmos.env
//! cargo run -p distributed-leasing --features cosmos --example cosmos_quickstart
//! ```
//! Reads `LEASING_COSMOS_CONNECTION_STRING`, or `LEASING_COSMOS_ENDPOINT` with
//! `LEASING_COSMOS_KEY` or an Azure identity (see `CosmosLeaseProviderBuilder::from_env`).

use distributed_leasing::cosmos::CosmosLeaseProvider;
use distributed_leasing::{LeaseManager, LeaseOptions};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = CosmosLeaseProvider::from_env().await?;
    let options = LeaseOptions::default()
        .with_default_lease_duration(Duration::from_secs(15))
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
