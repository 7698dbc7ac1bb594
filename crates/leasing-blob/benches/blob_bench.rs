//! Acquire+release latency and throughput of the Blob provider next to the raw
//! `azure_storage_blob` client making exactly the same calls (acquire lease, get
//! properties, set metadata under the lease, release), and a raw acquire+release without
//! metadata; then the time to renew 1 000 held leases.
//!
//! Run: `scripts/azurite-up.sh && source target/services/azurite.env &&
//! cargo bench -p leasing-blob --bench blob_bench`. Prints a markdown table. Both sides
//! authenticate with the same account SAS and run with the SDK's retries off.
#![allow(missing_docs, clippy::unwrap_used)]

use azure_core::http::{ClientOptions, RetryOptions};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientSetMetadataOptions,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures::StreamExt;
use leasing_abstractions::{AcquireRequest, LeaseProvider, Metadata};
use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 64;
const SEQ_OPS: usize = 300;
const PER_TASK: usize = 15;
const HELD: usize = 1000;
const D: Duration = Duration::from_secs(60);

fn account_sas() -> String {
    let (sp, se, sv) = ("rwdlacu", "2099-01-01T00:00:00Z", "2020-12-06");
    let to_sign = format!("{DEV_ACCOUNT}\n{sp}\nb\nsco\n\n{se}\n\nhttps,http\n{sv}\n\n");
    let sig = azure_core::hmac::hmac_sha256(
        &to_sign,
        &azure_core::credentials::Secret::new(DEV_ACCOUNT_KEY),
    )
    .unwrap();
    let sig: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    format!("sv={sv}&ss=b&srt=sco&sp={sp}&se={se}&spr=https,http&sig={sig}")
}

type Op = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Row {
    name: String,
    p50: f64,
    p99: f64,
    ops: f64,
    tp50: f64,
}

async fn measure(name: &'static str, run: &str, op: Op) -> Row {
    // Warm-up and blob creation.
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let seq_name = format!("{run}-{slug}-seq");
    for _ in 0..10 {
        op(seq_name.clone()).await;
    }
    let mut lat = Vec::with_capacity(SEQ_OPS);
    for _ in 0..SEQ_OPS {
        let t = Instant::now();
        op(seq_name.clone()).await;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let names: Vec<String> = (0..TASKS).map(|i| format!("{run}-{slug}-{i}")).collect();
    futures::future::join_all(names.iter().map(|n| op(n.clone()))).await;
    let started = Instant::now();
    let per_task = futures::future::join_all(names.iter().map(|n| {
        let op = op.clone();
        let n = n.clone();
        async move {
            let mut l = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                let t = Instant::now();
                op(n.clone()).await;
                l.push(t.elapsed().as_secs_f64() * 1e3);
            }
            l
        }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<f64> = per_task.into_iter().flatten().collect();
    let ops = all.len() as f64 / elapsed;
    Row {
        name: name.to_owned(),
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        ops,
        tp50: pct(&mut all, 0.5),
    }
}

fn raw_client(url: &str, container: &str, sas: &str) -> BlobContainerClient {
    let options = BlobContainerClientOptions {
        client_options: ClientOptions {
            retry: RetryOptions::none(),
            ..ClientOptions::default()
        },
        ..BlobContainerClientOptions::default()
    };
    let url = azure_core::http::Url::parse(&format!("{url}/{container}?{sas}")).unwrap();
    BlobContainerClient::new(url, None, Some(options)).unwrap()
}

/// A 60 s lease on the blob of lease `name` through the raw client, creating the blob
/// when the first try fails: the blob's client and the lease id.
async fn raw_acquire(
    r: &BlobContainerClient,
    name: &str,
) -> (azure_storage_blob::BlobClient, String) {
    let blob = r.blob_client(&format!("lease-{name}"));
    let id = uuid::Uuid::new_v4().to_string();
    let opts = BlobClientAcquireLeaseOptions {
        proposed_lease_id: Some(id.clone()),
        ..Default::default()
    };
    if blob.acquire_lease(60, Some(opts.clone())).await.is_err() {
        blob.upload(
            azure_core::http::RequestContent::from(Vec::<u8>::new()),
            None,
        )
        .await
        .unwrap();
        blob.acquire_lease(60, Some(opts)).await.unwrap();
    }
    (blob, id)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("LEASING_AZURITE_BLOB_URL") else {
        eprintln!("SKIPPED: LEASING_AZURITE_BLOB_URL is not set; run scripts/azurite-up.sh and source target/services/azurite.env");
        return;
    };
    let run = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let container = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sas = account_sas();
    let provider = Arc::new(
        BlobLeaseProvider::builder()
            .sas_url(format!("{url}?{sas}"))
            .container(&container)
            .renew_concurrency(32)
            .build()
            .await
            .unwrap(),
    );
    let raw = Arc::new(raw_client(&url, &container, &sas));
    raw.create(None).await.unwrap();
    let mut md = Metadata::new();
    md.insert("host".into(), "bench-host".into());
    md.insert("version".into(), "0.1.0".into());

    let p = provider.clone();
    let md2 = md.clone();
    let ours: Op = Arc::new(move |name: String| {
        let p = p.clone();
        let md = md2.clone();
        Box::pin(async move {
            let g = p
                .try_acquire(&AcquireRequest::new(&name, D, md))
                .await
                .unwrap()
                .expect("free");
            p.release(&g).await.unwrap();
        })
    });
    let r = raw.clone();
    let same_calls: Op = Arc::new(move |name: String| {
        let r = r.clone();
        Box::pin(async move {
            let (blob, id) = raw_acquire(&r, &name).await;
            let props = blob.get_properties(None).await.unwrap();
            let old: u64 = props
                .metadata()
                .unwrap()
                .get("fencing_token")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut m = HashMap::new();
            m.insert("fencing_token".to_owned(), (old + 1).to_string());
            m.insert("acquired_at_us".to_owned(), "1796041622000000".to_owned());
            m.insert("duration_s".to_owned(), "60".to_owned());
            m.insert("m_host".to_owned(), "bench-host".to_owned());
            m.insert("m_version".to_owned(), "0.1.0".to_owned());
            let so = BlobClientSetMetadataOptions {
                lease_id: Some(id.clone()),
                ..Default::default()
            };
            blob.set_metadata(&m, Some(so)).await.unwrap();
            blob.release_lease(id, None).await.unwrap();
        })
    });
    let r = raw.clone();
    let bare: Op = Arc::new(move |name: String| {
        let r = r.clone();
        Box::pin(async move {
            let (blob, id) = raw_acquire(&r, &name).await;
            blob.release_lease(id, None).await.unwrap();
        })
    });

    let mut rows = Vec::new();
    // Two rounds in opposite orders, so neither side always runs on a fuller server.
    let order: [(&'static str, &Op); 3] = [
        ("leasing-blob provider", &ours),
        ("raw client, same calls", &same_calls),
        ("raw acquire+release only", &bare),
    ];
    for round in 0..2 {
        let tag = format!("{run}-{round}");
        let mut this = order.to_vec();
        if round == 1 {
            this.reverse();
        }
        for (name, op) in this {
            let mut row = measure(name, &tag, op.clone()).await;
            row.name = format!("{name} (round {})", round + 1);
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    println!("\n| acquire+release | p50 ms | p99 ms | ops/s ({TASKS} tasks) | p50 ms under load |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.2} |",
            r.name, r.p50, r.p99, r.ops, r.tp50
        );
    }

    // Renewal of 1 000 held leases.
    let grants: Vec<_> = futures::stream::iter((0..HELD).map(|i| {
        let p = provider.clone();
        let name = format!("{run}-held-{i}");
        async move {
            Arc::new(
                p.try_acquire(&AcquireRequest::new(&name, D, Metadata::new()))
                    .await
                    .unwrap()
                    .expect("free"),
            )
        }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let results = provider.renew_many(&grants).await;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(results.iter().all(Result::is_ok));
    }
    let raw_ids: Vec<(String, String)> = grants
        .iter()
        .map(|g| (format!("lease-{}", g.name), g.lease_id.clone()))
        .collect();
    let mut raw_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let n = futures::stream::iter(raw_ids.iter().map(|(b, id)| {
            let blob = raw.blob_client(b);
            let id = id.clone();
            async move { blob.renew_lease(id, None).await.is_ok() }
        }))
        .buffered(32)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
        raw_times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(n, HELD);
    }
    println!(
        "\nrenew {HELD} held leases (32 in flight): provider renew_many median {:.0} ms; raw renew_lease calls median {:.0} ms",
        pct(&mut times, 0.5),
        pct(&mut raw_times, 0.5)
    );
    for g in &grants {
        provider.release(g).await.unwrap();
    }
}
