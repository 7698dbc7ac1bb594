//! History files: what `read_histories` skips, counts and refuses, and the errors of the
//! writers.

use leasing_testkit::history::{read_histories, write_history, Op, Record, Recorder};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// A fresh file path in a fresh directory.
fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leasing-history-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir.join(name)
}

fn record(client: &str, invoke: u64) -> Record {
    Record::new(client, "job", invoke, invoke + 1, Op::Release { ok: true })
}

fn line(r: &Record) -> String {
    serde_json::to_string(r).expect("a record encodes")
}

/// One file read (one instantiation of `read_histories` for every case below).
fn read(path: &Path) -> std::io::Result<(Vec<Record>, usize)> {
    read_histories([path])
}

#[test]
fn blank_lines_are_skipped_and_a_torn_last_line_is_counted() {
    let path = temp_file("h.jsonl");
    let (a, b) = (record("a", 20), record("b", 10));
    let text = format!("\n{}\n   \n{}\n{{\"client\":\"c\",\"na", line(&a), line(&b));
    std::fs::write(&path, text).unwrap();
    let (records, torn) = read(&path).unwrap();
    assert_eq!(records, vec![b.clone(), a.clone()], "not sorted by invoke");
    assert_eq!(torn, 1);
    // Without the torn line nothing is counted; a blank last line is no torn line.
    std::fs::write(&path, format!("{}\n{}\n\n", line(&a), line(&b))).unwrap();
    assert_eq!(read(&path).unwrap(), (vec![b, a], 0));
}

#[test]
fn a_bad_line_before_the_last_is_an_error_naming_it() {
    let path = temp_file("bad.jsonl");
    let a = record("a", 1);
    std::fs::write(&path, format!("{}\n\n{{}}\n{}\n", line(&a), line(&a))).unwrap();
    let e = read(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(e.to_string().contains("bad.jsonl:3: "), "{e}");
}

#[test]
fn unreadable_files_are_errors() {
    let path = temp_file("missing.jsonl");
    assert_eq!(read(&path).unwrap_err().kind(), ErrorKind::NotFound);
    std::fs::write(&path, b"{\"client\":\"\xff\"}\n").unwrap();
    assert_eq!(read(&path).unwrap_err().kind(), ErrorKind::InvalidData);
}

#[test]
fn write_history_reports_what_it_cannot_write() {
    let path = temp_file("h.jsonl");
    let missing_dir = path.with_file_name("no-such-dir").join("h.jsonl");
    assert_eq!(
        write_history(&missing_dir, &[record("a", 1)])
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    write_history(&path, &[record("a", 1), record("b", 2)]).unwrap();
    assert_eq!(
        read(&path).unwrap(),
        (vec![record("a", 1), record("b", 2)], 0)
    );
}

/// `/dev/full` takes every open and refuses every write (ENOSPC).
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_error_for_write_history_and_a_warning_for_the_recorder() {
    // A record larger than the writer's buffer fails in the encoder, a small one at the
    // final flush.
    let big = record("a", 1).with_detail("x".repeat(64 * 1024));
    assert!(write_history("/dev/full", &[big]).is_err());
    assert!(write_history("/dev/full", &[record("a", 1)]).is_err());
    // The recorder keeps the record in memory and goes on.
    let rec = Recorder::to_file("/dev/full").unwrap();
    rec.record(record("a", 1));
    rec.record(record("b", 2));
    assert_eq!(rec.records(), vec![record("a", 1), record("b", 2)]);
}

#[test]
fn recorders_keep_what_they_record_and_files_get_it_too() {
    let memory = Recorder::in_memory();
    let path = temp_file("rec.jsonl");
    let file = Recorder::to_file(&path).unwrap();
    for r in [record("b", 2), record("a", 1)] {
        memory.record(r.clone());
        file.record(r);
    }
    let recorded = vec![record("b", 2), record("a", 1)];
    assert_eq!(memory.records(), recorded);
    assert_eq!(file.records(), recorded);
    // The file is read back sorted, and a second recorder appends to it.
    Recorder::to_file(&path).unwrap().record(record("c", 0));
    let (read_back, torn) = read(&path).unwrap();
    assert_eq!(torn, 0);
    assert_eq!(
        read_back,
        vec![record("c", 0), record("a", 1), record("b", 2)]
    );
}
