//! Output for people (aligned tables, short durations) and for programs (stable JSON).

use distributed_leasing::{LeaseExpiry, LeaseInfo};
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// A duration as people read it: `850ms`, `42s`, `3m 5s`, `2h 10m`, `3d 4h`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => two(s / 60, "m", s % 60, "s"),
        3600..=86_399 => two(s / 3600, "h", s % 3600 / 60, "m"),
        _ => two(s / 86_400, "d", s % 86_400 / 3600, "h"),
    }
}

fn two(a: u64, ua: &str, b: u64, ub: &str) -> String {
    if b == 0 {
        format!("{a}{ua}")
    } else {
        format!("{a}{ua} {b}{ub}")
    }
}

/// RFC 3339 (UTC, milliseconds).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// One lease as `status --json` and `list --json` print it. Fields (stable):
/// `name`, `lease_id` (null when the backend does not say), `fencing_token`,
/// `owner` (the `owner` metadata entry, if any), `metadata` (object), `acquired_at`
/// (RFC 3339), `expires_at` (RFC 3339, or null when unknown or never), `expiry`
/// (`"at"`, `"never"` or `"unknown"`), `age_ms`, `remaining_ms` (null unless `expiry` is
/// `"at"`; 0 when past).
#[derive(Debug, Serialize)]
pub(crate) struct LeaseJson {
    name: String,
    lease_id: Option<String>,
    fencing_token: u64,
    owner: Option<String>,
    metadata: std::collections::BTreeMap<String, String>,
    acquired_at: String,
    expires_at: Option<String>,
    expiry: &'static str,
    age_ms: u64,
    remaining_ms: Option<u64>,
}

/// The metadata entry that names the holder, if any.
fn owner(info: &LeaseInfo) -> Option<String> {
    ["owner", "holder", "host", "hostname"]
        .iter()
        .find_map(|k| info.metadata.get(*k).cloned())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LeaseJson {
    pub(crate) fn new(info: &LeaseInfo, now: SystemTime) -> Self {
        let (expires_at, expiry, remaining_ms) = match info.expires_at {
            LeaseExpiry::At(t) => (
                Some(rfc3339(t)),
                "at",
                Some(millis(t.duration_since(now).unwrap_or_default())),
            ),
            LeaseExpiry::Never => (None, "never", None),
            _ => (None, "unknown", None),
        };
        Self {
            name: info.name.clone(),
            lease_id: info.lease_id.clone(),
            fencing_token: info.fencing_token,
            owner: owner(info),
            metadata: info
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            acquired_at: rfc3339(info.acquired_at),
            expires_at,
            expiry,
            age_ms: millis(now.duration_since(info.acquired_at).unwrap_or_default()),
            remaining_ms,
        }
    }
}

/// Time left, for people: `12s`, `expired`, `never`, `unknown (Azure Blob does not say)`.
pub(crate) fn time_left(info: &LeaseInfo, now: SystemTime) -> String {
    match info.expires_at {
        LeaseExpiry::At(t) => match t.duration_since(now) {
            Ok(d) => human(d),
            Err(_) => "expired".into(),
        },
        LeaseExpiry::Never => "never (infinite lease)".into(),
        _ => "unknown (the backend does not report it)".into(),
    }
}

/// The `status` text of a held lease.
pub(crate) fn status_text(info: &LeaseInfo, now: SystemTime) -> String {
    let mut out = format!("{}: held\n", info.name);
    let mut row = |k: &str, v: String| out.push_str(&format!("  {k:<14}{v}\n"));
    row("holder", owner(info).unwrap_or_else(|| "-".into()));
    row("fencing token", info.fencing_token.to_string());
    row(
        "lease id",
        info.lease_id.clone().unwrap_or_else(|| "-".into()),
    );
    row(
        "acquired at",
        format!(
            "{} ({} ago)",
            rfc3339(info.acquired_at),
            human(now.duration_since(info.acquired_at).unwrap_or_default())
        ),
    );
    row(
        "expires at",
        info.expires_at.at().map_or_else(|| "-".into(), rfc3339),
    );
    row("time left", time_left(info, now));
    for (k, v) in &info.metadata {
        row(&format!("meta {k}"), v.clone());
    }
    out
}

/// The `list` table: name, holder, token, age, time left; columns aligned.
pub(crate) fn table(leases: &[LeaseInfo], now: SystemTime) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "HOLDER".into(),
        "TOKEN".into(),
        "AGE".into(),
        "TIME LEFT".into(),
    ]];
    for l in leases {
        rows.push([
            l.name.clone(),
            owner(l).unwrap_or_else(|| "-".into()),
            l.fencing_token.to_string(),
            human(now.duration_since(l.acquired_at).unwrap_or_default()),
            match l.expires_at {
                LeaseExpiry::At(_) => time_left(l, now),
                LeaseExpiry::Never => "never".into(),
                _ => "unknown".into(),
            },
        ]);
    }
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use distributed_leasing::Metadata;

    #[test]
    fn durations_read_like_people_write_them() {
        let d = Duration::from_secs;
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(d(42)), "42s");
        assert_eq!(human(d(185)), "3m 5s");
        assert_eq!(human(d(120)), "2m");
        assert_eq!(human(d(7800)), "2h 10m");
        assert_eq!(human(d(3 * 86_400 + 4 * 3600)), "3d 4h");
    }

    fn info(expiry: LeaseExpiry) -> (LeaseInfo, SystemTime) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut md = Metadata::new();
        md.insert("owner".into(), "worker-1".into());
        (
            LeaseInfo::new(
                "job",
                Some("id-1".into()),
                7,
                now - Duration::from_secs(5),
                expiry,
                md,
            ),
            now,
        )
    }

    #[test]
    fn json_has_the_documented_fields() {
        let (i, now) = info(LeaseExpiry::At(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_012),
        ));
        let v = serde_json::to_value(LeaseJson::new(&i, now)).unwrap_or_default();
        assert_eq!(v["name"], "job");
        assert_eq!(v["owner"], "worker-1");
        assert_eq!(v["fencing_token"], 7);
        assert_eq!(v["expiry"], "at");
        assert_eq!(v["remaining_ms"], 12_000);
        assert_eq!(v["age_ms"], 5_000);
        assert_eq!(v["acquired_at"], "2023-11-14T22:13:15.000Z");
        let (i, now) = info(LeaseExpiry::Unknown);
        let v = serde_json::to_value(LeaseJson::new(&i, now)).unwrap_or_default();
        assert_eq!(v["expiry"], "unknown");
        assert!(v["expires_at"].is_null(), "{v}");
        assert!(v["remaining_ms"].is_null(), "{v}");
        let (i, now) = info(LeaseExpiry::Never);
        let v = serde_json::to_value(LeaseJson::new(&i, now)).unwrap_or_default();
        assert_eq!(v["expiry"], "never");
    }

    #[test]
    fn text_and_table() {
        let (i, now) = info(LeaseExpiry::At(now_plus(12)));
        let s = status_text(&i, now);
        assert!(s.contains("holder        worker-1"), "{s}");
        assert!(s.contains("time left     12s"), "{s}");
        assert!(s.contains("(5s ago)"), "{s}");
        let (u, _) = info(LeaseExpiry::Unknown);
        assert!(status_text(&u, now).contains("unknown (the backend"));
        let (n, _) = info(LeaseExpiry::Never);
        assert!(time_left(&n, now).starts_with("never"));
        let (e, _) = info(LeaseExpiry::At(now - Duration::from_secs(1)));
        assert_eq!(time_left(&e, now), "expired");
        let t = table(&[i, u, n], now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAME  HOLDER    TOKEN  AGE  TIME LEFT");
        assert_eq!(lines[1], "job   worker-1  7      5s   12s");
        assert_eq!(lines[2], "job   worker-1  7      5s   unknown");
        assert_eq!(lines[3], "job   worker-1  7      5s   never");
    }

    fn now_plus(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }
}
