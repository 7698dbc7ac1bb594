//! Where the leases live and how the provider authenticates.

use crate::shared_key::SharedKeyPolicy;
use crate::BlobLeaseProvider;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport, Url};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use leasing_abstractions::{LeaseError, Result};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Account name and key of the storage emulator (Azurite), published by Microsoft.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Account key of the storage emulator (Azurite), published by Microsoft; not a secret.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Blob endpoint of the storage emulator (Azurite) on this machine.
pub const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";
/// Default container.
pub const DEFAULT_CONTAINER: &str = "leases";
/// Default deadline of one service call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of renewals [`renew_many`](leasing_abstractions::LeaseProvider::renew_many)
/// keeps in flight.
pub const DEFAULT_RENEW_CONCURRENCY: usize = 32;

/// How requests are authorized.
#[derive(Clone)]
#[non_exhaustive]
pub enum BlobAuth {
    /// Account name and key: each request is signed (SharedKey).
    AccountKey {
        /// Storage account name.
        account: String,
        /// Base64 account key.
        key: Secret,
    },
    /// A shared access signature: the query string (without `?`) added to every request.
    Sas(Secret),
    /// A Microsoft Entra ID token credential from `azure_identity` (HTTPS only).
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobAuth::AccountKey { account, .. } => f
                .debug_struct("AccountKey")
                .field("account", account)
                .field("key", &"<redacted>")
                .finish(),
            BlobAuth::Sas(_) => f.write_str("Sas(<redacted>)"),
            BlobAuth::Token(_) => f.write_str("Token(<credential>)"),
        }
    }
}

/// Configuration of a [`BlobLeaseProvider`]; built by [`BlobLeaseProviderBuilder`].
/// `Debug` leaves the key, SAS and token out.
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
    /// Deadline of each service call (the SDK's own retries are off: the core retries).
    pub call_timeout: Duration,
    /// Renewals `renew_many` keeps in flight at once.
    pub renew_concurrency: usize,
    /// Extra trusted root certificates (PEM), e.g. a test CA.
    #[doc(hidden)]
    pub root_certificates_pem: Option<Vec<u8>>,
}

/// Builds a [`BlobLeaseProvider`].
///
/// ```
/// # fn main() -> leasing_abstractions::Result<()> {
/// let provider = leasing_blob::BlobLeaseProvider::builder()
///     .connection_string("UseDevelopmentStorage=true")?
///     .container("leases")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct BlobLeaseProviderBuilder {
    endpoint: Option<Url>,
    container: Option<String>,
    auth: Option<BlobAuth>,
    call_timeout: Option<Duration>,
    renew_concurrency: Option<usize>,
    root_certificates_pem: Option<Vec<u8>>,
}

impl fmt::Debug for BlobLeaseProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobLeaseProviderBuilder")
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .field("container", &self.container)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

fn config_error(field: &'static str, rule: impl Into<String>) -> LeaseError {
    LeaseError::configuration(field, rule)
}

fn parse_url(field: &'static str, s: &str) -> Result<Url> {
    let url = Url::parse(s.trim()).map_err(|e| {
        config_error(
            field,
            format!("is not a valid URL ({e}): {}", crate::error::redact(s)),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(config_error(
            field,
            format!(
                "must be an http(s) URL: {}",
                crate::error::redact(url.as_str())
            ),
        ));
    }
    Ok(url)
}

/// `url` without its query and with no trailing slash.
fn base(mut url: Url) -> Url {
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    url
}

impl BlobLeaseProviderBuilder {
    /// Reads an Azure Storage connection string: `UseDevelopmentStorage=true` (Azurite on
    /// this machine), or `AccountName=…;AccountKey=…` with `DefaultEndpointsProtocol`,
    /// `EndpointSuffix` or `BlobEndpoint`, or `BlobEndpoint=…;SharedAccessSignature=…`.
    ///
    /// # Errors
    /// `Configuration` (field `connection_string`) naming what is missing; the string
    /// itself never appears in the error.
    pub fn connection_string(mut self, s: &str) -> Result<Self> {
        let mut kv = std::collections::HashMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(config_error(
                    "connection_string",
                    "each part must be key=value",
                ));
            };
            kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        if kv
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let endpoint = match kv.get("developmentstorageproxyuri") {
                Some(proxy) => format!("{}/{DEV_ACCOUNT}", proxy.trim_end_matches('/')),
                None => DEV_BLOB_ENDPOINT.to_owned(),
            };
            self.endpoint = Some(parse_url("connection_string", &endpoint)?);
            self.auth = Some(BlobAuth::AccountKey {
                account: DEV_ACCOUNT.to_owned(),
                key: Secret::new(DEV_ACCOUNT_KEY),
            });
            return Ok(self);
        }
        let account = kv.get("accountname").cloned();
        let endpoint = match (kv.get("blobendpoint"), &account) {
            (Some(e), _) => parse_url("connection_string", e)?,
            (None, Some(a)) => {
                let proto = kv
                    .get("defaultendpointsprotocol")
                    .map_or("https", String::as_str);
                let suffix = kv
                    .get("endpointsuffix")
                    .map_or("core.windows.net", String::as_str);
                parse_url("connection_string", &format!("{proto}://{a}.blob.{suffix}"))?
            }
            (None, None) => {
                return Err(config_error(
                    "connection_string",
                    "needs AccountName or BlobEndpoint (or UseDevelopmentStorage=true)",
                ))
            }
        };
        self.endpoint = Some(base(endpoint));
        self.auth = Some(
            match (kv.get("accountkey"), kv.get("sharedaccesssignature")) {
                (Some(key), _) => BlobAuth::AccountKey {
                    account: account.ok_or_else(|| {
                        config_error("connection_string", "AccountKey needs AccountName")
                    })?,
                    key: Secret::new(key.clone()),
                },
                (None, Some(sas)) => {
                    BlobAuth::Sas(Secret::new(sas.trim_start_matches('?').to_owned()))
                }
                (None, None) => {
                    return Err(config_error(
                        "connection_string",
                        "needs AccountKey or SharedAccessSignature",
                    ))
                }
            },
        );
        Ok(self)
    }

    /// An account URL carrying a shared access signature
    /// (`https://myaccount.blob.core.windows.net/?sv=…&sig=…`). The SAS must allow read,
    /// write, create and (for `list`) list on the container's blobs, and creating the
    /// container unless it exists.
    ///
    /// # Errors
    /// `Configuration` (field `sas_url`) when it is not a URL or has no query.
    pub fn sas_url(mut self, url: &str) -> Result<Self> {
        let parsed = parse_url("sas_url", url)?;
        let Some(query) = parsed.query().filter(|q| !q.is_empty()) else {
            return Err(config_error(
                "sas_url",
                "has no shared access signature (query)",
            ));
        };
        self.auth = Some(BlobAuth::Sas(Secret::new(query.to_owned())));
        self.endpoint = Some(base(parsed));
        Ok(self)
    }

    /// A container URL carrying a shared access signature
    /// (`https://myaccount.blob.core.windows.net/leases?sv=…&sig=…`): the last path segment
    /// is the container.
    ///
    /// # Errors
    /// `Configuration` (field `sas_url`) when it is not a URL, has no container or no query.
    pub fn container_sas_url(self, url: &str) -> Result<Self> {
        let parsed = parse_url("sas_url", url)?;
        let mut segments: Vec<String> = parsed
            .path_segments()
            .map(|s| s.filter(|x| !x.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let Some(container) = segments.pop() else {
            return Err(config_error("sas_url", "names no container"));
        };
        let mut account = parsed.clone();
        account.set_path(&segments.join("/"));
        let mut me = self.sas_url(account.as_str())?;
        me.container = Some(container);
        Ok(me)
    }

    /// The account's blob endpoint, e.g. `https://myaccount.blob.core.windows.net`.
    ///
    /// # Errors
    /// `Configuration` (field `endpoint`) when it is not an http(s) URL.
    pub fn endpoint(mut self, url: &str) -> Result<Self> {
        self.endpoint = Some(base(parse_url("endpoint", url)?));
        Ok(self)
    }

    /// Signs requests with the account key.
    pub fn account_key(mut self, account: impl Into<String>, key: impl Into<String>) -> Self {
        self.auth = Some(BlobAuth::AccountKey {
            account: account.into(),
            key: Secret::new(key.into()),
        });
        self
    }

    /// Authorizes with a token credential (`azure_identity`); the endpoint must be HTTPS.
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.auth = Some(BlobAuth::Token(credential));
        self
    }

    /// The container (default `leases`).
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// Deadline of each service call (default 5 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// Renewals `renew_many` keeps in flight (default 32).
    pub fn renew_concurrency(mut self, n: usize) -> Self {
        self.renew_concurrency = Some(n);
        self
    }

    /// Trusts these extra root certificates (PEM) for HTTPS, e.g. a test CA.
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates_pem = Some(pem.into());
        self
    }

    /// The configuration, checked.
    ///
    /// # Errors
    /// `Configuration` naming the field: `endpoint`/`auth` missing, a container name that
    /// Azure rejects (3–63 of `a-z 0-9 -`, starting and ending with a letter or digit, no
    /// `--`), a zero `call_timeout` or `renew_concurrency`, a token over plain http.
    pub fn into_config(self) -> Result<BlobConfig> {
        let endpoint = self
            .endpoint
            .ok_or_else(|| config_error("endpoint", "is required (or a connection string)"))?;
        let auth = self.auth.ok_or_else(|| {
            config_error(
                "auth",
                "is required: an account key, a SAS or a token credential",
            )
        })?;
        let container = self
            .container
            .unwrap_or_else(|| DEFAULT_CONTAINER.to_owned());
        check_container(&container)?;
        let call_timeout = self.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT);
        if call_timeout.is_zero() {
            return Err(config_error("call_timeout", "must be above zero"));
        }
        let renew_concurrency = self.renew_concurrency.unwrap_or(DEFAULT_RENEW_CONCURRENCY);
        if renew_concurrency == 0 {
            return Err(config_error("renew_concurrency", "must be at least 1"));
        }
        if matches!(auth, BlobAuth::Token(_)) && endpoint.scheme() != "https" {
            return Err(config_error(
                "endpoint",
                "a token credential needs an https endpoint",
            ));
        }
        Ok(BlobConfig {
            endpoint,
            container,
            auth,
            call_timeout,
            renew_concurrency,
            root_certificates_pem: self.root_certificates_pem,
        })
    }

    /// Builds the provider. It does not contact the service: the container is created on
    /// first use.
    ///
    /// # Errors
    /// See [`into_config`](Self::into_config); `Configuration` (field
    /// `root_certificates_pem`) for an unreadable certificate.
    pub fn build(self) -> Result<BlobLeaseProvider> {
        BlobLeaseProvider::from_config(self.into_config()?)
    }
}

/// Azure's container-name rule.
fn check_container(name: &str) -> Result<()> {
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

/// The container client for `config`: no SDK retries, the auth policy or SAS, the
/// transport with any extra CA.
pub(crate) fn container_client(config: &BlobConfig) -> Result<BlobContainerClient> {
    let mut url = config.endpoint.clone();
    url.path_segments_mut()
        .map_err(|()| config_error("endpoint", "cannot be a base URL"))?
        .pop_if_empty()
        .push(&config.container);
    let mut client_options = ClientOptions {
        // Off: a dead server took 81 s to surface through the default retries, longer than
        // any blob lease. The core retries on its own schedule.
        retry: RetryOptions::none(),
        ..ClientOptions::default()
    };
    let mut credential = None;
    match &config.auth {
        BlobAuth::AccountKey { account, key } => client_options
            .per_try_policies
            .push(Arc::new(SharedKeyPolicy::new(account.clone(), key.clone()))),
        BlobAuth::Sas(sas) => url.set_query(Some(sas.secret())),
        BlobAuth::Token(c) => credential = Some(c.clone()),
    }
    if let Some(pem) = &config.root_certificates_pem {
        client_options.transport = Some(Transport::new(Arc::new(http_client(pem)?)));
    }
    let options = BlobContainerClientOptions {
        client_options,
        ..BlobContainerClientOptions::default()
    };
    BlobContainerClient::new(url, credential, Some(options)).map_err(|e| {
        config_error(
            "endpoint",
            format!(
                "rejected by the blob client: {}",
                crate::error::Failure::from_azure(&e)
            ),
        )
    })
}

fn http_client(pem: &[u8]) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| config_error("root_certificates_pem", format!("unreadable: {e}")))?;
    for cert in certs {
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| config_error("root_certificates_pem", format!("HTTP client: {e}")))
}
