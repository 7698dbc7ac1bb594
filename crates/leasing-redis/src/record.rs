//! The lease record: one Redis string per held name.
//!
//! `<waited><lease id>|<token>|<acquired ms>|<rest>` where `<waited>` is `0`, or `1` once a
//! contender found the lease held (its release is then announced), and `<rest>` is the
//! owner and the metadata, each string as `<byte length>:<bytes>` (owner, then key, value,
//! key, value…), encoded here and never parsed by a script.

use leasing_abstractions::Metadata;
use std::time::{Duration, SystemTime};

/// What one server reports about a held name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawInfo {
    pub(crate) lease_id: Option<String>,
    pub(crate) token: u64,
    pub(crate) acquired_ms: u64,
    pub(crate) expires_ms: Option<u64>,
    pub(crate) owner: String,
    pub(crate) metadata: Metadata,
}

use std::fmt;
use std::io::Write;

/// The `<rest>` of a record: owner and metadata.
pub(crate) fn encode_rest(owner: &str, metadata: &Metadata) -> Vec<u8> {
    let size = owner.len()
        + 8
        + metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 12)
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let mut put = |s: &str| {
        // Written in place (no string per length): writing to a Vec cannot fail.
        let _ = write!(out, "{}:", s.len());
        out.extend_from_slice(s.as_bytes());
    };
    put(owner);
    for (k, v) in metadata {
        put(k);
        put(v);
    }
    out
}

/// The lease id as the scripts match it: followed by the separator, so that an id that is
/// a prefix of another never matches it. A command argument written in place (no string
/// per call: renewals send one per lease).
#[derive(Clone, Copy)]
pub(crate) struct IdMatch<'a>(pub(crate) &'a str);

impl fmt::Display for IdMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|", self.0)
    }
}

impl redis::ToRedisArgs for IdMatch<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

pub(crate) fn id_match(lease_id: &str) -> IdMatch<'_> {
    IdMatch(lease_id)
}

/// Reads `<len>:<bytes>` strings until the end; `None` if malformed.
fn decode_strings(mut rest: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let colon = rest.iter().position(|b| *b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let body = rest.get(colon + 1..colon + 1 + len)?;
        out.push(String::from_utf8(body.to_vec()).ok()?);
        rest = &rest[colon + 1 + len..];
    }
    Some(out)
}

/// Parses a record with its remaining TTL (`pttl` ms; negative: none) on the server's
/// clock `now_ms`. A record that does not parse (written by something else) is reported
/// held by an unknown lease id with token 0.
pub(crate) fn parse(value: &[u8], pttl: i64, now_ms: u64) -> RawInfo {
    let mut info = RawInfo {
        lease_id: None,
        token: 0,
        acquired_ms: 0,
        expires_ms: u64::try_from(pttl).ok().map(|p| now_ms.saturating_add(p)),
        owner: String::new(),
        metadata: Metadata::new(),
    };
    let mut fields = value.get(1..).unwrap_or_default().splitn(4, |b| *b == b'|');
    fn text(f: Option<&[u8]>) -> Option<&str> {
        f.and_then(|f| std::str::from_utf8(f).ok())
    }
    let (Some(id), Some(token), Some(at)) = (
        text(fields.next()),
        text(fields.next()).and_then(|t| t.parse().ok()),
        text(fields.next()).and_then(|t| t.parse().ok()),
    ) else {
        return info;
    };
    info.lease_id = Some(id.to_owned());
    info.token = token;
    info.acquired_ms = at;
    if let Some(strings) = fields.next().and_then(decode_strings) {
        let mut it = strings.into_iter();
        info.owner = it.next().unwrap_or_default();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            info.metadata.insert(k, v);
        }
    }
    info
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(crate) fn system_time_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut md = Metadata::new();
        md.insert("region".into(), "eu|west:1".into());
        md.insert("é".into(), String::new());
        let rest = encode_rest("host/1/x", &md);
        let mut value = b"1abc|42|1000|".to_vec();
        value.extend_from_slice(&rest);
        let i = parse(&value, 500, 2000);
        assert_eq!(i.lease_id.as_deref(), Some("abc"));
        assert_eq!(i.token, 42);
        assert_eq!(i.acquired_ms, 1000);
        assert_eq!(i.expires_ms, Some(2500));
        assert_eq!(i.owner, "host/1/x");
        assert_eq!(i.metadata, md);
        assert_eq!(parse(b"0id|1|2|", -1, 5).expires_ms, None);
        // Not a record of ours: held, by nobody we know.
        for bad in [&b""[..], b"x", b"0id|notanumber|1|", b"0id|1"] {
            let i = parse(bad, 10, 0);
            assert_eq!(i.lease_id, None);
            assert_eq!(i.token, 0);
        }
        // A malformed rest keeps the id and token.
        for rest in [&b"9:short"[..], b"x:1", b"nocolon", b"1:\xff"] {
            let mut v = b"0id|7|8|".to_vec();
            v.extend_from_slice(rest);
            let i = parse(&v, 1, 0);
            assert_eq!(i.token, 7);
            assert!(i.metadata.is_empty());
        }
        assert_eq!(id_match("abc").to_string(), "abc|");
        let mut cmd = redis::cmd("X");
        cmd.arg(id_match("abc"));
        assert_eq!(
            cmd.args_iter().nth(1),
            Some(redis::Arg::Simple(&b"abc|"[..]))
        );
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(
            system_time_ms(1000),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1)
        );
    }
}
