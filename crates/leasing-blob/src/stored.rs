//! What a lease blob holds: the fencing token, acquisition time, duration and holder
//! metadata in blob metadata; the service's `Date`; lease durations as the service
//! takes them.

use crate::config::{MAX_DURATION, MIN_DURATION};
use crate::naming::{self, ACQUIRED_KEY, DURATION_KEY, TOKEN_KEY};
use azure_core::http::headers::HeaderName;
use leasing_abstractions::{LeaseDuration, LeaseError, LeaseExpiry, LeaseInfo, Metadata, Result};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn date_header() -> HeaderName {
    HeaderName::from_static("date")
}

/// The service's `Date` of a response, if it sent a readable one.
pub(crate) fn service_date(headers: &azure_core::http::headers::Headers) -> Option<SystemTime> {
    let s = headers.get_optional_str(&date_header())?;
    let t = azure_core::time::parse_rfc7231(s).ok()?;
    let nanos = t.unix_timestamp_nanos();
    u64::try_from(nanos / 1_000)
        .ok()
        .map(|us| UNIX_EPOCH + Duration::from_micros(us))
}

pub(crate) fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What a blob's metadata says about its lease.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Stored {
    pub(crate) token: u64,
    pub(crate) acquired_at: Option<SystemTime>,
    pub(crate) metadata: Metadata,
}

pub(crate) fn read_stored(raw: &HashMap<String, String>) -> Stored {
    let mut s = Stored::default();
    for (k, v) in raw {
        let key = k.to_ascii_lowercase();
        if key == TOKEN_KEY {
            s.token = v.parse().unwrap_or(0);
        } else if key == ACQUIRED_KEY {
            s.acquired_at = v
                .parse::<u64>()
                .ok()
                .map(|us| UNIX_EPOCH + Duration::from_micros(us));
        } else if let Some(user) = naming::decode_key(&key) {
            if let Some(value) = naming::decode_value(v) {
                s.metadata.insert(user, value);
            }
        }
    }
    s
}

pub(crate) fn write_stored(
    token: u64,
    acquired_at: SystemTime,
    duration: LeaseDuration,
    md: &Metadata,
) -> HashMap<String, String> {
    let mut out = HashMap::with_capacity(md.len() + 3);
    out.insert(TOKEN_KEY.to_owned(), token.to_string());
    out.insert(ACQUIRED_KEY.to_owned(), micros(acquired_at).to_string());
    out.insert(
        DURATION_KEY.to_owned(),
        match duration {
            LeaseDuration::Finite(d) => d.as_secs().to_string(),
            LeaseDuration::Infinite => "infinite".to_owned(),
        },
    );
    for (k, v) in md {
        out.insert(naming::encode_key(k), naming::encode_value(v));
    }
    out
}

/// Seconds for the service's `x-ms-lease-duration` (-1: infinite).
pub(crate) fn lease_seconds(d: LeaseDuration) -> Result<i32> {
    match d {
        LeaseDuration::Infinite => Ok(-1),
        LeaseDuration::Finite(d)
            if d >= MIN_DURATION && d <= MAX_DURATION && d.subsec_nanos() == 0 =>
        {
            Ok(i32::try_from(d.as_secs()).unwrap_or(60))
        }
        LeaseDuration::Finite(d) => Err(LeaseError::invalid_argument(
            "lease_duration",
            format!("{d:?}: blob leases are whole seconds from 15 to 60, or infinite"),
        )),
    }
}

pub(crate) fn info(name: &str, stored: Stored, infinite: bool) -> LeaseInfo {
    LeaseInfo::new(
        name,
        None,
        stored.token,
        stored.acquired_at.unwrap_or(UNIX_EPOCH),
        if infinite {
            LeaseExpiry::Never
        } else {
            LeaseExpiry::Unknown
        },
        stored.metadata,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_fields_round_trip() {
        let mut md = Metadata::new();
        md.insert("Owner".into(), "Zoë".into());
        md.insert("plain".into(), "x".into());
        let at = UNIX_EPOCH + Duration::from_micros(1_796_041_622_123_456);
        let raw = write_stored(42, at, LeaseDuration::Finite(MIN_DURATION), &md);
        assert_eq!(raw[DURATION_KEY], "15");
        let back = read_stored(&raw);
        assert_eq!(back.token, 42);
        assert_eq!(back.acquired_at, Some(at));
        assert_eq!(back.metadata, md);
        let raw = write_stored(1, at, LeaseDuration::Infinite, &Metadata::new());
        assert_eq!(raw[DURATION_KEY], "infinite");
        // Unreadable fields are ignored, not fatal; keys arrive in any case.
        let mut junk = HashMap::new();
        junk.insert("FENCING_TOKEN".to_owned(), "x".to_owned());
        junk.insert(ACQUIRED_KEY.to_owned(), "-1".to_owned());
        junk.insert("m_bad".to_owned(), "=?UTF-8?B?!!?=".to_owned());
        junk.insert("foreign".to_owned(), "v".to_owned());
        assert_eq!(read_stored(&junk), Stored::default());
    }

    #[test]
    fn lease_seconds_follow_the_service_rules() {
        assert_eq!(lease_seconds(LeaseDuration::Infinite).unwrap(), -1);
        assert_eq!(lease_seconds(MIN_DURATION.into()).unwrap(), 15);
        assert_eq!(lease_seconds(MAX_DURATION.into()).unwrap(), 60);
        for bad in [14_000, 61_000, 15_500] {
            let e = lease_seconds(Duration::from_millis(bad).into()).unwrap_err();
            assert_eq!(e.field(), Some("lease_duration"));
        }
    }

    #[test]
    fn service_dates_and_micros() {
        let mut h = azure_core::http::headers::Headers::new();
        assert_eq!(service_date(&h), None);
        h.insert("date", "not a date");
        assert_eq!(service_date(&h), None);
        h.insert("date", "Mon, 30 Nov 2026 12:00:00 GMT");
        let t = service_date(&h).unwrap();
        assert_eq!(micros(t), 1_796_040_000_000_000);
        assert_eq!(micros(UNIX_EPOCH - Duration::from_secs(1)), 0);
        h.insert("date", "Mon, 01 Jan 1900 00:00:00 GMT");
        assert_eq!(service_date(&h), None);
    }

    #[test]
    fn info_says_what_the_service_cannot_tell() {
        let i = info("n", Stored::default(), false);
        assert_eq!(i.expires_at, LeaseExpiry::Unknown);
        assert_eq!(i.lease_id, None);
        assert_eq!(i.acquired_at, UNIX_EPOCH);
        assert_eq!(
            info("n", Stored::default(), true).expires_at,
            LeaseExpiry::Never
        );
    }
}
