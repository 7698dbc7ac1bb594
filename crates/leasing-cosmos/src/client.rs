//! The SDK client: endpoint rules, connection pool and runtime, operation options (SDK
//! retries off), and the emulator's relaxations.

use crate::credential::Auth;
use crate::error::{self, Mapped};
use azure_data_cosmos::options::{
    BinaryEncodingOptions, ConnectionPoolOptions, ContentResponseOnWrite, OperationOptions, Region,
    ServerCertificateValidation, ThrottlingRetryOptions,
};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosRuntime, RoutingStrategy,
};
use leasing_abstractions::{LeaseError, Result};
use std::sync::Arc;
use std::time::Duration;

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

/// SDK retries off (the core retries within the lease's margin), session capture on.
pub(crate) fn default_operation_options() -> OperationOptions {
    let mut o = OperationOptions::default();
    let mut throttling = ThrottlingRetryOptions::default();
    throttling.max_retry_count = Some(0);
    o.throttling_retry_options = Some(throttling);
    o.max_failover_retry_count = Some(0);
    o
}

pub(crate) fn with_content(on: bool) -> OperationOptions {
    let mut o = OperationOptions::default();
    o.content_response_on_write = Some(if on {
        ContentResponseOnWrite::Enabled
    } else {
        ContentResponseOnWrite::Disabled
    });
    o
}

/// The SDK client of the account at `endpoint` (checked by [`validate_endpoint`]),
/// connected within twice the call timeout.
pub(crate) async fn connect(
    endpoint: &str,
    parsed: AccountEndpoint,
    auth: &Auth,
    emulator: bool,
    call_timeout: Duration,
    #[cfg(feature = "fault_injection")] fault_rules: Vec<
        Arc<azure_data_cosmos::fault_injection::FaultInjectionRule>,
    >,
) -> Result<CosmosClient> {
    let account = match auth {
        Auth::Key(k) => AccountReference::with_authentication_key(parsed, k.clone()),
        Auth::Token(c) => AccountReference::with_credential(parsed, Arc::clone(c)),
    };
    let unavailable = |what: &str, e: azure_data_cosmos::CosmosError| {
        let Mapped { error, .. } = error::map(e, what);
        error
    };
    let mut pool = ConnectionPoolOptions::builder();
    if emulator {
        pool = pool
            .with_is_http2_allowed(false)
            .with_server_certificate_validation(
                ServerCertificateValidation::RequiredUnlessEmulator,
            );
    }
    // The transport's bound on one request (at least the SDK's 100 ms minimum).
    let pool = pool
        .with_max_dataplane_request_timeout(call_timeout.max(Duration::from_millis(100)))
        .build()
        .map_err(|e| unavailable("connection pool", e))?;
    let runtime = CosmosRuntime::builder()
        .with_connection_pool(pool)
        .build()
        .await
        .map_err(|e| unavailable("runtime", e))?;
    let mut client = CosmosClient::builder()
        .with_runtime(runtime)
        .with_default_operation_options(default_operation_options());
    if emulator {
        client =
            client.with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false));
    }
    #[cfg(feature = "fault_injection")]
    if !fault_rules.is_empty() {
        client = client
            .with_fault_injection_rules(fault_rules)
            .map_err(|e| unavailable("fault injection", e))?;
    }
    let connect = client.build(account, RoutingStrategy::ProximityTo(Region::from("")));
    tokio::time::timeout(call_timeout * 2, connect)
        .await
        .map_err(|_| error::deadline(&format!("connect to {endpoint}"), call_timeout * 2))?
        .map_err(|e| unavailable(&format!("connect to {endpoint}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Without the emulator relaxations (HTTP/2 and binary encoding stay on), a port
    /// where nothing listens fails the connect, retryably, naming the endpoint.
    #[tokio::test]
    async fn connecting_without_the_emulator_relaxations_reports_a_dead_endpoint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}/");
        let parsed = AccountEndpoint::from(validate_endpoint_with(&endpoint, None).expect("url"));
        let key = Auth::Key(azure_core::credentials::Secret::new("a2V5"));
        let e = connect(
            &endpoint,
            parsed,
            &key,
            false,
            Duration::from_secs(2),
            #[cfg(feature = "fault_injection")]
            Vec::new(),
        )
        .await
        .expect_err("nothing listens");
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains(&endpoint), "{e}");
    }

    #[test]
    fn operation_options() {
        assert_eq!(
            with_content(true).content_response_on_write,
            Some(ContentResponseOnWrite::Enabled)
        );
        assert_eq!(
            with_content(false).content_response_on_write,
            Some(ContentResponseOnWrite::Disabled)
        );
        let o = default_operation_options();
        assert_eq!(o.max_failover_retry_count, Some(0));
    }
}
