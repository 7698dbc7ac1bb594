//! Competing OS processes on one name: each grant is exclusive in time and the fencing
//! tokens rise with the grants' order.

mod common;

use leasing_abstractions::{AcquireRequest, LeaseProvider, Metadata};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CHILD: &str = "LEASING_BLOB_CHILD";
const PROCESSES: usize = 4;
const ROUNDS: usize = 6;

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

async fn contend(url: &str, container: &str, name: &str) {
    let p = common::key_provider(url, container);
    let req = AcquireRequest::new(name, Duration::from_secs(15), Metadata::new());
    for _ in 0..ROUNDS {
        let started = std::time::Instant::now();
        let g = loop {
            if let Some(g) = p.try_acquire(&req).await.expect("try_acquire") {
                break g;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "never acquired"
            );
            tokio::time::sleep(Duration::from_millis(15)).await;
        };
        let start = now_us();
        let info = p.inspect(name).await.expect("inspect").expect("held");
        assert_eq!(
            info.fencing_token, g.fencing_token,
            "inspect shows another holder"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let end = now_us();
        println!("GRANT {} {start} {end}", g.fencing_token);
        p.release(&g).await.expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_processes_never_share_a_lease() {
    if let Ok(spec) = std::env::var(CHILD) {
        let mut parts = spec.splitn(3, ' ');
        let (url, container, name) = (
            parts.next().expect("url"),
            parts.next().expect("container"),
            parts.next().expect("name"),
        );
        contend(url, container, name).await;
        return;
    }
    let Some(url) = common::azurite() else { return };
    let container = common::container("procs");
    let name = common::unique("procs");
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "competing_processes_never_share_a_lease",
                    "--nocapture",
                ])
                .env(CHILD, format!("{url} {container} {name}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn a contender")
        })
        .collect();
    let mut grants: Vec<(u64, u128, u128)> = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("contender output");
        assert!(out.status.success(), "a contender failed: {out:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(rest) = line.strip_prefix("GRANT ") else {
                continue;
            };
            let v: Vec<&str> = rest.split(' ').collect();
            grants.push((
                v[0].parse().expect("token"),
                v[1].parse().expect("start"),
                v[2].parse().expect("end"),
            ));
        }
    }
    assert_eq!(
        grants.len(),
        PROCESSES * ROUNDS,
        "every round got its grant"
    );
    grants.sort_by_key(|g| g.1);
    for w in grants.windows(2) {
        assert!(
            w[0].2 < w[1].1,
            "two processes held the lease at once: {:?} and {:?}",
            w[0],
            w[1]
        );
        assert!(
            w[0].0 < w[1].0,
            "tokens did not rise: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}
