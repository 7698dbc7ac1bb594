//! How lease names become blob names, and metadata becomes blob metadata.
//!
//! # Blob names
//!
//! A lease `name` is stored in the blob `lease-{escaped name}`. The escaping keeps
//! `A–Z a–z 0–9 - _ .` as they are and writes every other character of the lease-name set
//! (`~ : / @ % + =`) as `~` and two upper-case hex digits (`orders/eu:1` →
//! `lease-orders~2Feu~3A1`). A final `.` is escaped too (`~2E`), because Azure trims
//! trailing dots. `~` itself is always escaped, so the mapping is one-to-one and reversible;
//! the result never contains `/` (no virtual directories), `%` (no URL-encoding ambiguity)
//! or a trailing dot, and is at most 6 + 3 × 256 = 774 characters (Azure allows 1 024).
//!
//! # Metadata
//!
//! Blob metadata is HTTP headers: names are case-insensitive (and arrive lower-cased)
//! and values must be printable ASCII. A user key `k` is stored as `m_{k'}` where `k'`
//! writes `_` as `__` and each upper-case letter `X` as `_x`, so the original case
//! survives (`owner_Name` → `m_owner___name`). A value that is printable ASCII without
//! leading or trailing white space, and does not start with `=?`, is stored as it is
//! (readable in the portal); any other value is stored as the RFC 2047 encoded-word
//! `=?UTF-8?B?{base64}?=`. The provider's own fields have no `m_` prefix:
//! `fencing_token`, `acquired_at_us` and `duration_s`.

use azure_core::base64;

/// Prefix of every lease blob.
pub(crate) const BLOB_PREFIX: &str = "lease-";
/// Metadata key prefix of user entries.
const USER_KEY_PREFIX: &str = "m_";
/// The provider's metadata fields.
pub(crate) const TOKEN_KEY: &str = "fencing_token";
pub(crate) const ACQUIRED_KEY: &str = "acquired_at_us";
pub(crate) const DURATION_KEY: &str = "duration_s";

const ENCODED_START: &str = "=?UTF-8?B?";
const ENCODED_END: &str = "?=";

fn keep(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn escape_into(out: &mut String, s: &str, escape_final_dot: bool) {
    let last = s.len().checked_sub(1);
    for (i, c) in s.char_indices() {
        let final_dot = escape_final_dot && c == '.' && Some(i) == last;
        if keep(c) && !final_dot {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push('~');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
}

/// The blob that stores lease `name`.
pub(crate) fn blob_name(name: &str) -> String {
    let mut out = String::with_capacity(BLOB_PREFIX.len() + name.len() * 3);
    out.push_str(BLOB_PREFIX);
    escape_into(&mut out, name, true);
    out
}

/// The blob-name prefix under which every lease whose name starts with `prefix` lies.
/// A final `.` of `prefix` is left out (a name ending there escapes it), so callers filter
/// the decoded names by `prefix` again.
pub(crate) fn blob_prefix(prefix: &str) -> String {
    let trimmed = prefix.strip_suffix('.').unwrap_or(prefix);
    let mut out = String::from(BLOB_PREFIX);
    escape_into(&mut out, trimmed, false);
    out
}

/// The lease name stored in blob `blob`, or `None` if `blob` is not a lease blob.
pub(crate) fn lease_name(blob: &str) -> Option<String> {
    let rest = blob.strip_prefix(BLOB_PREFIX)?;
    let mut bytes = Vec::with_capacity(rest.len());
    let mut it = rest.bytes();
    while let Some(b) = it.next() {
        if b == b'~' {
            let hi = hex(it.next()?)?;
            let lo = hex(it.next()?)?;
            bytes.push(hi << 4 | lo);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The blob metadata key of user key `key`.
pub(crate) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(USER_KEY_PREFIX.len() + key.len() * 2);
    out.push_str(USER_KEY_PREFIX);
    for c in key.chars() {
        if c == '_' {
            out.push_str("__");
        } else if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The user key stored as blob metadata key `stored` (any case), or `None` if `stored` is
/// not a user key.
pub(crate) fn decode_key(stored: &str) -> Option<String> {
    let lower = stored.to_ascii_lowercase();
    let rest = lower.strip_prefix(USER_KEY_PREFIX)?;
    let mut out = String::with_capacity(rest.len());
    let mut it = rest.chars();
    while let Some(c) = it.next() {
        if c == '_' {
            match it.next()? {
                '_' => out.push('_'),
                n => out.push(n.to_ascii_uppercase()),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?")
}

/// The header-safe form of metadata value `value`.
pub(crate) fn encode_value(value: &str) -> String {
    if is_plain(value) {
        value.to_owned()
    } else {
        format!("{ENCODED_START}{}{ENCODED_END}", base64::encode(value))
    }
}

/// The value stored as `stored`; `None` if it is an encoded word that does not decode.
pub(crate) fn decode_value(stored: &str) -> Option<String> {
    match stored
        .strip_prefix(ENCODED_START)
        .and_then(|s| s.strip_suffix(ENCODED_END))
    {
        Some(b64) => String::from_utf8(base64::decode(b64).ok()?).ok(),
        None => Some(stored.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasing_abstractions::is_name_char;

    const ALPHABET: &str =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~:/@%+=";

    fn valid_blob_name(b: &str) -> bool {
        b.len() <= 1024 && !b.ends_with('.') && b.chars().all(|c| keep(c) || c == '~')
    }

    #[test]
    fn blob_names_round_trip_and_never_collide() {
        let mut rng = fastrand::Rng::with_seed(8);
        let chars: Vec<char> = ALPHABET.chars().collect();
        assert!(chars.iter().all(|&c| is_name_char(c)));
        let mut seen = std::collections::HashMap::new();
        for i in 0..20_000 {
            let len = if i % 100 == 0 { 256 } else { rng.usize(1..12) };
            let name: String = (0..len).map(|_| chars[rng.usize(..chars.len())]).collect();
            let blob = blob_name(&name);
            assert!(valid_blob_name(&blob), "{name:?} -> invalid {blob:?}");
            assert_eq!(
                lease_name(&blob).as_deref(),
                Some(name.as_str()),
                "{blob:?}"
            );
            if let Some(other) = seen.insert(blob.clone(), name.clone()) {
                assert_eq!(other, name, "{other:?} and {name:?} both map to {blob:?}");
            }
            // Every prefix of the name lists it.
            let cut = rng.usize(0..=name.len());
            assert!(
                blob.starts_with(&blob_prefix(&name[..cut])),
                "{name:?} at {cut}"
            );
        }
    }

    #[test]
    fn examples_from_the_docs() {
        assert_eq!(blob_name("orders/eu:1"), "lease-orders~2Feu~3A1");
        assert_eq!(blob_name("a."), "lease-a~2E");
        assert_eq!(blob_name("~"), "lease-~7E");
        assert_eq!(blob_name("a.b"), "lease-a.b");
        assert_eq!(blob_prefix("a."), "lease-a");
        assert_eq!(lease_name("other"), None);
        assert_eq!(lease_name("lease-~2"), None);
        assert_eq!(lease_name("lease-~zz"), None);
        assert_eq!(lease_name("lease-~FF"), None);
        assert_eq!(encode_key("owner_Name"), "m_owner___name");
        assert_eq!(decode_key("M_OWNER___NAME").as_deref(), Some("owner_Name"));
        assert_eq!(decode_key("fencing_token"), None);
        assert_eq!(decode_key("m_trailing_"), None);
    }

    #[test]
    fn keys_round_trip() {
        for key in ["a", "_", "__x", "A", "Zz_Y9", "owner_Name", "_A_b_"] {
            let stored = encode_key(key);
            assert!(stored
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert_eq!(decode_key(&stored).as_deref(), Some(key));
        }
    }

    #[test]
    fn values_round_trip_and_plain_ascii_stays_readable() {
        for v in ["westeurope", "a=b&c", "host-1.example:8080"] {
            assert_eq!(encode_value(v), v);
        }
        for v in [
            "",
            " lead",
            "trail ",
            "tab\t",
            "new\nline",
            "=?looks encoded",
            "Zoë Ångström — 日本語 ✓ 🚀",
            "שלום עולם",
            "\u{7f}",
        ] {
            let e = encode_value(v);
            assert!(e.starts_with(ENCODED_START), "{v:?} -> {e:?}");
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e:?}");
            assert_eq!(decode_value(&e).as_deref(), Some(v));
        }
        assert_eq!(decode_value("=?UTF-8?B?!!?="), None);
        assert_eq!(decode_value("=?UTF-8?B?/w==?="), None);
    }
}
