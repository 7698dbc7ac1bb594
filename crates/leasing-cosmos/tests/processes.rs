//! Competing OS processes, and clock skew: processes whose wall clock is 30 s ahead or
//! behind (under `faketime`, monotonic clock left alone) neither steal a live lease nor
//! wait for a free or expired one — expiry is decided on the service's clock.
//!
//! The children are this test binary again, running the ignored `child_entry` test with
//! their role in the environment.

mod common;

use leasing_abstractions::{AcquireRequest, LeaseManager, LeaseOptions, LeaseProvider, Metadata};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROLE: &str = "LEASING_COSMOS_CHILD";

fn child(role: &str, db: &str, name: &str, dir: &Path, faketime: Option<&str>) -> Command {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = match faketime {
        Some(offset) => {
            let mut c = Command::new(common::service_env("LEASING_FAKETIME").expect("faketime"));
            c.arg("-f").arg(offset).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args([
        "child_entry",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env("CHILD_DB", db)
    .env("CHILD_NAME", name)
    .env("CHILD_DIR", dir)
    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// The `RESULT:` lines a child printed.
fn results(out: std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "child failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.find("RESULT:")
                .map(|i| l[i + "RESULT:".len()..].to_owned())
        })
        .collect()
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique(test));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn wall_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

#[test]
fn competing_processes_never_hold_at_once_and_tokens_rise() {
    let Some(_) = common::connection_string() else {
        return;
    };
    let db = common::unique("procs");
    let name = common::unique("contended");
    let dir = scratch("procs");
    let children: Vec<_> = (0..4)
        .map(|_| {
            child("contend", &db, &name, &dir, None)
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let mut acquisitions = 0;
    let mut winners = 0;
    for out in outs {
        let r = results(out);
        let n: usize = r
            .iter()
            .find_map(|l| l.strip_prefix("acquired "))
            .and_then(|n| n.parse().ok())
            .expect("a count");
        acquisitions += n;
        winners += usize::from(n > 0);
    }
    let violations: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("violation"))
        .collect();
    assert!(
        violations.is_empty(),
        "two processes held the lease at once"
    );
    let tokens: Vec<u64> = std::fs::read_to_string(dir.join("tokens"))
        .expect("tokens")
        .lines()
        .map(|l| l.parse().expect("token"))
        .collect();
    assert_eq!(tokens.len(), acquisitions);
    assert!(acquisitions >= 8, "only {acquisitions} acquisitions");
    assert!(winners >= 2, "only {winners} of 4 processes ever won");
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens did not rise in grant order: {tokens:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clocks_neither_steal_a_live_lease_nor_wait_for_a_free_one() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    if common::service_env("LEASING_FAKETIME").is_none() {
        return;
    }
    let db = common::unique("skew");
    let dir = scratch("skew");
    let p = common::provider(&cs, &db).await;
    let m = LeaseManager::new(
        Arc::new(p.clone()),
        LeaseOptions::default().with_default_lease_duration(Duration::from_secs(3)),
    )
    .expect("manager");

    // 1. A live lease (renewed by us) is not stolen by a process 30 s ahead.
    let live = common::unique("live");
    let lease = m.acquire(&live).await.expect("acquire");
    let before = wall_secs();
    let out = child("steal", &db, &live, &dir, Some("+30s"))
        .output()
        .expect("run the +30 s child");
    let r = results(out);
    let child_wall: i64 = r
        .iter()
        .find_map(|l| l.strip_prefix("wall "))
        .and_then(|v| v.parse().ok())
        .expect("wall");
    let offset = child_wall - before;
    assert!(
        (28..=40).contains(&offset),
        "faketime is not in effect (offset {offset} s)"
    );
    assert!(
        r.iter().any(|l| l == "never-acquired"),
        "the +30 s process stole a live lease: {r:?}"
    );
    assert!(lease.is_held());

    // 2. A released lease is taken at once by a process 30 s behind.
    lease.release().await.expect("release");
    let out = child("take", &db, &live, &dir, Some("-30s"))
        .output()
        .expect("run the -30 s child");
    let r = results(out);
    assert!(
        r.iter().any(|l| l == "taken-at-once"),
        "the -30 s process waited for a free lease: {r:?}"
    );

    // 3. An abandoned 2 s lease is taken by a process 30 s behind after ~2 s, not 32 s.
    let abandoned = common::unique("abandoned");
    let req = AcquireRequest::new(&abandoned, Duration::from_secs(2), Metadata::new());
    let g = p.try_acquire(&req).await.expect("acquire").expect("free");
    let out = child("expire", &db, &abandoned, &dir, Some("-30s"))
        .output()
        .expect("run the -30 s child");
    let r = results(out);
    let waited: u64 = r
        .iter()
        .find_map(|l| l.strip_prefix("expired-after-ms "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the -30 s process never got the abandoned lease: {r:?}"));
    assert!(waited < 10_000, "waited {waited} ms for a 2 s lease");
    let e = p
        .renew(&g)
        .await
        .expect_err("the abandoned grant was taken over");
    assert_eq!(e.kind(), leasing_abstractions::ErrorKind::Lost);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child side. Ignored: the parents above run it with `--ignored` and a role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the tests above"]
async fn child_entry() {
    let role = std::env::var(ROLE).expect("a child role");
    let cs = std::env::var("LEASING_COSMOS_CONNECTION_STRING").expect("connection string");
    let db = std::env::var("CHILD_DB").expect("db");
    let name = std::env::var("CHILD_NAME").expect("name");
    let dir = PathBuf::from(std::env::var("CHILD_DIR").expect("dir"));
    let p = common::provider(&cs, &db).await;
    println!("RESULT:wall {}", wall_secs());
    match role.as_str() {
        "contend" => contend(&p, &name, &dir).await,
        "steal" => {
            let req = AcquireRequest::new(&name, Duration::from_secs(3), Metadata::new());
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                if p.try_acquire(&req).await.expect("try_acquire").is_some() {
                    println!("RESULT:stolen");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!("RESULT:never-acquired");
        }
        "take" => {
            let req = AcquireRequest::new(&name, Duration::from_secs(3), Metadata::new());
            let got = p.try_acquire(&req).await.expect("try_acquire");
            println!(
                "RESULT:{}",
                if got.is_some() {
                    "taken-at-once"
                } else {
                    "held"
                }
            );
        }
        "expire" => {
            let req = AcquireRequest::new(&name, Duration::from_secs(3), Metadata::new());
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if p.try_acquire(&req).await.expect("try_acquire").is_some() {
                    println!("RESULT:expired-after-ms {}", started.elapsed().as_millis());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        other => panic!("unknown role {other}"),
    }
}

async fn contend(p: &leasing_cosmos::CosmosLeaseProvider, name: &str, dir: &Path) {
    let req = AcquireRequest::new(name, Duration::from_secs(5), Metadata::new());
    let until = Instant::now() + Duration::from_secs(3);
    let mut acquired = 0;
    while Instant::now() < until {
        if let Some(g) = p.try_acquire(&req).await.expect("try_acquire") {
            acquired += 1;
            let marker = dir.join("holder");
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&marker)
                .is_err()
            {
                std::fs::write(dir.join(format!("violation-{}", std::process::id())), b"x")
                    .expect("record the violation");
            }
            let mut tokens = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("tokens"))
                .expect("tokens");
            writeln!(tokens, "{}", g.fencing_token).expect("append");
            drop(tokens);
            tokio::time::sleep(Duration::from_millis(30)).await;
            std::fs::remove_file(&marker).expect("remove the marker");
            p.release(&g).await.expect("release");
        }
        tokio::time::sleep(Duration::from_millis(fastrand_ms())).await;
    }
    println!("RESULT:acquired {acquired}");
}

fn fastrand_ms() -> u64 {
    u64::from(std::process::id() % 7) + 5
}
