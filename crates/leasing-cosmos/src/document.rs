//! The lease document and the lease name → document id mapping.

use leasing_abstractions::Metadata;
use serde::{Deserialize, Serialize};

/// Characters a Cosmos DB id may not hold, plus `%`, our escape character.
const ESCAPED: [char; 5] = ['%', '/', '\\', '?', '#'];

/// The document id of a lease name: the name with `%`, `/`, `\`, `?` and `#` written as
/// `%25`, `%2F`, `%5C`, `%3F`, `%23`.
///
/// Injective (two names never share an id) and reversible by [`name_of_id`]. A valid
/// lease name (≤ 256 characters) gives an id of at most 768 bytes, under Cosmos DB's
/// 1,023-byte id limit.
pub fn document_id(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if ESCAPED.contains(&c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The lease name of a document id made by [`document_id`]; `None` if `id` is not one.
pub fn name_of_id(id: &str) -> Option<String> {
    let mut out = String::with_capacity(id.len());
    let mut chars = id.chars();
    while let Some(c) = chars.next() {
        if ESCAPED[1..].contains(&c) {
            return None;
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let hex: String = chars.by_ref().take(2).collect();
        let decoded = u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)?;
        if hex.len() != 2 || !ESCAPED.contains(&decoded) || hex != format!("{:02X}", decoded as u32)
        {
            return None;
        }
        out.push(decoded);
    }
    Some(out)
}

/// Held or free (released, broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Held,
    Free,
}

/// One document per lease name. See `docs/providers/cosmos.md` for the layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeaseDocument {
    pub(crate) id: String,
    pub(crate) partition_key: String,
    pub(crate) lease_name: String,
    pub(crate) lease_id: String,
    /// `None` only in a document never rewritten since its creation: the token is then
    /// `_ts × 1 000 000` (the service clock at creation, in µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fencing_token: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<String>,
    /// Service time of the acquiring write, ms since the epoch; `None` until the first
    /// rewrite (then `_ts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) acquired_at: Option<i64>,
    /// Informational only (the writer's wall clock + duration, ms); decisions use `_ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<i64>,
    /// Lease duration in ms.
    pub(crate) duration: u64,
    #[serde(default)]
    pub(crate) metadata: Metadata,
    /// Per-document TTL in seconds (Cosmos DB deletes the document that long after its
    /// last write when the container has TTL on).
    pub(crate) ttl: i64,
    pub(crate) state: State,
    /// Service time of the last write, in whole seconds (set by the service).
    #[serde(default, rename = "_ts", skip_serializing)]
    pub(crate) ts: i64,
    /// The document's ETag (set by the service).
    #[serde(default, rename = "_etag", skip_serializing)]
    pub(crate) etag: Option<String>,
}

impl LeaseDocument {
    /// The fencing token of the current (or last) grant.
    pub(crate) fn token(&self) -> u64 {
        self.fencing_token.unwrap_or_else(|| {
            u64::try_from(self.ts)
                .unwrap_or(0)
                .saturating_mul(1_000_000)
        })
    }

    /// Service time of the acquiring write, ms.
    pub(crate) fn acquired_ms(&self) -> i64 {
        self.acquired_at.unwrap_or(self.ts.saturating_mul(1000))
    }

    /// The latest service time (ms) at which the lease may still be held: the last write
    /// happened before `_ts + 1` s (`_ts` is truncated to the second), so it expires by
    /// `(_ts + 1) s + duration`.
    pub(crate) fn expiry_ms(&self) -> i64 {
        self.ts
            .saturating_add(1)
            .saturating_mul(1000)
            .saturating_add(i64::try_from(self.duration).unwrap_or(i64::MAX))
    }

    /// Whether the lease is held at service time `now_ms`.
    pub(crate) fn held_at(&self, now_ms: i64) -> bool {
        self.state == State::Held && now_ms < self.expiry_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_escape_what_cosmos_forbids_and_round_trip() {
        for name in [
            "plain",
            "a/b",
            "100%",
            "%2F",
            "a\\b?c#d",
            "env:region::svc:res%3A1",
            "~/.:@+=_-",
        ] {
            let id = document_id(name);
            assert!(!id.contains(['/', '\\', '?', '#']), "{id}");
            assert_eq!(name_of_id(&id).as_deref(), Some(name), "{name} → {id}");
        }
        assert_eq!(document_id("a/b%c"), "a%2Fb%25c");
    }

    #[test]
    fn different_names_never_share_an_id() {
        let names = ["a/b", "a%2Fb", "a%252Fb", "a%b", "a%25b", "a"];
        let mut ids: Vec<String> = names.iter().map(|n| document_id(n)).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), names.len());
        let longest = document_id(&"/".repeat(256));
        assert_eq!(longest.len(), 768);
    }

    #[test]
    fn ids_not_made_by_the_mapping_are_refused() {
        for id in ["a%2", "a%zz", "a%41", "a%2f", "a/b", "x%", "%E9"] {
            assert_eq!(name_of_id(id), None, "{id}");
        }
    }

    fn doc(ts: i64, duration: u64, state: State) -> LeaseDocument {
        LeaseDocument {
            id: "n".into(),
            partition_key: "n".into(),
            lease_name: "n".into(),
            lease_id: "l".into(),
            fencing_token: None,
            owner: None,
            acquired_at: None,
            expires_at: None,
            duration,
            metadata: Metadata::new(),
            ttl: 60,
            state,
            ts,
            etag: None,
        }
    }

    #[test]
    fn expiry_is_decided_on_the_service_clock_with_a_second_of_slack() {
        let d = doc(1_000, 5_000, State::Held);
        // Written somewhere in [1000 s, 1001 s): held until 1006 s at the earliest read.
        assert!(d.held_at(1_005_999));
        assert!(!d.held_at(1_006_000));
        assert!(!doc(1_000, 5_000, State::Free).held_at(0));
        assert_eq!(d.token(), 1_000_000_000);
        assert_eq!(d.acquired_ms(), 1_000_000);
        let mut e = d.clone();
        e.fencing_token = Some(7);
        e.acquired_at = Some(5);
        assert_eq!((e.token(), e.acquired_ms()), (7, 5));
        assert_eq!(doc(-5, 0, State::Held).token(), 0);
        assert_eq!(doc(i64::MAX, u64::MAX, State::Held).expiry_ms(), i64::MAX);
    }

    #[test]
    fn service_fields_are_read_but_never_written() {
        let mut d = doc(42, 1000, State::Held);
        d.etag = Some("\"e\"".into());
        let json = serde_json::to_value(&d).expect("serialize");
        assert!(json.get("_ts").is_none());
        assert!(json.get("_etag").is_none());
        assert_eq!(json["state"], "held");
        assert_eq!(json["partitionKey"], "n");
        let back: LeaseDocument = serde_json::from_value(serde_json::json!({
            "id": "n", "partitionKey": "n", "leaseName": "n", "leaseId": "l", "duration": 1000,
            "ttl": 60, "state": "free", "_ts": 42, "_etag": "\"e\"", "_rid": "x"
        }))
        .expect("deserialize");
        assert_eq!(
            (back.ts, back.etag.as_deref(), back.state),
            (42, Some("\"e\""), State::Free)
        );
    }
}
