//! Histories of lease operations, recorded by many clients on one clock, for the
//! [`checker`](crate::checker).
//!
//! Each client records, per operation, the instant it was invoked and the instant it
//! completed, on [`mono_ns`]: `CLOCK_MONOTONIC` in nanoseconds, which on Linux is one
//! system-wide clock, so records from different processes on one machine compare directly.
//! (`std::time::Instant` reads the same clock but does not expose its value; wall clocks are
//! useless here, since a client's may be off by design.) Under `faketime`, set
//! `FAKETIME_DONT_FAKE_MONOTONIC=1` so only the wall clock is skewed.
//!
//! A [`Recorder`] writes one JSON object per line, to a file (several processes may append
//! to their own files, merged by [`read_histories`]) or to memory.
//!
//! ```
//! use leasing_testkit::history::{mono_ns, Op, Record, Recorder};
//! let rec = Recorder::in_memory();
//! let invoke = mono_ns();
//! // … acquire "job-1" …
//! rec.record(Record::new("client-1", "job-1", invoke, mono_ns(), Op::Acquire { granted: true })
//!     .with_grant("lease-a", 7));
//! assert_eq!(rec.records().len(), 1);
//! ```

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// Nanoseconds on the system-wide monotonic clock (`CLOCK_MONOTONIC`): comparable across
/// the processes of one machine, not across machines, unaffected by wall-clock changes.
///
/// On a platform without it, falls back to nanoseconds since this process first asked
/// (then only records of one process compare).
pub fn mono_ns() -> u64 {
    #[cfg(unix)]
    {
        if let Ok(t) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
            let ns = i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec());
            return u64::try_from(ns).unwrap_or(0);
        }
    }
    process_ns()
}

/// Nanoseconds since this process first asked: the fallback of [`mono_ns`].
fn process_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What an operation was, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// An acquisition attempt; when granted, the record carries the lease id and token.
    Acquire {
        /// Whether the client got the lease.
        granted: bool,
    },
    /// The holder asked its lease whether it may act (`Lease::is_held`).
    Check {
        /// The answer.
        held: bool,
    },
    /// The holder wrote to the fenced resource with its token.
    Write {
        /// Whether the resource accepted the write; `None` if it could not be reached.
        accepted: Option<bool>,
    },
    /// The holder was told its lease is lost (it observed the `Lost` event / `lost()`); the
    /// record's complete instant is when it observed it.
    Lost,
    /// The holder released its lease (belief ends at the invoke instant).
    Release {
        /// Whether the release call succeeded.
        ok: bool,
    },
    /// A fault the chaos runner injected over `[invoke, complete]`; `client` names the
    /// target client or `*`, `name` a lease name or is empty.
    Fault {
        /// The fault's kind (`server_restart`, `network_cut`, `pause`, `kill`…).
        kind: String,
    },
    /// The client was stopped (SIGSTOP, or its runtime blocked) over `[invoke, complete]`.
    Paused,
    /// The client was killed at `invoke`; it records nothing afterwards.
    Killed,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The client (process or task) that did it.
    pub client: String,
    /// The lease name ("" when the operation concerns no name).
    pub name: String,
    /// When the operation was invoked, [`mono_ns`].
    pub invoke_ns: u64,
    /// When it completed, [`mono_ns`] (≥ `invoke_ns`).
    pub complete_ns: u64,
    /// The lease id of the grant concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// The fencing token of the grant concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// What it was.
    #[serde(flatten)]
    pub op: Op,
    /// Free text: an error, a loss reason, a fault's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Record {
    /// A record without grant or detail.
    pub fn new(
        client: impl Into<String>,
        name: impl Into<String>,
        invoke_ns: u64,
        complete_ns: u64,
        op: Op,
    ) -> Self {
        Self {
            client: client.into(),
            name: name.into(),
            invoke_ns,
            complete_ns: complete_ns.max(invoke_ns),
            lease_id: None,
            token: None,
            op,
            detail: None,
        }
    }

    /// Sets the grant (lease id and fencing token) the operation concerns.
    pub fn with_grant(mut self, lease_id: impl Into<String>, token: u64) -> Self {
        self.lease_id = Some(lease_id.into());
        self.token = Some(token);
        self
    }

    /// Sets the detail text.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

enum Sink {
    Memory(Vec<Record>),
    File(File, Vec<Record>),
}

/// Collects records from many tasks; clones share one sink.
///
/// Writing to a file, each record is one `write` of one line, so a process killed with
/// SIGKILL loses nothing it recorded.
#[derive(Clone)]
pub struct Recorder {
    sink: Arc<Mutex<Sink>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder that keeps records in memory.
    pub fn in_memory() -> Self {
        Self {
            sink: Arc::new(Mutex::new(Sink::Memory(Vec::new()))),
        }
    }

    /// A recorder appending JSON lines to `path` (created if missing), also keeping them
    /// in memory.
    ///
    /// # Errors
    /// If the file cannot be opened.
    pub fn to_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            sink: Arc::new(Mutex::new(Sink::File(file, Vec::new()))),
        })
    }

    /// Records one operation. A failed file write is reported on stderr, never a panic.
    pub fn record(&self, record: Record) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *sink {
            Sink::Memory(v) => v.push(record),
            Sink::File(f, v) => {
                match serde_json::to_string(&record) {
                    Ok(mut line) => {
                        line.push('\n');
                        if let Err(e) = f.write_all(line.as_bytes()) {
                            eprintln!("history: cannot write a record: {e}");
                        }
                    }
                    Err(e) => eprintln!("history: cannot encode a record: {e}"),
                }
                v.push(record);
            }
        }
    }

    /// Every record so far, in the order recorded.
    pub fn records(&self) -> Vec<Record> {
        match &*self.sink.lock().unwrap_or_else(PoisonError::into_inner) {
            Sink::Memory(v) | Sink::File(_, v) => v.clone(),
        }
    }
}

/// Reads JSON-lines histories (one file per process, say) into one list, sorted by invoke
/// instant. Blank lines are skipped; a torn last line (a process killed mid-write) is
/// skipped and counted.
///
/// # Errors
/// If a file cannot be read, or a line other than a file's last is not a record.
pub fn read_histories<P: AsRef<Path>>(
    paths: impl IntoIterator<Item = P>,
) -> std::io::Result<(Vec<Record>, usize)> {
    let mut out = Vec::new();
    let mut torn = 0;
    for path in paths {
        let path = path.as_ref();
        let lines: Vec<String> = BufReader::new(File::open(path)?)
            .lines()
            .collect::<Result<_, _>>()?;
        let last = lines.len().saturating_sub(1);
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) => out.push(r),
                Err(_) if i == last => torn += 1,
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}:{}: {e}", path.display(), i + 1),
                    ))
                }
            }
        }
    }
    out.sort_by_key(|r| (r.invoke_ns, r.complete_ns));
    Ok((out, torn))
}

/// Writes records as JSON lines to `path` (replacing it).
///
/// # Errors
/// If the file cannot be written.
pub fn write_history(path: impl AsRef<Path>, records: &[Record]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(File::create(path)?);
    for r in records {
        serde_json::to_writer(&mut f, r).map_err(std::io::Error::other)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_clock_starts_at_the_first_call_and_moves_on() {
        let first = process_ns();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = process_ns();
        assert!(first < 1_000_000_000, "{first} ns since the first call");
        assert!(second >= first + 5_000_000, "{first} then {second}");
    }
}
