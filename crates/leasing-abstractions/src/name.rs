//! Lease names: validation, a hierarchical builder and its parser.
//!
//! A lease name is 1–[`MAX_NAME_LEN`] characters from the set
//! `A–Z a–z 0–9 - _ . ~ : / @ % + =`. The set is the intersection of what every backend
//! stores without escaping (blob names, Redis keys, Cosmos ids minus `/`, which the Cosmos
//! provider maps), so providers map names to keys one-to-one.

use crate::error::{LeaseError, Result};
use std::fmt;

/// The longest lease name accepted, in characters.
pub const MAX_NAME_LEN: usize = 256;

/// Whether `c` may appear in a lease name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '-' | '_' | '.' | '~' | ':' | '/' | '@' | '%' | '+' | '=')
}

/// Checks a lease name: 1–[`MAX_NAME_LEN`] characters from the set
/// `A–Z a–z 0–9 - _ . ~ : / @ % + =` ([`is_name_char`]). The set is the intersection of
/// what every backend stores without escaping (blob names, Redis keys, Cosmos ids minus
/// `/`, which the Cosmos provider maps), so providers map names to keys one-to-one.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the field
/// `name` and the rule broken.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(LeaseError::invalid_argument("name", "must not be empty"));
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(LeaseError::invalid_argument(
            "name",
            format!("is {len} characters long; the limit is {MAX_NAME_LEN}"),
        ));
    }
    if let Some((i, c)) = name.char_indices().find(|&(_, c)| !is_name_char(c)) {
        return Err(LeaseError::invalid_argument(
            "name",
            format!(
                "character {c:?} at byte {i} is not allowed (allowed: A-Z a-z 0-9 - _ . ~ : / @ % + =)"
            ),
        ));
    }
    Ok(())
}

/// Checks a listing prefix: the start of some valid name (empty allowed).
///
/// # Errors
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) naming the field
/// `prefix` and the rule broken.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_name(prefix).map_err(|e| {
        LeaseError::invalid_argument(
            "prefix",
            format!("no lease name starts with it: {}", e.message()),
        )
    })
}

/// The parts of a hierarchical lease name, in the order they are joined.
///
/// The name is always five `:`-separated segments,
/// `environment:region:tenant:service:resource`, where absent parts are empty and each part
/// is percent-escaped (every byte outside `A–Z a–z 0–9 - _ . ~` becomes `%XX`). Because
/// positions are fixed and `:` never survives escaping, [`LeaseNameParts::parse`] gives back
/// exactly what was built.
///
/// ```
/// use leasing_abstractions::LeaseNameBuilder;
/// let name = LeaseNameBuilder::new()
///     .environment("prod")
///     .region("west europe")
///     .service("billing")
///     .resource("invoice:42")
///     .build()?;
/// assert_eq!(name, "prod:west%20europe::billing:invoice%3A42");
/// let parts = leasing_abstractions::LeaseNameParts::parse(&name)?;
/// assert_eq!(parts.resource, "invoice:42");
/// assert_eq!(parts.tenant, None);
/// # Ok::<(), leasing_abstractions::LeaseError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseNameParts {
    /// Deployment environment (`prod`, `staging`…).
    pub environment: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Service that owns the resource.
    pub service: Option<String>,
    /// The resource itself; required.
    pub resource: String,
}

impl LeaseNameParts {
    /// Parses a name made by [`LeaseNameBuilder`].
    ///
    /// # Errors
    /// `InvalidArgument` (field `name`) when the name is not valid, has other than five
    /// segments, has an empty resource, or holds a malformed escape.
    pub fn parse(name: &str) -> Result<Self> {
        validate_name(name)?;
        let segments: Vec<&str> = name.split(':').collect();
        if segments.len() != 5 {
            return Err(LeaseError::invalid_argument(
                "name",
                format!(
                    "a hierarchical name has 5 ':'-separated segments (environment:region:tenant:service:resource), this one has {}",
                    segments.len()
                ),
            ));
        }
        let opt = |s: &str| -> Result<Option<String>> {
            if s.is_empty() {
                Ok(None)
            } else {
                unescape(s).map(Some)
            }
        };
        let resource = unescape(segments[4])?;
        if resource.is_empty() {
            return Err(LeaseError::invalid_argument(
                "name",
                "the resource segment must not be empty",
            ));
        }
        Ok(Self {
            environment: opt(segments[0])?,
            region: opt(segments[1])?,
            tenant: opt(segments[2])?,
            service: opt(segments[3])?,
            resource,
        })
    }
}

/// Builds a hierarchical lease name; see [`LeaseNameParts`] for the format.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LeaseNameBuilder {
    parts: LeaseNameParts,
}

impl LeaseNameBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the environment part.
    pub fn environment(mut self, v: impl Into<String>) -> Self {
        self.parts.environment = Some(v.into());
        self
    }

    /// Sets the region part.
    pub fn region(mut self, v: impl Into<String>) -> Self {
        self.parts.region = Some(v.into());
        self
    }

    /// Sets the tenant part.
    pub fn tenant(mut self, v: impl Into<String>) -> Self {
        self.parts.tenant = Some(v.into());
        self
    }

    /// Sets the service part.
    pub fn service(mut self, v: impl Into<String>) -> Self {
        self.parts.service = Some(v.into());
        self
    }

    /// Sets the resource part (required).
    pub fn resource(mut self, v: impl Into<String>) -> Self {
        self.parts.resource = v.into();
        self
    }

    /// Joins and escapes the parts.
    ///
    /// # Errors
    /// `InvalidArgument` when the resource is empty, a set part is empty, or the escaped
    /// name is longer than [`MAX_NAME_LEN`].
    pub fn build(&self) -> Result<String> {
        let p = &self.parts;
        if p.resource.is_empty() {
            return Err(LeaseError::invalid_argument(
                "resource",
                "must not be empty",
            ));
        }
        let mut out = String::new();
        for (field, part) in [
            ("environment", &p.environment),
            ("region", &p.region),
            ("tenant", &p.tenant),
            ("service", &p.service),
        ] {
            if let Some(v) = part {
                if v.is_empty() {
                    return Err(LeaseError::invalid_argument(
                        field,
                        "must not be empty when set",
                    ));
                }
                escape_into(v, &mut out);
            }
            out.push(':');
        }
        escape_into(&p.resource, &mut out);
        validate_name(&out)?;
        Ok(out)
    }
}

impl fmt::Display for LeaseNameParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for part in [&self.environment, &self.region, &self.tenant, &self.service] {
            if let Some(v) = part {
                escape_into(v, &mut out);
            }
            out.push(':');
        }
        escape_into(&self.resource, &mut out);
        f.write_str(&out)
    }
}

fn escape_into(part: &str, out: &mut String) {
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 0xf) as usize]));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn unescape(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    LeaseError::invalid_argument("name", format!("malformed escape at byte {i}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| LeaseError::invalid_argument("name", "escapes do not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn valid_and_invalid_names() {
        assert!(validate_name("a").is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name("tenant/a:b@c%20+d=e~f_g.h-i").is_ok());
        for bad in ["", " ", "a b", "a\nb", "é", "a*b", "a\\b", "a?b", "a#b"] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
            assert_eq!(e.field(), Some("name"));
        }
        let e = validate_name(&"x".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert!(e.to_string().contains("257"), "{e}");
    }

    #[test]
    fn builder_round_trips_with_escaping() {
        let cases = [
            ("prod", "eu:west", "ten ant", "svc/1", "res%20:x"),
            ("ü", "日本", "a\u{0}b", "-_.~", "::"),
        ];
        for (e, r, t, s, res) in cases {
            let name = LeaseNameBuilder::new()
                .environment(e)
                .region(r)
                .tenant(t)
                .service(s)
                .resource(res)
                .build()
                .unwrap();
            validate_name(&name).unwrap();
            let parts = LeaseNameParts::parse(&name).unwrap();
            assert_eq!(parts.environment.as_deref(), Some(e));
            assert_eq!(parts.region.as_deref(), Some(r));
            assert_eq!(parts.tenant.as_deref(), Some(t));
            assert_eq!(parts.service.as_deref(), Some(s));
            assert_eq!(parts.resource, res);
            assert_eq!(parts.to_string(), name);
        }
        let only = LeaseNameBuilder::new().resource("job").build().unwrap();
        assert_eq!(only, "::::job");
        let p = LeaseNameParts::parse(&only).unwrap();
        assert_eq!(
            p,
            LeaseNameParts {
                resource: "job".into(),
                ..Default::default()
            }
        );
        assert_eq!(p.to_string(), only, "empty parts print as empty fields");
    }

    #[test]
    fn builder_and_parser_reject_bad_input() {
        assert_eq!(
            LeaseNameBuilder::new().build().unwrap_err().field(),
            Some("resource")
        );
        let e = LeaseNameBuilder::new()
            .tenant("")
            .resource("r")
            .build()
            .unwrap_err();
        assert_eq!(e.field(), Some("tenant"));
        let e = LeaseNameBuilder::new()
            .resource("é".repeat(100))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), Some("name"));
        for bad in [
            "a:b",
            "a:b:c:d:e:f",
            "a:b:c:d:",
            "::::%4",
            "::::%zz",
            "::::%FF",
            "bad name",
        ] {
            assert_eq!(
                LeaseNameParts::parse(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }
}
