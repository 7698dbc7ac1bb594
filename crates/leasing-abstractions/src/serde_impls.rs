//! Serde forms (feature `serde`) of the types that are not plain derives: a
//! [`LeaseDuration`] is a human duration (`"30s"`, `"1m 30s"`, `"250ms"`) or `"infinite"`;
//! a [`LeaseExpiry`] is an RFC 3339 time, `"never"` or `"unknown"`.

use crate::options::LeaseDuration;
use crate::provider::LeaseExpiry;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const INFINITE: &str = "infinite";
const NEVER: &str = "never";
const UNKNOWN: &str = "unknown";

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
            LeaseExpiry::At(t) => humantime_serde::serialize(t, s),
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
