//! Hold a lease on Azure Blob Storage while doing some work, with auto-renewal and a
//! fencing token.
//!
//! ```text
//! scripts/azurite-up.sh
//! cargo run -p distributed-leasing --features blob --example blob_quickstart
//! ```
//! Reads the environment like [`BlobLeaseProvider::from_env`] (a connection string in
//! `AZURE_STORAGE_CONNECTION_STRING`, or an account with a key, a SAS or a token
//! credential) and defaults to Azurite on this machine (`UseDevelopmentStorage=true`).

use distributed_leasing::blob::BlobLeaseProvider;
use distributed_leasing::{LeaseManager, LeaseOptions};
use std::sync::Arc;
use std::time::Duration;

async fn provider() -> distributed_leasing::Result<BlobLeaseProvider> {
    let configured = [
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_BLOB_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if configured {
        BlobLeaseProvider::from_env().await
    } else {
        BlobLeaseProvider::builder()
            .connection_string("UseDevelopmentStorage=true")
            .build()
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = LeaseOptions::default()
        // Blob leases are whole seconds from 15 to 60, or infinite.
        .with_default_lease_duration(Duration::from_secs(15))
        .with_acquire_timeout(Duration::from_secs(20))
        .with_metadata(distributed_leasing::environment_metadata(Some(env!(
            "CARGO_PKG_VERSION"
        ))));
    let manager = LeaseManager::new(Arc::new(provider().await?), options)?;

    let lease = manager.acquire("quickstart/invoice-batch-42").await?;
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
        // Azure does not report a lease's remaining time: expires_at is Unknown.
        println!(
            "holder: token {} expires {:?} metadata {:?}",
            info.fencing_token, info.expires_at, info.metadata
        );
    }
    lease.release().await?;
    println!("released");
    Ok(())
}
