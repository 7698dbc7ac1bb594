//! The checker on hand-written histories: a clean one passes, and each violation kind is
//! caught; plus the history files and the fenced resource.

use leasing_testkit::checker::{check, percentile, ViolationKind};
use leasing_testkit::fenced::{FencedClient, FencedResource, FencedServer};
use leasing_testkit::history::{mono_ns, read_histories, write_history, Op, Record, Recorder};

fn acq(client: &str, id: &str, token: u64, invoke: u64, complete: u64) -> Record {
    Record::new(
        client,
        "job",
        invoke,
        complete,
        Op::Acquire { granted: true },
    )
    .with_grant(id, token)
}
fn wait(client: &str, invoke: u64, complete: u64) -> Record {
    Record::new(
        client,
        "job",
        invoke,
        complete,
        Op::Acquire { granted: false },
    )
}
fn held(client: &str, id: &str, token: u64, at: u64, answer: bool) -> Record {
    Record::new(client, "job", at, at + 1, Op::Check { held: answer }).with_grant(id, token)
}
fn write(client: &str, id: &str, token: u64, at: u64, accepted: bool) -> Record {
    Record::new(
        client,
        "job",
        at,
        at + 2,
        Op::Write {
            accepted: Some(accepted),
        },
    )
    .with_grant(id, token)
}
fn lost(client: &str, id: &str, token: u64, at: u64) -> Record {
    Record::new(client, "job", at, at, Op::Lost).with_grant(id, token)
}
fn release(client: &str, id: &str, token: u64, at: u64) -> Record {
    Record::new(client, "job", at, at + 3, Op::Release { ok: true }).with_grant(id, token)
}

/// a holds, is told it lost the lease, then b takes over; c releases cleanly.
fn clean() -> Vec<Record> {
    vec![
        acq("a", "l1", 1, 0, 10),
        held("a", "l1", 1, 20, true),
        write("a", "l1", 1, 22, true),
        lost("a", "l1", 1, 50),
        held("a", "l1", 1, 55, false),
        acq("b", "l2", 2, 15, 60),
        held("b", "l2", 2, 61, true),
        write("b", "l2", 2, 63, true),
        release("b", "l2", 2, 70),
        acq("c", "l3", 3, 65, 80),
        held("c", "l3", 3, 81, true),
        release("c", "l3", 3, 90),
        Record::new(
            "*",
            "",
            30,
            40,
            Op::Fault {
                kind: "network_cut".into(),
            },
        ),
    ]
}

#[test]
fn a_clean_history_passes() {
    let report = check(&clean());
    assert!(report.is_clean(), "{report}");
    let s = &report.stats;
    assert_eq!(s.acquisitions, 3);
    assert_eq!(s.acquire_attempts, 3);
    assert_eq!(s.takeovers, 1);
    assert_eq!(s.takeovers_running, 1);
    assert_eq!(s.takeovers_told_in_time, 1);
    assert_eq!(s.told_in_time_percent(), 100.0);
    assert_eq!(s.faults.get("network_cut"), Some(&1));
    assert_eq!(s.writes, 2);
    assert_eq!(s.stale_writes, 0);
    assert_eq!(s.acquire_latency_ns, vec![10, 15, 45]);
    // b waited from 15; a was told at 50, b got it at 60; c waited from 65, b released at
    // 70, c got it at 80: the longest stretch with the name free and a waiter is 10.
    assert_eq!(s.longest_free_wait_ns, 10);
    let text = report.to_string();
    assert!(text.contains("violations 0"), "{text}");
    assert!(text.contains("network_cut 1"), "{text}");
}

#[test]
fn overlapping_beliefs_are_caught() {
    // a (resumed from a pause, say) is still told it holds after b was granted the name.
    let mut h = clean();
    h.retain(|r| !(r.client == "a" && r.invoke_ns >= 50));
    h.push(held("a", "l1", 1, 65, true));
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::Overlap), 1, "{report}");
    let v = &report.violations[0];
    assert_eq!(v.first.client, "a");
    assert_eq!(v.second.as_ref().map(|g| g.client.as_str()), Some("b"));
    assert_eq!(v.at_ns, 60);
    // And a was never told before b got it.
    assert_eq!(report.count(ViolationKind::LossNotTold), 1, "{report}");
}

#[test]
fn a_late_grant_is_not_an_overlap_but_a_grant_inside_a_belief_is() {
    // c's acquisition began at 17, it was stopped from 20 to 40 inside it, and learned of
    // its (by then expired) grant at 41, told at once that it does not hold it. b was
    // granted the name meanwhile (token above c's) and held it until 45.
    let h = vec![
        acq("c", "l1", 1, 17, 41),
        Record::new("c", "", 20, 40, Op::Paused),
        held("c", "l1", 1, 41, false),
        acq("b", "l2", 2, 18, 30),
        held("b", "l2", 2, 31, true),
        held("b", "l2", 2, 44, true),
        release("b", "l2", 2, 45),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.takeovers_stopped, 1);
    // A grant (never checked) acquired entirely while b certainly believed: an overlap.
    let mut h = h;
    h.push(acq("d", "l3", 3, 32, 33));
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::Overlap), 1, "{report}");
}

#[test]
fn tokens_that_go_backwards_or_repeat_are_caught() {
    let mut h = clean();
    for r in &mut h {
        if r.lease_id.as_deref() == Some("l3") {
            r.token = Some(1); // c got a's token again, after b's 2
        }
    }
    let report = check(&h);
    assert_eq!(
        report.count(ViolationKind::TokenNotIncreasing),
        1,
        "{report}"
    );
    assert_eq!(report.count(ViolationKind::TokenRepeated), 1, "{report}");
    // A token not above an acquisition still in flight is no violation (no order).
    let h = vec![acq("a", "l1", 5, 0, 10), acq("b", "l2", 4, 5, 20)];
    let report = check(&h);
    assert_eq!(
        report.count(ViolationKind::TokenNotIncreasing),
        0,
        "{report}"
    );
}

#[test]
fn acting_after_being_told_is_caught() {
    let mut h = clean();
    h.push(held("a", "l1", 1, 52, true)); // is_held() true after the Lost event
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::ActedAfterLoss), 1, "{report}");
    let mut h = clean();
    h.push(write("c", "l3", 3, 95, true)); // a write after its own release
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::ActedAfterLoss), 1, "{report}");
    assert!(report.violations[0].detail.contains("wrote"));
    let mut h = clean();
    h.push(write("a", "l1", 1, 57, false)); // a write after `held: false` at 55
    assert_eq!(check(&h).count(ViolationKind::ActedAfterLoss), 1);
    // A write decided on the check at 20 that lands after the asynchronous Lost notice
    // at 50 (but before the answer `false` at 55) is a race, not this violation.
    let mut h = clean();
    h.push(write("a", "l1", 1, 52, true));
    assert_eq!(check(&h).count(ViolationKind::ActedAfterLoss), 0);
}

#[test]
fn a_loss_told_too_late_is_caught() {
    let mut h = clean();
    for r in &mut h {
        if r.client == "a" && r.invoke_ns >= 50 {
            r.invoke_ns += 20; // told at 70, after b's grant at 60
            r.complete_ns += 20;
        }
    }
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::LossNotTold), 1, "{report}");
    assert_eq!(report.stats.takeovers_running, 1);
    assert_eq!(report.stats.told_in_time_percent(), 0.0);
    assert_eq!(report.count(ViolationKind::Overlap), 0, "{report}");
}

#[test]
fn stopped_and_killed_holders_are_excused_from_timely_notice() {
    let mut h: Vec<Record> = clean()
        .into_iter()
        .filter(|r| !(r.client == "a" && r.invoke_ns >= 50))
        .collect();
    // a stopped from 30 to 100 and told on resume.
    h.push(Record::new("a", "", 30, 100, Op::Paused));
    h.push(held("a", "l1", 1, 101, false));
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.takeovers_stopped, 1);
    assert_eq!(report.stats.takeovers_running, 0);
    // A stopped holder that is told it holds on resume overlaps with b and with c.
    h.push(held("a", "l1", 1, 102, true));
    assert_eq!(check(&h).count(ViolationKind::Overlap), 2);
    // Killed instead.
    let mut h: Vec<Record> = clean()
        .into_iter()
        .filter(|r| !(r.client == "a" && r.invoke_ns >= 50))
        .collect();
    h.push(Record::new("a", "", 30, 30, Op::Killed));
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.takeovers_killed, 1);
}

#[test]
fn fencing_saves_are_counted_and_a_broken_resource_is_caught() {
    let mut h = clean();
    // a writes at 62, after b's grant (60) and b's write (63 is later; use 65).
    h.push(write("a", "l1", 1, 65, false));
    let report = check(&h);
    // a had been told at 50, so this is also acting after the loss.
    assert_eq!(report.stats.stale_writes, 1);
    assert_eq!(report.stats.stale_writes_rejected, 1);
    // A stopped holder's late write: stale, rejected, no violation.
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        held("a", "l1", 1, 20, true),
        Record::new("a", "", 25, 200, Op::Paused),
        write("a", "l1", 1, 201, false),
        held("a", "l1", 1, 210, false),
        acq("b", "l2", 2, 15, 100),
        write("b", "l2", 2, 110, true),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.stale_writes_rejected, 1);
    // Had the resource accepted it, the resource is broken.
    let mut h = h;
    h[3] = write("a", "l1", 1, 201, true);
    let report = check(&h);
    assert_eq!(
        report.count(ViolationKind::StaleWriteAccepted),
        1,
        "{report}"
    );
}

#[test]
fn free_time_with_a_waiter_is_measured() {
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        held("a", "l1", 1, 20, true),
        Record::new("a", "", 25, 25, Op::Killed),
        wait("b", 15, 40),
        acq("b", "l2", 2, 40, 300),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    // a's last sign of life was its check completing at 21 (killed at 25).
    assert_eq!(report.stats.longest_free_wait_ns, 300 - 21);
    assert_eq!(report.stats.longest_free_wait_name, "job");
    assert_eq!(report.stats.takeovers_killed, 1);
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 50.0), 50);
    assert_eq!(percentile(&v, 99.0), 99);
    assert_eq!(percentile(&v, 100.0), 100);
    assert_eq!(percentile(&v, 0.0), 1);
    assert_eq!(percentile(&[], 50.0), 0);
}

#[test]
fn histories_round_trip_through_json_lines() {
    let dir = std::env::temp_dir().join(format!("leasing-history-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    let h = clean();
    write_history(&a, &h[..6]).unwrap();
    let rec = Recorder::to_file(&b).unwrap();
    for r in &h[6..] {
        rec.record(r.clone().with_detail("x"));
    }
    assert_eq!(rec.records().len(), h.len() - 6);
    // A torn last line (a process killed mid-write) is skipped and counted.
    std::fs::write(&a, std::fs::read_to_string(&a).unwrap() + "{\"client\":").unwrap();
    let (read, torn) = read_histories([&a, &b]).unwrap();
    assert_eq!(torn, 1);
    assert_eq!(read.len(), h.len());
    assert!(read.windows(2).all(|w| w[0].invoke_ns <= w[1].invoke_ns));
    assert!(check(&read).is_clean());
    // A bad line elsewhere is an error naming the file and line.
    std::fs::write(&a, "nope\n{}\n").unwrap();
    let e = read_histories([&a]).unwrap_err();
    assert!(e.to_string().contains("a.jsonl:1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_clock_is_monotonic() {
    let a = mono_ns();
    let b = mono_ns();
    assert!(b >= a && a > 0);
}

#[test]
fn the_fenced_resource_rejects_stale_tokens() {
    let r = FencedResource::new();
    assert_eq!(r.highest("x"), 0);
    assert_eq!(r.write("x", 3), Ok(()));
    assert_eq!(r.write("x", 3), Ok(()));
    assert_eq!(r.write("x", 2), Err(3));
    assert_eq!(r.write("y", 1), Ok(()));
    assert_eq!(r.highest("x"), 3);
}

#[tokio::test]
async fn the_fenced_server_serves_clients() {
    let server = FencedServer::start().await.unwrap();
    let mut c = FencedClient::new(server.addr());
    assert!(c.write("x", 2).await.unwrap());
    assert!(!c.write("x", 1).await.unwrap());
    assert!(c.write("x", 5).await.unwrap());
    assert_eq!(server.resource().highest("x"), 5);
    // A malformed request is answered with an error, not a crash.
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(b"W x notanumber\n").await.unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(&mut s)
        .read_line(&mut line)
        .await
        .unwrap();
    assert!(line.starts_with("ERR"), "{line}");
    // No server is an error.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = FencedClient::new(addr);
    assert!(c.write("x", 9).await.is_err());
}

#[test]
fn reports_print_a_summary_and_the_violations() {
    let empty = check(&[]);
    assert!(empty.is_clean());
    assert_eq!(empty.stats.told_in_time_percent(), 100.0);
    assert!(empty.to_string().contains("faults: none"), "{empty}");
    // 25 holders of one name, each told it holds at once: every pair overlaps.
    let mut h = Vec::new();
    for i in 0..25u64 {
        let (c, id) = (format!("c{i}"), format!("l{i}"));
        h.push(acq(&c, &id, i + 1, 0, 10));
        h.push(held(&c, &id, i + 1, 100, true));
    }
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::Overlap), 25 * 24 / 2);
    let text = report.to_string();
    let more = format!("… and {} more", report.violations.len() - 20);
    assert!(text.contains(&more), "{text}");
    let v = &report.violations[0];
    assert!(v.to_string().starts_with("overlap on \"job\": c"), "{v}");
    assert!(
        v.first.to_string().contains("#1(l0)") || v.to_string().contains("#"),
        "{v}"
    );
    let rec = Recorder::in_memory();
    rec.record(h[0].clone());
    assert_eq!(rec.records(), vec![h[0].clone()]);
    assert!(format!("{rec:?}").contains("Recorder"));
}
