//! Acquire+release latency and throughput of the Cosmos DB provider next to the raw SDK
//! making the same calls (create with the body returned, then replace under If-Match),
//! and the time to renew 1 000 held leases with `renew_many`.
//!
//! Run: `scripts/cosmos-up.sh && source target/services/cosmos.env &&
//! cargo bench -p leasing-cosmos --bench cosmos_bench`. Prints a markdown table.
#![allow(missing_docs, clippy::unwrap_used)]

use azure_core::credentials::Secret;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::options::{
    BinaryEncodingOptions, ConnectionPoolOptions, ContentResponseOnWrite, ItemWriteOptions,
    OperationOptions, Precondition, Region, ServerCertificateValidation, ThrottlingRetryOptions,
};
use azure_data_cosmos::{AccountReference, CosmosClient, CosmosRuntime, RoutingStrategy};
use leasing_abstractions::{AcquireRequest, LeaseProvider, Metadata};
use leasing_cosmos::CosmosLeaseProvider;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 64;
const SEQ_OPS: usize = 500;
const PER_TASK: usize = 40;
const HELD: usize = 1000;
const TTL: Duration = Duration::from_secs(60);

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn concurrent<F, Fut>(op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    op(t * PER_TASK + i).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    (TASKS * PER_TASK) as f64 / start.elapsed().as_secs_f64()
}

async fn raw_container(endpoint: &str, key: &str, db: &str) -> ContainerClient {
    let pool = ConnectionPoolOptions::builder()
        .with_is_http2_allowed(false)
        .with_server_certificate_validation(ServerCertificateValidation::RequiredUnlessEmulator)
        .build()
        .unwrap();
    let runtime = CosmosRuntime::builder()
        .with_connection_pool(pool)
        .build()
        .await
        .unwrap();
    let mut o = OperationOptions::default();
    let mut throttling = ThrottlingRetryOptions::default();
    throttling.max_retry_count = Some(0);
    o.throttling_retry_options = Some(throttling);
    let client = CosmosClient::builder()
        .with_runtime(runtime)
        .with_default_operation_options(o)
        .with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false))
        .build(
            AccountReference::with_authentication_key(
                endpoint.parse().unwrap(),
                Secret::new(key.to_owned()),
            ),
            RoutingStrategy::ProximityTo(Region::from("")),
        )
        .await
        .unwrap();
    client
        .database_client(db)
        .container_client("leases", None)
        .await
        .unwrap()
}

fn content(on: bool) -> ItemWriteOptions {
    let mut o = OperationOptions::default();
    o.content_response_on_write = Some(if on {
        ContentResponseOnWrite::Enabled
    } else {
        ContentResponseOnWrite::Disabled
    });
    ItemWriteOptions::default().with_operation_options(o)
}

/// The raw SDK doing what the provider's acquire + release do on a fresh name.
async fn raw_acquire_release(c: &ContainerClient, id: String) {
    let doc = serde_json::json!({
        "id": id, "partitionKey": id, "leaseName": id, "leaseId": uuid::Uuid::new_v4().to_string(),
        "owner": "bench", "duration": 30000, "metadata": {}, "ttl": 604800, "state": "held"
    });
    let created = c
        .create_item(id.clone(), &id, &doc, Some(content(true)))
        .await
        .unwrap();
    let etag = created.headers().etag().unwrap().clone();
    let body: serde_json::Value = created.into_model().unwrap();
    let mut free = doc.clone();
    free["state"] = "free".into();
    free["fencingToken"] = (body["_ts"].as_u64().unwrap() * 1_000_000).into();
    c.replace_item(
        id.clone(),
        &id,
        &free,
        Some(content(false).with_precondition(Precondition::if_match(etag))),
    )
    .await
    .unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (Ok(endpoint), Ok(key)) = (
        std::env::var("LEASING_COSMOS_ENDPOINT"),
        std::env::var("LEASING_COSMOS_KEY"),
    ) else {
        eprintln!("SKIPPED: start the emulator with scripts/cosmos-up.sh and source target/services/cosmos.env");
        return;
    };
    let db = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let provider = CosmosLeaseProvider::builder()
        .key(&endpoint, &key)
        .database(&db)
        .renew_concurrency(64)
        .build()
        .await
        .unwrap();
    // First use creates the database and container.
    let warm = AcquireRequest::new("warm", TTL, Metadata::new());
    let g = provider.try_acquire(&warm).await.unwrap().unwrap();
    provider.release(&g).await.unwrap();
    let raw = Arc::new(raw_container(&endpoint, &key, &db).await);
    let run = uuid::Uuid::new_v4().simple().to_string();

    // Warm both paths.
    for i in 0..50 {
        raw_acquire_release(&raw, format!("w-raw-{run}-{i}")).await;
        let r = AcquireRequest::new(format!("w-p-{run}-{i}"), TTL, Metadata::new());
        let g = provider.try_acquire(&r).await.unwrap().unwrap();
        provider.release(&g).await.unwrap();
    }

    // Sequential: the two alternate op by op, so both see the same machine.
    let ru_before = provider.request_charge_total();
    let (mut tp, mut tr) = (Vec::with_capacity(SEQ_OPS), Vec::with_capacity(SEQ_OPS));
    for i in 0..SEQ_OPS {
        let s = Instant::now();
        let r = AcquireRequest::new(format!("s-p-{run}-{i}"), TTL, Metadata::new());
        let g = provider.try_acquire(&r).await.unwrap().unwrap();
        provider.release(&g).await.unwrap();
        tp.push(s.elapsed().as_secs_f64() * 1000.0);
        let s = Instant::now();
        raw_acquire_release(&raw, format!("s-raw-{run}-{i}")).await;
        tr.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    let ru_per_op = (provider.request_charge_total() - ru_before) / SEQ_OPS as f64;
    tp.sort_by(|a, b| a.total_cmp(b));
    tr.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99, r50, r99) = (pct(&tp, 0.5), pct(&tp, 0.99), pct(&tr, 0.5), pct(&tr, 0.99));
    // Throughput: three rounds each, alternating; the median round of each.
    let (mut ops_v, mut raw_v) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let p = provider.clone();
        let r2 = format!("{run}-{round}");
        ops_v.push(
            concurrent(move |i| {
                let p = p.clone();
                let name = format!("c-p-{r2}-{i}");
                async move {
                    let r = AcquireRequest::new(name, TTL, Metadata::new());
                    let g = p.try_acquire(&r).await.unwrap().unwrap();
                    p.release(&g).await.unwrap();
                }
            })
            .await,
        );
        let c = Arc::clone(&raw);
        let r3 = format!("{run}-{round}");
        raw_v.push(
            concurrent(move |i| {
                let c = Arc::clone(&c);
                let id = format!("c-raw-{r3}-{i}");
                async move { raw_acquire_release(&c, id).await }
            })
            .await,
        );
    }
    ops_v.sort_by(|a, b| a.total_cmp(b));
    raw_v.sort_by(|a, b| a.total_cmp(b));
    let (ops, raw_ops) = (ops_v[1], raw_v[1]);

    // 1 000 held leases renewed with renew_many.
    let mut grants = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let r = AcquireRequest::new(format!("h-{run}-{i}"), TTL, Metadata::new());
        grants.push(Arc::new(provider.try_acquire(&r).await.unwrap().unwrap()));
    }
    let mut renew_ms = Vec::new();
    for _ in 0..3 {
        let s = Instant::now();
        let results = provider.renew_many(&grants).await;
        renew_ms.push(s.elapsed().as_secs_f64() * 1000.0);
        assert!(results.iter().all(Result::is_ok));
    }
    renew_ms.sort_by(|a, b| a.total_cmp(b));

    println!("| | p50 ms | p99 ms | ops/s (64 tasks) |");
    println!("|---|---:|---:|---:|");
    println!("| leasing-cosmos acquire+release | {p50:.2} | {p99:.2} | {ops:.0} |");
    println!("| raw SDK create+replace | {r50:.2} | {r99:.2} | {raw_ops:.0} |");
    println!(
        "| ratio | {:.2}× | {:.2}× | {:.2}× |",
        p50 / r50,
        p99 / r99,
        ops / raw_ops
    );
    println!();
    println!(
        "renew_many of {HELD} held leases (concurrency 64): median {:.0} ms",
        renew_ms[1]
    );
    println!(
        "request charge per acquire+release: {ru_per_op:.2} RU (the emulator charges 1 per call)"
    );
}
