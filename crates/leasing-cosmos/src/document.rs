//! The lease document and the lease name → document id mapping.

use leasing_abstractions::Metadata;
use serde::{Deserialize, Serialize};

/// Characters a Cosmos DB id may not hold, plus `%`, our escape character.
const ESCAPED: [char; 5] = ['%', '/', '\\', '?', '#'];

/// The ids of the names `.` and `..`. The SDK puts the id into the item URL as one path
/// segment (`…/docs/{id}`, with every `%` written as `%25` and nothing else escaped) and
/// the URL parser then resolves `.` and `..` segments, so a document whose id is `.` or
/// `..` can be created (a POST to `…/docs`) but never read, replaced or deleted by id.
/// Their dots are written as `%2E`, which the SDK sends as `%252E`: never a dot segment.
const DOT_SEGMENTS: [(&str, &str); 2] = [(".", "%2E"), ("..", "%2E%2E")];

/// The document id of a lease name: the name with `%`, `/`, `\`, `?` and `#` written as
/// `%25`, `%2F`, `%5C`, `%3F`, `%23`; the names `.` and `..` (which would be URL dot
/// segments) are written as `%2E` and `%2E%2E`.
///
/// Injective (two names never share an id) and reversible by [`name_of_id`]. A valid
/// lease name (≤ 256 characters) gives an id of at most 768 bytes, under Cosmos DB's
/// 1,023-byte id limit. No id is `.` or `..`.
pub fn document_id(name: &str) -> String {
    if let Some((_, id)) = DOT_SEGMENTS.iter().find(|(n, _)| *n == name) {
        return (*id).to_owned();
    }
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

/// The lease name of a document id made by [`document_id`]; `None` if `id` is not one
/// (in particular `.` and `..`, and `%2E` anywhere but in the ids of `.` and `..`,
/// written exactly `%2E` and `%2E%2E`).
pub fn name_of_id(id: &str) -> Option<String> {
    for (name, dotted) in DOT_SEGMENTS {
        if id == dotted {
            return Some(name.to_owned());
        }
        if id == name {
            return None;
        }
    }
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
            ".",
            "..",
            "...",
            "./.",
            ".a",
            "a.",
            "%2E",
            "%2E%2E",
        ] {
            let id = document_id(name);
            assert!(!id.contains(['/', '\\', '?', '#']), "{id}");
            assert_eq!(name_of_id(&id).as_deref(), Some(name), "{name} → {id}");
        }
        assert_eq!(document_id("a/b%c"), "a%2Fb%25c");
        assert_eq!(document_id("."), "%2E");
        assert_eq!(document_id(".."), "%2E%2E");
        // Every other name keeps the id it always had.
        assert_eq!(document_id("..."), "...");
        assert_eq!(document_id("%2E"), "%252E");
        assert_eq!(document_id("./.."), ".%2F..");
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
        for id in [
            "a%2",
            "a%zz",
            "a%41",
            "a%2f",
            "a/b",
            "x%",
            "%E9",
            ".",
            "..",
            "%2e",
            "%2e%2e",
            "%2E.",
            ".%2E",
            "%2E%2e",
            "%2E%2E%2E",
            "a%2E",
            "%2Ea",
            "...%2E",
        ] {
            assert_eq!(name_of_id(id), None, "{id}");
        }
    }

    /// Every string over `alphabet` of 1 to `max_len` characters.
    fn all_strings(alphabet: &[char], max_len: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut level = vec![String::new()];
        for _ in 0..max_len {
            level = level
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(level.iter().cloned());
        }
        all
    }

    /// The segments of `path`, each percent-decoded.
    fn decoded_segments(path: &str) -> Vec<String> {
        path.split('/')
            .skip(1)
            .map(|seg| {
                let b = seg.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    let hex = b
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) if b[i] == b'%' => {
                            out.push(v);
                            i += 3;
                        }
                        _ => {
                            out.push(b[i]);
                            i += 1;
                        }
                    }
                }
                String::from_utf8(out).expect("utf-8")
            })
            .collect()
    }

    /// The item URL path the SDK requests for `id`, built as `azure_data_cosmos_driver`
    /// 1.0 does (`build_transport_request_with_fault_injection`: the resource link with
    /// every `%` written as `%25`, then `Url::set_path`, which resolves dot segments).
    fn sdk_item_path(id: &str) -> String {
        let mut url =
            azure_core::http::Url::parse("https://acct.documents.azure.com:443/").expect("url");
        url.set_path(&format!("/dbs/d/colls/c/docs/{id}").replace('%', "%25"));
        url.path().to_owned()
    }

    /// The mapping's properties over every name of up to four characters from the
    /// characters that matter (dots, the escape character and what it escapes, hex
    /// digits in both cases) and pseudo-random names up to the longest: injective,
    /// reversible, no forbidden character, and the SDK's request for the id reaches
    /// that very document (no `.`/`..` segment collapses the path).
    #[test]
    fn property_every_name_round_trips_and_addresses_its_own_document() {
        let alphabet = ['.', '%', '2', 'E', 'e', '5', '/', '\\', '?', '#', 'a'];
        let mut names = all_strings(&alphabet, 4);
        let valid: Vec<char> = ('a'..='c')
            .chain(['.', '%', '/', '2', 'E', 'F', ':', '~'])
            .collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let len = 1 + (next() % 256) as usize;
            names.push(
                (0..len)
                    .map(|_| valid[(next() % valid.len() as u64) as usize])
                    .collect(),
            );
        }
        names.extend([".".repeat(256), "%".repeat(256), "/".repeat(256)]);
        let mut seen = std::collections::HashMap::new();
        for name in &names {
            let id = document_id(name);
            assert!(!id.contains(['/', '\\', '?', '#']), "{name:?} → {id:?}");
            assert!(id.len() <= 3 * name.len(), "{name:?} → {id:?}");
            assert_eq!(name_of_id(&id).as_deref(), Some(name.as_str()), "{id:?}");
            if let Some(other) = seen.insert(id.clone(), name.clone()) {
                assert_eq!(&other, name, "two names share the id {id:?}");
            }
            let segments = decoded_segments(&sdk_item_path(&id));
            assert_eq!(
                segments,
                ["dbs", "d", "colls", "c", "docs", id.as_str()],
                "the request for {name:?} (id {id:?}) goes elsewhere"
            );
        }
    }

    /// `name_of_id` accepts only the ids the mapping makes: whatever it decodes maps back
    /// to the same id (every string of up to five characters from a small alphabet).
    #[test]
    fn property_only_canonical_ids_are_accepted() {
        let alphabet = ['.', '%', '2', '5', 'E', 'e', 'F', '/', 'a'];
        let mut accepted = 0;
        for id in all_strings(&alphabet, 5) {
            if let Some(name) = name_of_id(&id) {
                assert_eq!(document_id(&name), id, "{id:?} → {name:?}");
                accepted += 1;
            }
        }
        assert!(accepted > 1_000, "{accepted}");
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
