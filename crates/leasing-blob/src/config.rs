//! What a provider is configured with: the checked configuration, its defaults and
//! limits, and the rules an endpoint and a container name must follow.

use crate::credential::BlobAuth;
use azure_core::http::Url;
use leasing_abstractions::{LeaseError, Result};
use std::time::Duration;

/// Account name and key of the storage emulator (Azurite), published by Microsoft.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Account key of the storage emulator (Azurite), published by Microsoft; not a secret.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Blob endpoint of the storage emulator (Azurite) on this machine.
pub const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
/// Shortest blob lease.
pub const MIN_DURATION: Duration = Duration::from_secs(15);
/// Longest finite blob lease.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// Default container.
pub const DEFAULT_CONTAINER: &str = "leases";
/// Default bound of one HTTP request (the transport's timeout).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of renewals [`renew_many`](leasing_abstractions::LeaseProvider::renew_many)
/// keeps in flight.
pub const DEFAULT_RENEW_CONCURRENCY: usize = 32;

/// Configuration of a [`BlobLeaseProvider`](crate::BlobLeaseProvider); built by
/// [`BlobLeaseProviderBuilder`](crate::BlobLeaseProviderBuilder). `Debug` leaves the key,
/// SAS and token out.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlobConfig {
    /// Blob service endpoint of the account, e.g. `https://myaccount.blob.core.windows.net`
    /// or `http://127.0.0.1:10000/devstoreaccount1` (no query, no trailing slash).
    pub endpoint: Url,
    /// Container that holds one blob per lease; created on first use.
    pub container: String,
    /// Authorization.
    pub auth: BlobAuth,
    /// The transport's bound on one HTTP request (the SDK's own retries are off: the core
    /// retries; within the core a call's deadline usually ends it sooner).
    pub call_timeout: Duration,
    /// Renewals `renew_many` keeps in flight at once.
    pub renew_concurrency: usize,
    /// Extra trusted root certificates (PEM), e.g. a test CA.
    #[doc(hidden)]
    pub root_certificates_pem: Option<Vec<u8>>,
}

pub(crate) fn config_error(field: &'static str, rule: impl Into<String>) -> LeaseError {
    LeaseError::configuration(field, rule)
}

/// `s` as an http(s) URL; the error names `field` and shows the URL without its query.
pub(crate) fn parse_url(field: &'static str, s: &str) -> Result<Url> {
    let url = Url::parse(s.trim()).map_err(|e| {
        config_error(
            field,
            format!("is not a valid URL ({e}): {}", leasing_azure::redact(s)),
        )
    })?;
    // http(s) URLs always have a base, so the scheme is the whole check.
    if !matches!(url.scheme(), "http" | "https") {
        return Err(config_error(
            field,
            format!(
                "must be an http(s) URL: {}",
                leasing_azure::redact(url.as_str())
            ),
        ));
    }
    Ok(url)
}

/// `url` without its query and with no trailing slash.
pub(crate) fn base(mut url: Url) -> Url {
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    url
}

/// Azure's container-name rule (3–63 of `a-z 0-9 -`, no leading, trailing or double `-`).
pub(crate) fn check_container(name: &str) -> Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(config_error(
            "container",
            format!("{name:?} is not a valid container name (3-63 of a-z 0-9 -, starting and ending with a letter or digit, no --)"),
        ))
    }
}
