//! Serde forms (feature `serde`) of the types that are not plain derives: a
//! [`LeaseDuration`] is a human duration (`"30s"`, `"1m 30s"`, `"250ms"`) or `"infinite"`;
//! a [`LeaseExpiry`] is an RFC 3339 time, `"never"` or `"unknown"`; a limit such as the
//! acquire timeout (`Option<Duration>`, `None` = no limit) is a human duration or
//! `"infinite"` (`null` is read as `"infinite"` too).

use crate::contract::LeaseExpiry;
use crate::options::LeaseDuration;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::{SystemTime, UNIX_EPOCH};

const INFINITE: &str = "infinite";
const NEVER: &str = "never";
const UNKNOWN: &str = "unknown";

/// The last instant RFC 3339 can write (9999-12-31T23:59:59Z).
const MAX_RFC3339_SECS: u64 = 253_402_300_799;

/// A wall-clock time as RFC 3339; an error (not a panic) outside 1970–9999.
pub(crate) fn serialize_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= MAX_RFC3339_SECS => humantime_serde::serialize(t, s),
        _ => Err(serde::ser::Error::custom(format!(
            "{t:?} cannot be written as an RFC 3339 time (years 1970 to 9999)"
        ))),
    }
}

/// Reads what [`serialize_time`] writes.
pub(crate) fn deserialize_time<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    humantime_serde::deserialize(d)
}

impl Serialize for LeaseDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LeaseDuration::Finite(d) => humantime_serde::serialize(d, s),
            LeaseDuration::Infinite => s.serialize_str(INFINITE),
        }
    }
}

impl<'de> Deserialize<'de> for LeaseDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == INFINITE {
            return Ok(LeaseDuration::Infinite);
        }
        humantime_serde::re::humantime::parse_duration(&text)
            .map(LeaseDuration::Finite)
            .map_err(|e| {
                D::Error::custom(format!(
                    "invalid lease duration {text:?} ({e}): expected a duration such as \"30s\" or \"infinite\""
                ))
            })
    }
}

impl Serialize for LeaseExpiry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LeaseExpiry::At(t) => serialize_time(t, s),
            LeaseExpiry::Never => s.serialize_str(NEVER),
            LeaseExpiry::Unknown => s.serialize_str(UNKNOWN),
        }
    }
}

impl<'de> Deserialize<'de> for LeaseExpiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            NEVER => Ok(LeaseExpiry::Never),
            UNKNOWN => Ok(LeaseExpiry::Unknown),
            _ => humantime_serde::re::humantime::parse_rfc3339_weak(&text)
                .map(LeaseExpiry::At)
                .map_err(|e| {
                    D::Error::custom(format!(
                        "invalid expiry {text:?} ({e}): expected an RFC 3339 time, \"never\" or \"unknown\""
                    ))
                }),
        }
    }
}

/// An optional limit (`None` = no limit, written `"infinite"`), e.g. the acquire timeout:
/// the same words as a [`LeaseDuration`], so one config file spells "no limit" one way.
pub(crate) mod limit {
    use super::*;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => humantime_serde::serialize(d, s),
            None => s.serialize_str(INFINITE),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(match Option::<LeaseDuration>::deserialize(d)? {
            Some(LeaseDuration::Finite(d)) => Some(d),
            Some(LeaseDuration::Infinite) | None => None,
        })
    }
}
