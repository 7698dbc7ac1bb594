//! Configuration: the builder, auth, partition-key strategies.

use azure_core::credentials::{Secret, TokenCredential};
use leasing_abstractions::{LeaseError, LeaseNameParts, Result};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Default database name.
pub const DEFAULT_DATABASE: &str = "leasing";
/// Default container name.
pub const DEFAULT_CONTAINER: &str = "leases";
/// Default per-call deadline.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a document is kept after its last write before Cosmos DB's TTL deletes it.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How the provider authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    /// Account key (primary or secondary), from a key or a connection string.
    Key(Secret),
    /// A Microsoft Entra ID token credential.
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Key(_) => f.write_str("Key(<redacted>)"),
            Auth::Token(_) => f.write_str("TokenCredential"),
        }
    }
}

/// The function type of [`PartitionKeyStrategy::Custom`].
pub type PartitionKeyFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Which logical partition a lease document lives in. Every lease operation is a point
/// operation on that one partition (the key is computed from the name alone).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum PartitionKeyStrategy {
    /// The document id itself (default): every lease in its own logical partition, which
    /// spreads load and storage evenly and never hits the 20 GB/10 000 RU per-partition
    /// limits.
    #[default]
    PerLease,
    /// One fixed key for every lease (a small container, or one you scope by name).
    Fixed(String),
    /// The tenant segment of a hierarchical name ([`LeaseNameParts`]); names without one
    /// use `fallback`.
    ByTenant {
        /// Key for names without a tenant segment.
        fallback: String,
    },
    /// The region segment of a hierarchical name; names without one use `fallback`.
    ByRegion {
        /// Key for names without a region segment.
        fallback: String,
    },
    /// Your function of the lease name (must be deterministic: every process must compute
    /// the same key for a name).
    Custom(PartitionKeyFn),
}

impl fmt::Debug for PartitionKeyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerLease => f.write_str("PerLease"),
            Self::Fixed(k) => f.debug_tuple("Fixed").field(k).finish(),
            Self::ByTenant { fallback } => f
                .debug_struct("ByTenant")
                .field("fallback", fallback)
                .finish(),
            Self::ByRegion { fallback } => f
                .debug_struct("ByRegion")
                .field("fallback", fallback)
                .finish(),
            Self::Custom(_) => f.write_str("Custom(<fn>)"),
        }
    }
}

impl PartitionKeyStrategy {
    /// The partition key of lease `name` whose document id is `id`.
    pub fn key_for(&self, name: &str, id: &str) -> String {
        let part = |pick: fn(LeaseNameParts) -> Option<String>, fallback: &str| {
            LeaseNameParts::parse(name)
                .ok()
                .and_then(pick)
                .unwrap_or_else(|| fallback.to_owned())
        };
        match self {
            Self::PerLease => id.to_owned(),
            Self::Fixed(k) => k.clone(),
            Self::ByTenant { fallback } => part(|p| p.tenant, fallback),
            Self::ByRegion { fallback } => part(|p| p.region, fallback),
            Self::Custom(f) => f(name),
        }
    }
}

/// A parsed connection string: `AccountEndpoint=https://…;AccountKey=…;`.
pub(crate) fn parse_connection_string(s: &str) -> Result<(String, Secret)> {
    let mut endpoint = None;
    let mut key = None;
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(LeaseError::configuration(
                "connection_string",
                "every part must be Name=Value (AccountEndpoint=…;AccountKey=…)",
            ));
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "accountendpoint" => endpoint = Some(v.trim().to_owned()),
            // The key is base64 and may end with '=': keep everything after the first '='.
            "accountkey" => key = Some(Secret::new(v.trim().to_owned())),
            _ => {}
        }
    }
    match (endpoint, key) {
        (Some(e), Some(k)) if !e.is_empty() && !k.secret().is_empty() => Ok((e, k)),
        _ => Err(LeaseError::configuration(
            "connection_string",
            "needs both AccountEndpoint and AccountKey",
        )),
    }
}

/// The hosts the SDK lets plain `http://` reach (`azure_data_cosmos_driver`'s
/// `is_emulator_host`); it also allows the host named in `AZURE_COSMOS_EMULATOR_HOST`.
const SDK_EMULATOR_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "[0:0:0:0:0:0:0:1]"];

/// The environment variable naming one more host the SDK treats as an emulator.
const SDK_EMULATOR_HOST_VAR: &str = "AZURE_COSMOS_EMULATOR_HOST";

/// Checks the account endpoint before any request: an absolute `https://` URL with a
/// host, or `http://` to a host the SDK treats as a local emulator (it refuses plain
/// HTTP to any other host, and no other scheme can reach the service).
pub(crate) fn validate_endpoint(endpoint: &str) -> Result<azure_core::http::Url> {
    validate_endpoint_with(endpoint, std::env::var(SDK_EMULATOR_HOST_VAR).ok())
}

fn validate_endpoint_with(
    endpoint: &str,
    emulator_host: Option<String>,
) -> Result<azure_core::http::Url> {
    let url = azure_core::http::Url::parse(endpoint)
        .map_err(|_| LeaseError::configuration("endpoint", "is not an absolute https:// URL"))?;
    let host = url.host_str().unwrap_or_default();
    let emulator = SDK_EMULATOR_HOSTS
        .iter()
        .any(|h| host.eq_ignore_ascii_case(h))
        || emulator_host.is_some_and(|h| !h.is_empty() && host.eq_ignore_ascii_case(&h));
    match url.scheme() {
        _ if host.is_empty() => Err(LeaseError::configuration(
            "endpoint",
            "has no host (expected https://<account>.documents.azure.com:443/)",
        )),
        "https" => Ok(url),
        "http" if emulator => Ok(url),
        "http" => Err(LeaseError::configuration(
            "endpoint",
            format!(
                "plain http:// is allowed only for a local emulator (host localhost, 127.0.0.1 or [::1], or the host named in {SDK_EMULATOR_HOST_VAR}), not for {host:?}: the Cosmos DB SDK refuses it; use https://"
            ),
        )),
        other => Err(LeaseError::configuration(
            "endpoint",
            format!("has the scheme {other:?}; Cosmos DB is reached over https:// (http:// only for a local emulator)"),
        )),
    }
}

/// Checks an account key before any request: the SDK signs every request with the
/// base64-decoded key, so a key that does not decode cannot sign anything. The message
/// never contains the key.
pub(crate) fn validate_key(key: &Secret) -> Result<()> {
    match azure_core::base64::decode(key.secret()) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        Ok(_) => Err(LeaseError::configuration(
            "key",
            "the account key is empty (AccountKey in a connection string)",
        )),
        Err(_) => Err(LeaseError::configuration(
            "key",
            "the account key (AccountKey in a connection string) is not valid base64; copy the primary or secondary key of the account as shown in the portal",
        )),
    }
}

/// Whether `endpoint` names this machine (the emulator): only then are certificate
/// checks relaxed.
pub(crate) fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = host_port.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    matches!(
        host.to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "::1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_and_reject_incomplete_ones() {
        let (e, k) = parse_connection_string(
            "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=abc==;Database=x",
        )
        .expect("parse");
        assert_eq!(e, "https://acct.documents.azure.com:443/");
        assert_eq!(k.secret(), "abc==");
        for bad in [
            "",
            "AccountEndpoint=https://x/",
            "AccountKey=k",
            "garbage",
            "AccountEndpoint=;AccountKey=k",
            "AccountEndpoint=https://x/;AccountKey=",
        ] {
            let err = parse_connection_string(bad).expect_err(bad);
            assert_eq!(err.field(), Some("connection_string"));
            assert!(!err.to_string().contains("k;"), "{err}");
        }
    }

    #[test]
    fn endpoints_are_https_or_http_to_an_emulator_host() {
        for ok in [
            "https://acct.documents.azure.com:443/",
            "HTTPS://acct.documents.azure.com",
            "http://localhost:8081/",
            "http://LOCALHOST:8081/",
            "http://127.0.0.1:8081/",
            "http://[::1]:8081/",
            "http://[0:0:0:0:0:0:0:1]:8081/",
        ] {
            validate_endpoint_with(ok, None).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        validate_endpoint_with("http://cosmos.test:8081/", Some("Cosmos.Test".into()))
            .expect("the host the SDK's AZURE_COSMOS_EMULATOR_HOST names");
        validate_endpoint_with("http://no-such-host.invalid/", Some("cosmos.test".into()))
            .expect_err("only the host the variable names, not any host");
        for (bad, says) in [
            ("not a url", "absolute"),
            ("ftp://127.0.0.1:8085/", "\"ftp\""),
            ("file:///tmp/x", "no host"),
            ("http://no-such-host.invalid/", "only for a local emulator"),
            ("http://127.0.0.2:8081/", "only for a local emulator"),
            ("http://localhost.evil.com/", "only for a local emulator"),
        ] {
            let e = validate_endpoint_with(bad, Some(String::new())).expect_err(bad);
            assert_eq!(e.field(), Some("endpoint"), "{bad}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        let e = validate_endpoint_with("http://no-such-host.invalid/", None).expect_err("http");
        for part in [
            "localhost, 127.0.0.1 or [::1]",
            "AZURE_COSMOS_EMULATOR_HOST",
            "https://",
        ] {
            assert!(e.to_string().contains(part), "{e}");
        }
    }

    #[test]
    fn keys_must_be_base64_and_are_never_printed() {
        validate_key(&Secret::new("a2V5")).expect("base64");
        validate_key(&Secret::new(
            "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==",
        ))
        .expect("the emulator's key");
        for bad in ["not base64!", "a2V5=", "s3cr3t-key-value", ""] {
            let e = validate_key(&Secret::new(bad)).expect_err(bad);
            assert_eq!(e.field(), Some("key"), "{bad}");
            let text = format!("{e} {e:?}");
            assert!(bad.is_empty() || !text.contains(bad), "{text}");
        }
    }

    #[test]
    fn loopback_detection_only_matches_this_machine() {
        for yes in [
            "http://127.0.0.1:8081/",
            "https://localhost:8081",
            "https://[::1]:8081/",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "https://acct.documents.azure.com/",
            "https://127.0.0.2/",
            "https://localhost.evil.com/",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn partition_key_strategies() {
        let name = "prod:westeurope:contoso:billing:invoice-1";
        let id = "id";
        assert_eq!(PartitionKeyStrategy::default().key_for(name, id), "id");
        assert_eq!(
            PartitionKeyStrategy::Fixed("k".into()).key_for(name, id),
            "k"
        );
        let t = PartitionKeyStrategy::ByTenant {
            fallback: "none".into(),
        };
        assert_eq!(t.key_for(name, id), "contoso");
        assert_eq!(t.key_for("flat-name", id), "none");
        let r = PartitionKeyStrategy::ByRegion {
            fallback: "global".into(),
        };
        assert_eq!(r.key_for(name, id), "westeurope");
        assert_eq!(r.key_for("prod:::billing:x", id), "global");
        let c = PartitionKeyStrategy::Custom(Arc::new(|n: &str| n.len().to_string()));
        assert_eq!(c.key_for(name, id), name.len().to_string());
        for s in [
            PartitionKeyStrategy::default(),
            PartitionKeyStrategy::Fixed("k".into()),
            t,
            r,
            c,
        ] {
            assert!(!format!("{s:?}").is_empty());
        }
        assert_eq!(
            format!("{:?}", Auth::Key(Secret::new("sekrit"))),
            "Key(<redacted>)"
        );
    }
}
