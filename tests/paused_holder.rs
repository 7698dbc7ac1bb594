#![allow(clippy::unwrap_used, missing_docs)]
//! A holder process stopped with SIGSTOP for longer than its lease, against a real
//! redis-server: when it resumes, its first question "do I hold it?" must be answered
//! "no", although its renewal engine has not run since (issue 6.1: before the fix, 6 of
//! 9 trials on a current-thread runtime saw `is_held() == true` after resuming).
//!
//! Needs `LEASING_REDIS_URL` (`scripts/redis-up.sh`, then
//! `source target/services/redis.env`).

use distributed_leasing::redis::RedisLeaseProvider;
use distributed_leasing::{LeaseManager, LeaseOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_VAR: &str = "LEASING_PAUSED_HOLDER_NAME";
const LEASE: Duration = Duration::from_secs(1);

fn redis_url() -> Option<String> {
    match std::env::var("LEASING_REDIS_URL") {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("LEASING_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("LEASING_REDIS_URL is not set but LEASING_REQUIRE_SERVICES=1: run scripts/redis-up.sh and source target/services/redis.env")
        }
        _ => {
            eprintln!("SKIPPED: LEASING_REDIS_URL is not set; run scripts/redis-up.sh and source target/services/redis.env");
            None
        }
    }
}

async fn manager(url: &str) -> LeaseManager {
    let provider = RedisLeaseProvider::builder()
        .url(url)
        .build()
        .await
        .expect("redis provider");
    LeaseManager::new(
        Arc::new(provider),
        LeaseOptions::default()
            .with_default_lease_duration(LEASE)
            .with_acquire_timeout(Duration::from_secs(10)),
    )
    .expect("options")
}

/// The holder (run as a child process): acquires, prints its token, then asks
/// `is_held()` every 5 ms on a current-thread runtime; after a gap in its own clock (it
/// was stopped), it prints what the first question after the gap answered and exits.
#[test]
fn paused_holder_child() {
    let Ok(name) = std::env::var(CHILD_VAR) else {
        return; // only meaningful as the child of the test below
    };
    let url = std::env::var("LEASING_REDIS_URL").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = manager(&url).await;
        let lease = m.acquire(&name).await.unwrap();
        println!("ACQUIRED {}", lease.fencing_token());
        let mut last = Instant::now();
        loop {
            let now = Instant::now();
            // The first question after the gap, before anything else runs.
            let held = lease.is_held();
            let state = lease.state();
            if now - last > Duration::from_millis(500) {
                println!(
                    "RESUMED held={held} state={state:?} remaining={:?}",
                    lease.remaining_validity()
                );
                return;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_is_not_told_it_holds() {
    let Some(url) = redis_url() else { return };
    let exe = std::env::current_exe().unwrap();
    let contender = manager(&url).await;
    for trial in 0..3 {
        let name = format!("paused-holder-{}-{trial}", std::process::id());
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "paused_holder_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_VAR, &name)
            .env("LEASING_REDIS_URL", &url)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The child is killed if this test fails before it exits.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let token: u64 = loop {
            let line = lines.next().expect("child output").unwrap();
            // libtest may print "test paused_holder_child ... " on the same line.
            if let Some(t) = line.split("ACQUIRED ").nth(1) {
                break t.trim().parse().unwrap();
            }
        };
        // Let it renew a few times, then stop it for longer than its lease.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        // Meanwhile the lease expires on the server and someone else takes it.
        let thief = contender.acquire(&name).await.expect("the lease expired");
        assert!(thief.fencing_token() > token);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
        let report = loop {
            let line = lines.next().expect("child report").unwrap();
            if line.contains("RESUMED") {
                break line;
            }
        };
        assert!(child.wait().unwrap().success());
        println!("trial {trial}: {report}");
        assert!(
            report.contains("held=false") && report.contains("state=Lost"),
            "a resumed holder was told it holds while another holds the lease: {report}"
        );
        thief.release().await.unwrap();
    }
}
