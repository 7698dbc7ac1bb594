//! Lease metadata: who holds a lease, stored provider-natively (the rules are on
//! [`validate_metadata`]).

use crate::error::{LeaseError, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Metadata of a lease: string keys to string values, ordered by key (the rules are on
/// [`validate_metadata`]).
pub type Metadata = BTreeMap<String, String>;

/// Most entries a lease's metadata may hold.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in characters.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Largest metadata value, in UTF-8 bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;
/// Largest total of key and value bytes.
pub const MAX_METADATA_TOTAL_BYTES: usize = 2048;

/// Checks metadata against the rules every backend shares.
///
/// Keys follow the strictest backend's rule everywhere (Azure Blob metadata names are C#
/// identifiers and case-insensitive): `[A-Za-z_][A-Za-z0-9_]*`, at most
/// [`MAX_METADATA_KEY_LEN`] characters, unique without regard to case. Values are any
/// UTF-8 text of at most [`MAX_METADATA_VALUE_BYTES`] bytes. At most
/// [`MAX_METADATA_ENTRIES`] entries and [`MAX_METADATA_TOTAL_BYTES`] bytes of keys and
/// values in all, which leaves room under Azure's 8 KiB metadata limit for the encoding of
/// non-ASCII values and the provider's own fields.
///
/// # Errors
/// `InvalidArgument` with field `metadata` naming the key and the rule broken.
pub fn validate_metadata(metadata: &Metadata) -> Result<()> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(LeaseError::invalid_argument(
            "metadata",
            format!(
                "{} entries; the limit is {MAX_METADATA_ENTRIES}",
                metadata.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0usize;
    for (key, value) in metadata {
        validate_metadata_key(key)?;
        if !seen.insert(key.to_ascii_lowercase()) {
            return Err(LeaseError::invalid_argument(
                "metadata",
                format!(
                    "key {key:?} differs from another key only by case (keys are case-insensitive)"
                ),
            ));
        }
        if value.len() > MAX_METADATA_VALUE_BYTES {
            return Err(LeaseError::invalid_argument(
                "metadata",
                format!(
                    "value of key {key:?} is {} bytes; the limit is {MAX_METADATA_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_METADATA_TOTAL_BYTES {
        return Err(LeaseError::invalid_argument(
            "metadata",
            format!("{total} bytes of keys and values; the limit is {MAX_METADATA_TOTAL_BYTES}"),
        ));
    }
    Ok(())
}

fn validate_metadata_key(key: &str) -> Result<()> {
    let mut chars = key.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_first || !ok_rest {
        return Err(LeaseError::invalid_argument(
            "metadata",
            format!("key {key:?} must match [A-Za-z_][A-Za-z0-9_]* (Azure Blob metadata names)"),
        ));
    }
    if key.len() > MAX_METADATA_KEY_LEN {
        return Err(LeaseError::invalid_argument(
            "metadata",
            format!(
                "key {key:?} is {} characters; the limit is {MAX_METADATA_KEY_LEN}",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// An id for this process as the owner of leases: `{host}-{pid}-{8 hex digits}`, the host
/// as [`environment_metadata`] finds it (`host` when it finds none), the hex digits random
/// per call. The one format every backend stores as a lease's owner, and an election's
/// default candidate identity.
///
/// ```
/// let id = leasing_abstractions::owner_id();
/// let (rest, random) = id.rsplit_once('-').unwrap();
/// assert!(rest.ends_with(&format!("-{}", std::process::id())));
/// assert_eq!(random.len(), 8);
/// assert_ne!(id, leasing_abstractions::owner_id());
/// ```
pub fn owner_id() -> String {
    let host = environment_metadata(None)
        .remove("host")
        .unwrap_or_else(|| "host".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// Metadata describing this process, from the environment:
///
/// | key | source |
/// |---|---|
/// | `host` | `HOSTNAME`, else `/etc/hostname` |
/// | `pod` | `POD_NAME`, else `HOSTNAME` when running in Kubernetes (`KUBERNETES_SERVICE_HOST` set) |
/// | `region` | `LEASING_REGION`, `AZURE_REGION`, `REGION` (first set) |
/// | `version` | `version` if given, else `SERVICE_VERSION`, `APP_VERSION` |
///
/// Missing sources leave the key out. Values are truncated to the value limit.
pub fn environment_metadata(version: Option<&str>) -> Metadata {
    environment_metadata_from(
        version,
        |k| std::env::var(k).ok(),
        || std::fs::read_to_string("/etc/hostname").ok(),
    )
}

fn environment_metadata_from(
    version: Option<&str>,
    var: impl Fn(&str) -> Option<String>,
    etc_hostname: impl Fn() -> Option<String>,
) -> Metadata {
    let var = |k: &str| {
        var(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let first = |keys: &[&str]| keys.iter().find_map(|k| var(k));
    let mut m = Metadata::new();
    let host = var("HOSTNAME").or_else(|| {
        etc_hostname()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
    });
    let pod = var("POD_NAME").or_else(|| var("KUBERNETES_SERVICE_HOST").and(host.clone()));
    let region = first(&["LEASING_REGION", "AZURE_REGION", "REGION"]);
    let version = version
        .map(str::to_owned)
        .or_else(|| first(&["SERVICE_VERSION", "APP_VERSION"]));
    for (k, v) in [
        ("host", host),
        ("pod", pod),
        ("region", region),
        ("version", version),
    ] {
        if let Some(mut v) = v {
            truncate_utf8(&mut v, MAX_METADATA_VALUE_BYTES);
            m.insert(k.to_owned(), v);
        }
    }
    m
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn truncation_never_splits_a_character() {
        // 'é' is two bytes: a cut at an odd byte steps back to the character's start.
        let mut s = "é".repeat(10);
        truncate_utf8(&mut s, 7);
        assert_eq!(s, "ééé");
        let mut short = String::from("abc");
        truncate_utf8(&mut short, 7);
        assert_eq!(short, "abc");
    }

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_identifiers_and_any_utf8_value() {
        validate_metadata(&md(&[
            ("region", "westeurope"),
            ("_x1", "日本語 ✓"),
            ("A", ""),
        ]))
        .unwrap();
        validate_metadata(&Metadata::new()).unwrap();
    }

    #[test]
    fn rejects_each_rule() {
        let long_key = "k".repeat(MAX_METADATA_KEY_LEN + 1);
        let big = "v".repeat(MAX_METADATA_VALUE_BYTES + 1);
        let half = "v".repeat(MAX_METADATA_VALUE_BYTES);
        let cases: Vec<(Metadata, &str)> = vec![
            (md(&[("1abc", "v")]), "[A-Za-z_]"),
            (md(&[("a-b", "v")]), "[A-Za-z_]"),
            (md(&[("", "v")]), "[A-Za-z_]"),
            (md(&[("é", "v")]), "[A-Za-z_]"),
            (md(&[(&long_key, "v")]), "characters"),
            (md(&[("Key", "v"), ("key", "w")]), "case"),
            (md(&[("k", &big)]), "1025 bytes"),
            (
                md(&[("a", &half), ("b", &half), ("c", &half)]),
                "keys and values",
            ),
            (
                (0..=MAX_METADATA_ENTRIES)
                    .map(|i| (format!("k{i}"), String::new()))
                    .collect(),
                "entries",
            ),
        ];
        for (m, needle) in cases {
            let e = validate_metadata(&m).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert_eq!(e.field(), Some("metadata"));
            assert!(
                e.to_string().contains(needle),
                "{e} should mention {needle}"
            );
        }
    }

    #[test]
    fn environment_helper_reads_sources_in_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let m = environment_metadata_from(
            None,
            env(&[
                ("HOSTNAME", "web-1"),
                ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                ("AZURE_REGION", "eu"),
                ("REGION", "x"),
                ("APP_VERSION", "1.2"),
            ]),
            || None,
        );
        assert_eq!(
            m,
            md(&[
                ("host", "web-1"),
                ("pod", "web-1"),
                ("region", "eu"),
                ("version", "1.2")
            ])
        );
        let m = environment_metadata_from(
            Some("9"),
            env(&[("POD_NAME", "p"), ("HOSTNAME", " ")]),
            || Some("box\n".into()),
        );
        assert_eq!(m, md(&[("host", "box"), ("pod", "p"), ("version", "9")]));
        let m = environment_metadata_from(None, env(&[]), || None);
        assert!(m.is_empty());
        let m = environment_metadata_from(Some(&"é".repeat(600)), env(&[]), || None);
        assert_eq!(m["version"].len(), 1024);
        validate_metadata(&m).unwrap();
        // The real environment always yields valid metadata.
        validate_metadata(&environment_metadata(Some("1"))).unwrap();
    }
}
