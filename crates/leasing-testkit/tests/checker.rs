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

// ---------------------------------------------------------------------------------------
// Pinning the checker down: each test below fails if one comparison, guard or counter of
// the checker changes (boundaries use equal instants).

use leasing_testkit::checker::{Report, Stats, Violation};

/// One millisecond, in nanoseconds: histories on this scale print readable details.
const MS: u64 = 1_000_000;

/// `r` on lease name `name` instead of "job".
fn on(name: &str, mut r: Record) -> Record {
    r.name = name.into();
    r
}
fn write_unreachable(client: &str, id: &str, token: u64, at: u64) -> Record {
    Record::new(client, "job", at, at + 2, Op::Write { accepted: None }).with_grant(id, token)
}
fn paused(client: &str, from: u64, to: u64) -> Record {
    Record::new(client, "", from, to, Op::Paused)
}
fn killed(client: &str, at: u64) -> Record {
    Record::new(client, "", at, at, Op::Killed)
}
/// `h` checked, and found clean.
fn clean_report(h: &[Record]) -> Report {
    let report = check(h);
    assert!(report.is_clean(), "{report}");
    report
}
/// The longest free wait of `report` and when it began, in ns.
fn free_wait(report: &Report) -> (u64, u64) {
    let s = &report.stats;
    (s.longest_free_wait_ns, s.longest_free_wait_at_ns)
}
/// The only violation of `kind`.
fn only(report: &Report, kind: ViolationKind) -> &Violation {
    let of_kind: Vec<&Violation> = report
        .violations
        .iter()
        .filter(|v| v.kind == kind)
        .collect();
    assert_eq!(of_kind.len(), 1, "one {kind:?} expected: {report}");
    of_kind[0]
}
fn clients(v: &Violation) -> (&str, Option<&str>) {
    (
        v.first.client.as_str(),
        v.second.as_ref().map(|g| g.client.as_str()),
    )
}

#[test]
fn a_report_with_a_violation_is_not_clean() {
    let mut h = clean();
    h.push(held("a", "l1", 1, 52, true));
    let report = check(&h);
    assert!(!report.is_clean(), "{report}");
    assert_eq!(report.violations.len(), 1, "{report}");
    assert_eq!(report.count(ViolationKind::ActedAfterLoss), 1);
    assert_eq!(report.count(ViolationKind::Overlap), 0);
    assert!(check(&clean()).is_clean());
}

#[test]
fn kinds_grants_violations_and_reports_print_exactly() {
    let labels: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(
        labels,
        [
            "overlap",
            "token_not_increasing",
            "token_repeated",
            "acted_after_loss",
            "loss_not_told",
            "stale_write_accepted"
        ]
    );
    // a is told 1 ms after b was granted the name.
    let h = vec![
        acq("a", "l1", 1, 0, 2 * MS),
        held("a", "l1", 1, 3 * MS, true),
        acq("b", "l2", 2, MS, 6 * MS),
        lost("a", "l1", 1, 7 * MS),
    ];
    let report = check(&h);
    assert_eq!(report.violations.len(), 1, "{report}");
    let v = &report.violations[0];
    assert_eq!(v.first.to_string(), "a#1(l1)");
    assert_eq!(
        v.to_string(),
        "loss_not_told on \"job\": a#1(l1) / b#2(l2) at 6000000 ns: \
         told 1.000 ms after the next grant"
    );
    let expected = "\
operations 4  acquisitions 2/2 attempts  checks 1  writes 0 (accepted 0, rejected 0)
faults: none
violations 1: overlap 0, token_not_increasing 0, token_repeated 0, acted_after_loss 0, loss_not_told 1, stale_write_accepted 0
takeovers 1: running holder 1 (told before the next grant 0 = 0.0 %), stopped 0, killed 0
stale writes 0 (rejected by fencing 0)
acquire latency p50 2.0 ms, p99 5.0 ms, max 5.0 ms; longest wait with the name free 2.0 ms (job)
  loss_not_told on \"job\": a#1(l1) / b#2(l2) at 6000000 ns: told 1.000 ms after the next grant
";
    assert_eq!(report.to_string(), expected);
    // A violation without a second grant prints none.
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        release("a", "l1", 1, MS),
        held("a", "l1", 1, 3 * MS + 500_000, true),
    ];
    let report = check(&h);
    assert_eq!(
        report.violations[0].to_string(),
        "acted_after_loss on \"job\": a#1(l1) at 3500000 ns: \
         was told it held 2.500 ms after it was told of the loss or released"
    );
}

/// `n` holders of one name, one after another, each releasing before the next is granted,
/// all with token 7: `n - 1` repeated tokens and nothing else.
fn repeated_tokens(n: u64) -> Vec<Record> {
    (0..n)
        .flat_map(|i| {
            let (c, id) = (format!("c{i}"), format!("l{i}"));
            [
                acq(&c, &id, 7, 10 * i, 10 * i + 1),
                release(&c, &id, 7, 10 * i + 5),
            ]
        })
        .collect()
}

#[test]
fn a_report_prints_twenty_violations_and_counts_the_rest() {
    let report = check(&repeated_tokens(21));
    assert_eq!(report.violations.len(), 20, "{report}");
    assert_eq!(report.count(ViolationKind::TokenRepeated), 20);
    let text = report.to_string();
    assert_eq!(text.lines().filter(|l| l.starts_with("  ")).count(), 20);
    assert!(!text.contains("more"), "{text}");
    let report = check(&repeated_tokens(22));
    let text = report.to_string();
    assert_eq!(text.lines().filter(|l| l.starts_with("  ")).count(), 21);
    assert!(text.ends_with("  … and 1 more\n"), "{text}");
}

#[test]
fn operations_checks_writes_and_faults_are_counted() {
    let fault = |kind: &str, at: u64| {
        Record::new(
            "*",
            "",
            at,
            at + 1,
            Op::Fault {
                kind: kind.to_owned(),
            },
        )
    };
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        wait("b", 5, 20),
        held("a", "l1", 1, 12, true),
        // A check that names no grant (the holder had none) still counts.
        Record::new("b", "job", 21, 22, Op::Check { held: false }),
        write("a", "l1", 1, 13, true),
        write("a", "l1", 1, 15, false),
        write_unreachable("a", "l1", 1, 16),
        lost("a", "l1", 1, 30),
        release("a", "l1", 1, 31),
        fault("server_restart", 2),
        fault("network_cut", 3),
        fault("server_restart", 4),
        paused("c", 1, 2),
        killed("c", 3),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    let s = &report.stats;
    assert_eq!(s.operations, 9);
    assert_eq!(s.acquire_attempts, 2);
    assert_eq!(s.acquisitions, 1);
    assert_eq!(s.acquire_latency_ns, vec![10]);
    assert_eq!(s.checks, 2);
    assert_eq!(s.writes, 3);
    assert_eq!(s.writes_accepted, 1);
    assert_eq!(s.writes_rejected, 1);
    assert_eq!(s.stale_writes, 0);
    let faults: Vec<(&str, u64)> = s.faults.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(faults, [("network_cut", 1), ("server_restart", 2)]);
}

#[test]
fn stats_compute_percentages_and_percentiles() {
    let s = Stats {
        takeovers_running: 3,
        takeovers_told_in_time: 2,
        acquire_latency_ns: vec![10, 20, 30, 40],
        ..Stats::default()
    };
    assert!(
        (s.told_in_time_percent() - 200.0 / 3.0).abs() < 1e-9,
        "{}",
        s.told_in_time_percent()
    );
    assert_eq!(s.acquire_latency_percentile(50.0), 20);
    assert_eq!(s.acquire_latency_percentile(75.0), 30);
    assert_eq!(s.acquire_latency_percentile(100.0), 40);
    assert_eq!(Stats::default().acquire_latency_percentile(50.0), 0);
    assert_eq!(Stats::default().told_in_time_percent(), 100.0);
}

#[test]
fn disjoint_certain_beliefs_are_no_overlap() {
    // a believed over [10, 20] and released at 30; b over [40, 50].
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        held("a", "l1", 1, 20, true),
        release("a", "l1", 1, 30),
        acq("b", "l2", 2, 35, 40),
        held("b", "l2", 2, 50, true),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.takeovers, 0);
}

#[test]
fn overlapping_certain_beliefs_are_measured_and_ordered_by_token() {
    // a believed over [10, 30] ms, b over [20, 40] ms.
    let h = |ta: u64, tb: u64| {
        vec![
            acq("a", "l1", ta, 0, 10 * MS),
            held("a", "l1", ta, 30 * MS, true),
            acq("b", "l2", tb, 5 * MS, 20 * MS),
            held("b", "l2", tb, 40 * MS, true),
        ]
    };
    let report = check(&h(1, 2));
    let v = only(&report, ViolationKind::Overlap);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 20 * MS);
    assert_eq!(v.detail, "both believed they held it, for up to 10.000 ms");
    assert!(!report.is_clean());
    // The lower token is named first, whichever acquisition completed first.
    let report = check(&h(2, 1));
    let v = only(&report, ViolationKind::Overlap);
    assert_eq!(clients(v), ("b", Some("a")));
    assert_eq!((v.first.token, v.at_ns), (1, 20 * MS));
}

#[test]
fn certain_beliefs_that_touch_at_one_instant_overlap() {
    // a's last `held: true` was invoked at 20, the instant b's acquisition completed: at
    // 20 both believed they held the name.
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        held("a", "l1", 1, 20, true),
        acq("b", "l2", 2, 15, 20),
        held("b", "l2", 2, 30, true),
    ];
    let report = check(&h);
    let v = only(&report, ViolationKind::Overlap);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 20);
    assert_eq!(v.detail, "both believed they held it, for up to 0.000 ms");
    // One instant later, no overlap.
    let mut h = h;
    h[1] = held("a", "l1", 1, 19, true);
    assert_eq!(check(&h).count(ViolationKind::Overlap), 0);
}

#[test]
fn a_grant_inside_a_certain_belief_overlaps_up_to_its_boundaries() {
    // a certainly believed over [10, 50] ms; b (never checked) was granted at some
    // instant of its acquisition.
    let h = |b_invoke: u64, b_complete: u64| {
        check(&[
            acq("a", "l1", 1, 0, 10 * MS),
            held("a", "l1", 1, 50 * MS, true),
            acq("b", "l2", 2, b_invoke, b_complete),
        ])
    };
    let report = h(10 * MS, 50 * MS);
    let v = only(&report, ViolationKind::Overlap);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 10 * MS);
    assert_eq!(v.detail, "both believed they held it, for up to 40.000 ms");
    // Begun before a's belief, or ended after it: b may have been granted outside it.
    assert_eq!(h(10 * MS - 1, 50 * MS).count(ViolationKind::Overlap), 0);
    assert_eq!(h(10 * MS, 50 * MS + 1).count(ViolationKind::Overlap), 0);
}

#[test]
fn an_unchecked_grant_completed_with_a_later_belief_is_judged_too() {
    // a (never checked) and b complete their acquisitions at one instant 10, a listed
    // first; b certainly believed over [10, 20]: a was granted inside b's belief.
    let h = vec![
        acq("a", "l1", 1, 10, 10),
        acq("b", "l2", 2, 10, 10),
        held("b", "l2", 2, 20, true),
    ];
    let report = check(&h);
    let v = only(&report, ViolationKind::Overlap);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 10);
    // An unchecked grant released before a later belief began: clean.
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        release("a", "l1", 1, 15),
        acq("b", "l2", 2, 20, 30),
        held("b", "l2", 2, 40, true),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn token_order_is_judged_only_between_ordered_acquisitions() {
    // b invoked at the instant a completed: not ordered, no violation.
    let h = vec![acq("a", "l1", 5, 0, 10), acq("b", "l2", 4, 10, 20)];
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::TokenNotIncreasing), 0);
    // One instant later it is.
    let h = vec![acq("a", "l1", 5, 0, 10), acq("b", "l2", 4, 11, 20)];
    let report = check(&h);
    let v = only(&report, ViolationKind::TokenNotIncreasing);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 20);
    assert_eq!(v.detail, "token 4 granted after token 5 had been");
    assert!(!report.is_clean());
}

#[test]
fn a_token_is_compared_with_the_highest_granted_before() {
    // 3 then 5 (concurrent acquisitions), then 4: below 5.
    let h = vec![
        acq("a", "l1", 3, 0, 10),
        acq("b", "l2", 5, 5, 20),
        acq("c", "l3", 4, 30, 40),
    ];
    let report = check(&h);
    let v = only(&report, ViolationKind::TokenNotIncreasing);
    assert_eq!(clients(v), ("b", Some("c")));
    assert_eq!((v.first.token, v.at_ns), (5, 40));
    // Two grants of 5: the first is named.
    let h = vec![
        acq("a", "l1", 5, 0, 10),
        acq("b", "l2", 5, 5, 20),
        acq("c", "l3", 4, 30, 40),
    ];
    let report = check(&h);
    let v = only(&report, ViolationKind::TokenNotIncreasing);
    assert_eq!(clients(v), ("a", Some("c")));
    let v = only(&report, ViolationKind::TokenRepeated);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 20);
    assert_eq!(v.detail, "token 5 granted twice");
    // An equal token granted later is a repeat, not a decrease.
    let h = vec![acq("a", "l1", 5, 0, 10), acq("b", "l2", 5, 20, 30)];
    let report = check(&h);
    assert_eq!(report.count(ViolationKind::TokenNotIncreasing), 0);
    assert_eq!(report.count(ViolationKind::TokenRepeated), 1);
}

/// a holds from 10, is told it holds at 20.
fn holder() -> Vec<Record> {
    vec![acq("a", "l1", 1, 0, 10), held("a", "l1", 1, 20, true)]
}

#[test]
fn a_check_at_the_instant_of_the_notice_is_not_after_it() {
    let mut h = holder();
    h.push(lost("a", "l1", 1, 50));
    h.push(held("a", "l1", 1, 50, true));
    assert!(check(&h).is_clean(), "{}", check(&h));
    h.push(held("a", "l1", 1, 51, true));
    let report = check(&h);
    let v = only(&report, ViolationKind::ActedAfterLoss);
    assert_eq!(clients(v), ("a", None));
    assert_eq!(v.at_ns, 51);
    // After a release, likewise.
    let mut h = holder();
    h.push(release("a", "l1", 1, 30));
    h.push(held("a", "l1", 1, 30, true));
    h.push(write("a", "l1", 1, 30, true));
    assert!(check(&h).is_clean(), "{}", check(&h));
}

#[test]
fn a_write_at_the_instant_of_the_answer_not_held_is_not_after_it() {
    // `held: false` answered at 51.
    let mut h = holder();
    h.push(held("a", "l1", 1, 50, false));
    h.push(write("a", "l1", 1, 51, true));
    assert!(check(&h).is_clean(), "{}", check(&h));
    h.push(write("a", "l1", 1, 52, false));
    let report = check(&h);
    let v = only(&report, ViolationKind::ActedAfterLoss);
    assert_eq!(v.at_ns, 52);
    assert!(v.detail.starts_with("wrote "), "{v}");
}

#[test]
fn the_earlier_of_a_late_check_and_a_late_write_is_reported() {
    // Released at 30 ms; then told it held and wrote, in either order, or at once.
    let h = |check_at: u64, write_at: u64| {
        let mut h = holder();
        h.push(release("a", "l1", 1, 30 * MS));
        h.push(held("a", "l1", 1, check_at, true));
        h.push(write("a", "l1", 1, write_at, true));
        check(&h)
    };
    let report = h(40 * MS, 45 * MS);
    let v = only(&report, ViolationKind::ActedAfterLoss);
    assert_eq!(v.at_ns, 40 * MS);
    assert_eq!(
        v.detail,
        "was told it held 10.000 ms after it was told of the loss or released"
    );
    let report = h(45 * MS, 40 * MS);
    let v = only(&report, ViolationKind::ActedAfterLoss);
    assert_eq!(v.at_ns, 40 * MS);
    assert_eq!(
        v.detail,
        "wrote 10.000 ms after it was told of the loss or released"
    );
    let report = h(40 * MS, 40 * MS);
    let v = only(&report, ViolationKind::ActedAfterLoss);
    assert_eq!(v.at_ns, 40 * MS);
    assert!(v.detail.starts_with("was told it held "), "{v}");
}

#[test]
fn the_end_of_a_belief_is_the_earlier_of_notice_and_release() {
    // Told at 50, released at 70, told it held at 60.
    let mut h = holder();
    h.push(lost("a", "l1", 1, 50 * MS));
    h.push(release("a", "l1", 1, 70 * MS));
    h.push(held("a", "l1", 1, 60 * MS, true));
    let v = only(&check(&h), ViolationKind::ActedAfterLoss).clone();
    assert_eq!(v.at_ns, 60 * MS);
    assert!(v.detail.contains(" 10.000 ms "), "{v}");
    // Released at 30, told at 50, told it held at 40.
    let mut h = holder();
    h.push(release("a", "l1", 1, 30 * MS));
    h.push(lost("a", "l1", 1, 50 * MS));
    h.push(held("a", "l1", 1, 40 * MS, true));
    let v = only(&check(&h), ViolationKind::ActedAfterLoss).clone();
    assert_eq!(v.at_ns, 40 * MS);
    assert!(v.detail.contains(" 10.000 ms "), "{v}");
}

/// a holds from 10 (told it holds at 20); b's acquisition completes at 60.
fn taken_over(extra: Vec<Record>) -> Report {
    let mut h = holder();
    h.push(acq("b", "l2", 2, 15, 60));
    h.extend(extra);
    check(&h)
}

#[test]
fn a_release_at_the_instant_of_the_next_grant_is_no_takeover() {
    let report = taken_over(vec![release("a", "l1", 1, 60)]);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.takeovers, 0);
    // One instant later, a lost it without being told.
    let report = taken_over(vec![release("a", "l1", 1, 61)]);
    assert_eq!(report.stats.takeovers, 1);
    assert_eq!(report.stats.takeovers_running, 1);
    let v = only(&report, ViolationKind::LossNotTold);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 60);
    assert_eq!(v.detail, "never told");
}

#[test]
fn a_notice_at_the_instant_of_the_next_grant_is_in_time() {
    let report = taken_over(vec![lost("a", "l1", 1, 60)]);
    assert!(report.is_clean(), "{report}");
    let s = &report.stats;
    assert_eq!(
        (s.takeovers, s.takeovers_running, s.takeovers_told_in_time),
        (1, 1, 1)
    );
    assert_eq!((s.takeovers_stopped, s.takeovers_killed), (0, 0));
    let report = taken_over(vec![lost("a", "l1", 1, 61)]);
    let s = &report.stats;
    assert_eq!(
        (s.takeovers, s.takeovers_running, s.takeovers_told_in_time),
        (1, 1, 0)
    );
    let v = only(&report, ViolationKind::LossNotTold);
    assert_eq!(v.detail, "told 0.000 ms after the next grant");
}

#[test]
fn a_kill_at_the_instant_of_the_next_grant_excuses() {
    let report = taken_over(vec![killed("a", 60)]);
    assert!(report.is_clean(), "{report}");
    let s = &report.stats;
    assert_eq!(
        (s.takeovers, s.takeovers_killed, s.takeovers_running),
        (1, 1, 0)
    );
    let report = taken_over(vec![killed("a", 61)]);
    assert_eq!(report.stats.takeovers_killed, 0);
    assert_eq!(report.count(ViolationKind::LossNotTold), 1, "{report}");
}

#[test]
fn only_a_pause_between_the_last_belief_and_the_next_grant_excuses() {
    // a last believed at 20 (its check's invoke); b was granted at 60.
    for (from, to, excused) in [
        (5, 19, false),
        (5, 20, true),
        (30, 40, true),
        (60, 70, true),
        (61, 70, false),
    ] {
        let report = taken_over(vec![paused("a", from, to)]);
        let s = &report.stats;
        let what = format!("pause {from}..{to}: {report}");
        assert_eq!(s.takeovers, 1, "{what}");
        if excused {
            assert!(report.is_clean(), "{what}");
            assert_eq!((s.takeovers_stopped, s.takeovers_running), (1, 0), "{what}");
        } else {
            assert_eq!(report.count(ViolationKind::LossNotTold), 1, "{what}");
            assert_eq!((s.takeovers_stopped, s.takeovers_running), (0, 1), "{what}");
        }
    }
    // A holder never told it holds last believed when it invoked its acquisition.
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        paused("a", 5, 6),
        acq("b", "l2", 2, 15, 60),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.takeovers_stopped, 1);
}

/// a holds from 10 (told it holds at 20), is stopped from 25 to 90 (so excused); b's
/// acquisition completes at 100.
fn superseded(extra: Vec<Record>) -> Report {
    let mut h = holder();
    h.push(paused("a", 25, 90));
    h.push(acq("b", "l2", 2, 15, 100));
    h.extend(extra);
    check(&h)
}

#[test]
fn a_write_is_stale_only_after_the_next_grant_completed() {
    let report = superseded(vec![write("a", "l1", 1, 100, true)]);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.stats.stale_writes, 0);
    // One instant later: stale; accepted, so not a save of fencing.
    let report = superseded(vec![write("a", "l1", 1, 101, true)]);
    assert!(report.is_clean(), "{report}");
    let s = &report.stats;
    assert_eq!((s.stale_writes, s.stale_writes_rejected), (1, 0));
    assert_eq!((s.writes, s.writes_accepted, s.writes_rejected), (1, 1, 0));
    // An unreachable resource saved nothing either.
    let report = superseded(vec![write_unreachable("a", "l1", 1, 101)]);
    let s = &report.stats;
    assert_eq!((s.stale_writes, s.stale_writes_rejected), (1, 0));
    assert_eq!((s.writes, s.writes_accepted, s.writes_rejected), (1, 0, 0));
    // Two rejected stale writes: two saves.
    let report = superseded(vec![
        write("a", "l1", 1, 101, false),
        write("a", "l1", 1, 110, false),
    ]);
    let s = &report.stats;
    assert_eq!((s.stale_writes, s.stale_writes_rejected), (2, 2));
}

#[test]
fn only_accepted_writes_can_show_a_broken_resource() {
    // b's write did not reach the resource, a's later stale one was rejected: fine.
    let report = superseded(vec![
        write_unreachable("b", "l2", 2, 110),
        write("a", "l1", 1, 120, false),
    ]);
    assert!(report.is_clean(), "{report}");
    // b's write was accepted, completing at 112; a's accepted write invoked at that
    // instant is not ordered after it.
    let report = superseded(vec![
        write("b", "l2", 2, 110, true),
        write("a", "l1", 1, 112, true),
    ]);
    assert!(report.is_clean(), "{report}");
    // One instant later it is.
    let report = superseded(vec![
        write("b", "l2", 2, 110, true),
        write("a", "l1", 1, 113, true),
    ]);
    let v = only(&report, ViolationKind::StaleWriteAccepted);
    assert_eq!(clients(v), ("a", Some("b")));
    assert_eq!(v.at_ns, 113);
    assert_eq!(v.detail, "accepted token 1 after token 2");
    assert!(!report.is_clean());
}

#[test]
fn an_accepted_write_is_compared_with_the_highest_token_accepted_before() {
    // Tokens 3 and 5 (acquired concurrently, so in no order) write, then 4 does.
    let h = |t1: u64, t2: u64| {
        vec![
            acq("a", "l1", t1, 0, 10),
            acq("b", "l2", t2, 5, 30),
            acq("c", "l3", 4, 6, 40),
            write("a", "l1", t1, 50, true),
            write("b", "l2", t2, 53, true),
            write("c", "l3", 4, 60, true),
        ]
    };
    let report = check(&h(3, 5));
    let v = only(&report, ViolationKind::StaleWriteAccepted);
    assert_eq!(clients(v), ("c", Some("b")));
    assert_eq!(v.detail, "accepted token 4 after token 5");
    // Two grants of 5 (a broken lease, reported on its own): the first is named.
    let report = check(&h(5, 5));
    let v = only(&report, ViolationKind::StaleWriteAccepted);
    assert_eq!(clients(v), ("c", Some("a")));
    // One holder writing twice with its token is fine.
    let mut h = holder();
    h.push(write("a", "l1", 1, 21, true));
    h.push(write("a", "l1", 1, 30, true));
    assert!(check(&h).is_clean(), "{}", check(&h));
}

#[test]
fn free_time_counts_only_while_someone_waits() {
    // Three holders one after another, each waiting on a free name first (10, 50 and 20
    // ns), the name free with nobody waiting in between.
    let h = vec![
        acq("a", "l1", 1, 1000, 1010),
        release("a", "l1", 1, 1020),
        acq("b", "l2", 2, 1100, 1150),
        release("b", "l2", 2, 1160),
        acq("c", "l3", 3, 1300, 1320),
        release("c", "l3", 3, 1330),
    ];
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    let s = &report.stats;
    assert_eq!(s.longest_free_wait_ns, 50);
    assert_eq!(s.longest_free_wait_at_ns, 1100);
    assert_eq!(s.longest_free_wait_name, "job");
}

#[test]
fn equal_free_waits_keep_the_first_found() {
    // 10 ns on "a-job" from 1000, 10 ns on "b-job" from 500: names are judged in order.
    let h = vec![
        on("a-job", acq("a", "l1", 1, 1000, 1010)),
        on("b-job", acq("b", "l2", 1, 500, 510)),
    ];
    let s = check(&h).stats;
    assert_eq!(s.longest_free_wait_ns, 10);
    assert_eq!(s.longest_free_wait_name, "a-job");
    assert_eq!(s.longest_free_wait_at_ns, 1000);
}

#[test]
fn a_holder_stopped_after_its_last_belief_stopped_holding() {
    // a told it holds at 20, stopped at 20 (the same instant), told it does not hold at
    // 36; b waited from 15 and was granted at 60: the name was free from 20.
    let h = vec![
        acq("a", "l1", 1, 0, 2),
        held("a", "l1", 1, 20, true),
        paused("a", 20, 30),
        held("a", "l1", 1, 35, false),
        acq("b", "l2", 2, 15, 60),
    ];
    assert_eq!(free_wait(&clean_report(&h)), (40, 20));
}

#[test]
fn a_pause_before_a_later_belief_or_after_the_end_changes_no_hold() {
    // a stopped from 20 to 30, then told it holds at 40, released at 50; b waited from
    // 15 and was granted at 60: free from 50 only.
    let h = vec![
        acq("a", "l1", 1, 0, 2),
        paused("a", 20, 30),
        held("a", "l1", 1, 40, true),
        release("a", "l1", 1, 50),
        acq("b", "l2", 2, 15, 60),
    ];
    assert_eq!(free_wait(&clean_report(&h)), (10, 50));
    // a released at 30 and was stopped at 50, after: the hold still ended at 30. b
    // waited from 40.
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        held("a", "l1", 1, 20, true),
        release("a", "l1", 1, 30),
        paused("a", 50, 60),
        acq("b", "l2", 2, 40, 100),
    ];
    assert_eq!(free_wait(&clean_report(&h)), (60, 40));
}

#[test]
fn a_retry_at_the_instant_a_wait_ends_is_no_gap_but_an_instant_hold_is() {
    // c waits from 0 to 50 and at once again to 100; d acquires from 200 to 210.
    let h = vec![
        wait("c", 0, 50),
        wait("c", 50, 100),
        acq("d", "l1", 1, 200, 210),
    ];
    assert_eq!(free_wait(&check(&h)), (100, 0));
    // c waits from 0 to 100; d holds for the one instant 40 (released as granted).
    let h = vec![
        wait("c", 0, 100),
        acq("d", "l1", 1, 30, 40),
        release("d", "l1", 1, 40),
    ];
    assert_eq!(free_wait(&clean_report(&h)), (60, 40));
}

#[test]
fn a_write_is_stale_once_any_higher_token_was_granted() {
    // Token 3's acquisition completed at 50, before token 2's (at 100): a's write at 60
    // (token 1) came after the name had moved on.
    let h = vec![
        acq("a", "l1", 1, 0, 10),
        held("a", "l1", 1, 20, true),
        paused("a", 25, 55),
        acq("b", "l2", 2, 12, 100),
        acq("c", "l3", 3, 15, 50),
        write("a", "l1", 1, 60, false),
    ];
    let s = check(&h).stats;
    assert_eq!((s.stale_writes, s.stale_writes_rejected), (1, 1));
    // Before 50 it had not.
    let mut h = h;
    h[5] = write("a", "l1", 1, 50, false);
    let s = check(&h).stats;
    assert_eq!((s.stale_writes, s.stale_writes_rejected), (0, 0));
}

#[test]
fn records_of_an_unknown_grant_make_no_grant() {
    // Checks and writes naming a lease id no acquisition granted: operations, but no
    // grant, so nothing to judge (not a second holder overlapping a).
    let mut h = holder();
    h.push(held("x", "l9", 9, 15, true));
    h.push(held("x", "l9", 9, 30, true));
    h.push(write("x", "l9", 9, 31, true));
    let report = check(&h);
    assert!(report.is_clean(), "{report}");
    let s = &report.stats;
    assert_eq!((s.operations, s.acquisitions, s.takeovers), (5, 1, 0));
}

/// A writer with room for `room` bytes; it refuses whatever does not fit.
struct Cramped {
    room: usize,
    out: String,
}

impl std::fmt::Write for Cramped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if s.len() > self.room {
            return Err(std::fmt::Error);
        }
        self.room -= s.len();
        self.out.push_str(s);
        Ok(())
    }
}

#[test]
fn a_report_that_does_not_fit_its_writer_is_an_error() {
    // Seven holders told at once: 21 overlapping pairs (each with a second grant) and six
    // losses never told, more than a report prints.
    let mut h = Vec::new();
    for i in 0..7u64 {
        let (c, id) = (format!("c{i}"), format!("l{i}"));
        h.push(acq(&c, &id, i + 1, 0, 10));
        h.push(held(&c, &id, i + 1, 100, true));
    }
    let report = check(&h);
    assert_eq!(report.violations.len(), 27, "{report}");
    let full = report.to_string();
    assert!(full.ends_with("  … and 7 more\n"), "{full}");
    for room in 0..full.len() {
        let mut w = Cramped {
            room,
            out: String::new(),
        };
        let r = std::fmt::write(&mut w, format_args!("{report}"));
        assert!(r.is_err(), "{room} bytes of {} were enough", full.len());
        assert!(full.starts_with(&w.out), "{room}: {:?}", w.out);
    }
    let mut w = Cramped {
        room: full.len(),
        out: String::new(),
    };
    std::fmt::write(&mut w, format_args!("{report}")).unwrap();
    assert_eq!(w.out, full);
}

#[test]
fn a_write_after_an_answer_not_held_or_a_release_counts_from_the_earlier() {
    // Told "not held" (answer at 30 ms) and released (at 50 ms), in either order; wrote at
    // 40 ms, between the two.
    let h = |answer_at: u64, release_at: u64| {
        let mut h = holder();
        h.push(held("a", "l1", 1, answer_at - 1, false));
        h.push(release("a", "l1", 1, release_at));
        h.push(write("a", "l1", 1, 40 * MS, true));
        check(&h)
    };
    for (answer_at, release_at) in [(30 * MS, 50 * MS), (50 * MS, 30 * MS)] {
        let report = h(answer_at, release_at);
        let v = only(&report, ViolationKind::ActedAfterLoss);
        assert_eq!(v.at_ns, 40 * MS);
        assert_eq!(
            v.detail,
            "wrote 10.000 ms after it was told of the loss or released"
        );
    }
}
