//! Three candidates elect one leader at a time on the in-memory backend; the leader
//! writes its progress to a fenced store with its term's token. The first leader stops
//! renewing (as a paused or cut-off process would): it is told at its safety deadline,
//! before anyone else is elected, and its late write is refused by the store. Runs for
//! about 10 s and exits 0.
//!
//! ```text
//! cargo run --example leader_election
//! ```
//!
//! The same code runs on Redis, Blob or Cosmos: build the manager over that provider.

use distributed_leasing::election::{Election, ElectionEvent};
use distributed_leasing::fault::{Fault, FaultInjectingProvider};
use distributed_leasing::fence::{Fence, FencedResource, FencedWrite, InMemoryFencedResource};
use distributed_leasing::Operation;
use distributed_leasing::{InMemoryLeaseProvider, LeaseManager, LeaseOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let t = move || format!("{:>5.2}s", started.elapsed().as_secs_f64());
    let backend = InMemoryLeaseProvider::new();
    let store = InMemoryFencedResource::new();
    let options = LeaseOptions::default().with_default_lease_duration(Duration::from_secs(2));
    // Candidate 1's renewals can be cut off (to show a leader losing the lead).
    let cut = FaultInjectingProvider::new(Arc::new(backend.clone()));
    let faults = cut.control();
    let managers = [
        LeaseManager::new(Arc::new(cut), options.clone())?,
        LeaseManager::new(Arc::new(backend.clone()), options.clone())?,
        LeaseManager::new(Arc::new(backend), options)?,
    ];
    let mut tasks = Vec::new();
    for (i, manager) in managers.iter().enumerate() {
        let election = Election::builder(manager, "report-leader")
            .identity(format!("candidate-{}", i + 1))
            .build()?;
        let mut events = election.events();
        let (t2, who) = (t, election.identity().to_owned());
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                match e {
                    ElectionEvent::Lost {
                        fencing_token,
                        reason,
                        ..
                    } => {
                        println!(
                            "{} {who}: stopped leading (token {fencing_token}): {reason}",
                            t2()
                        )
                    }
                    ElectionEvent::Resigned { fencing_token, .. } => {
                        println!("{} {who}: resigned (token {fencing_token})", t2())
                    }
                    _ => {}
                }
            }
        });
        let (store, faults) = (store.clone(), faults.clone());
        tasks.push(tokio::spawn(async move {
            // Give candidate 1 a head start so that the story is the same every run.
            tokio::time::sleep(Duration::from_millis(if i == 0 { 0 } else { 100 })).await;
            let lead = election.campaign().await?;
            let fence = Fence::of(lead.lease());
            println!(
                "{} {}: elected, token {}",
                t(),
                lead.identity(),
                lead.fencing_token()
            );
            let outcome = store
                .write(&fence, "report", lead.identity().as_bytes())
                .await?;
            println!("{} {}: wrote the report: {outcome:?}", t(), lead.identity());
            if i == 0 {
                // Candidate 1 is cut off: its renewals and release never arrive.
                faults.script(Operation::Renew, vec![Fault::Hang; 1000]);
                faults.script(Operation::Release, vec![Fault::Hang; 1000]);
                let reason = lead.lost().await;
                println!(
                    "{} {}: told it lost the lead: {reason}",
                    t(),
                    lead.identity()
                );
                // A buggy (or paused) leader writes anyway: the store refuses it.
                tokio::time::sleep(Duration::from_millis(600)).await;
                match store.write(&fence, "report", b"late write").await? {
                    FencedWrite::Stale { highest } => println!(
                        "{} {}: late write refused (the store has seen token {highest})",
                        t(),
                        lead.identity()
                    ),
                    FencedWrite::Written => panic!("a stale write was accepted"),
                }
            } else {
                tokio::time::sleep(Duration::from_secs(2)).await;
                lead.resign().await?;
            }
            Ok::<(), distributed_leasing::LeaseError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let last = store.read("report").await?.unwrap_or_default();
    println!(
        "{} the report was last written by {}",
        t(),
        String::from_utf8_lossy(&last)
    );
    Ok(())
}
