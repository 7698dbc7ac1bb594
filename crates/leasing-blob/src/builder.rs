//! [`BlobLeaseProviderBuilder`]: settings, the environment, connection strings and SAS
//! URLs, checked by `into_config` and `build`.

use crate::config::{
    base, check_container, config_error, parse_url, BlobConfig, DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONTAINER, DEFAULT_RENEW_CONCURRENCY, DEV_ACCOUNT, DEV_ACCOUNT_KEY, DEV_BLOB_ENDPOINT,
};
use crate::credential::BlobAuth;
use crate::provider::BlobLeaseProvider;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::Url;
use leasing_abstractions::{LeaseError, Result};
use leasing_azure::ConnectionString;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`BlobLeaseProvider`].
///
/// ```no_run
/// # async fn f() -> leasing_abstractions::Result<()> {
/// let provider = leasing_blob::BlobLeaseProvider::builder()
///     .connection_string("UseDevelopmentStorage=true")
///     .container("leases")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
#[must_use]
pub struct BlobLeaseProviderBuilder {
    endpoint: Option<Url>,
    container: Option<String>,
    auth: Option<BlobAuth>,
    call_timeout: Option<Duration>,
    renew_concurrency: Option<usize>,
    root_certificates_pem: Option<Vec<u8>>,
    /// The first error of a setter, returned by `build` (setters never fail on the spot,
    /// as on the other backends' builders).
    error: Option<LeaseError>,
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

/// Environment variables [`BlobLeaseProviderBuilder::from_env`] reads.
pub mod env {
    /// A connection string; wins over everything else.
    pub const CONNECTION_STRING: &str = "AZURE_STORAGE_CONNECTION_STRING";
    /// The blob endpoint (`https://myaccount.blob.core.windows.net`).
    pub const BLOB_ENDPOINT: &str = "AZURE_STORAGE_BLOB_ENDPOINT";
    /// The account name (endpoint `https://{name}.blob.core.windows.net` unless set).
    pub const ACCOUNT: &str = "AZURE_STORAGE_ACCOUNT";
    /// The account key.
    pub const KEY: &str = "AZURE_STORAGE_KEY";
    /// A SAS token (query string).
    pub const SAS_TOKEN: &str = "AZURE_STORAGE_SAS_TOKEN";
    /// The container (default `leases`).
    pub const CONTAINER: &str = "LEASING_BLOB_CONTAINER";
    /// Forces one token credential: `client-secret`, `workload-identity`,
    /// `managed-identity` or `developer-tools`.
    pub const CREDENTIAL: &str = "LEASING_BLOB_CREDENTIAL";
}

impl BlobLeaseProvider {
    /// A builder.
    pub fn builder() -> BlobLeaseProviderBuilder {
        BlobLeaseProviderBuilder::default()
    }

    /// A provider configured from the environment (see
    /// [`BlobLeaseProviderBuilder::from_env`] for the variables and their order), built
    /// and checked as [`BlobLeaseProviderBuilder::build`] does.
    ///
    /// # Errors
    /// `Configuration` naming what is missing or malformed; as `build` otherwise.
    pub async fn from_env() -> Result<Self> {
        BlobLeaseProviderBuilder::from_env().build().await
    }
}

impl BlobLeaseProviderBuilder {
    /// A builder from the environment, in this order:
    ///
    /// 1. `AZURE_STORAGE_CONNECTION_STRING`: a [connection string](Self::connection_string);
    /// 2. otherwise the endpoint from `AZURE_STORAGE_BLOB_ENDPOINT`, or from
    ///    `AZURE_STORAGE_ACCOUNT` (`https://{account}.blob.core.windows.net`), with
    ///    - `AZURE_STORAGE_KEY`: the account key (needs `AZURE_STORAGE_ACCOUNT`), else
    ///    - `AZURE_STORAGE_SAS_TOKEN`: a SAS, else
    ///    - a token credential from `azure_identity`: the one `LEASING_BLOB_CREDENTIAL`
    ///      names, else client secret (`AZURE_CLIENT_SECRET` set, with `AZURE_TENANT_ID`
    ///      and `AZURE_CLIENT_ID`), else workload identity (`AZURE_FEDERATED_TOKEN_FILE`
    ///      set), else managed identity (`IDENTITY_ENDPOINT` or `MSI_ENDPOINT` set; on a VM
    ///      with only IMDS, set `LEASING_BLOB_CREDENTIAL=managed-identity`), else the
    ///      developer tools (Azure CLI, then Azure Developer CLI). Chosen from the
    ///      environment, not by trying each: the order `leasing-azure` defines for both
    ///      Azure providers (`LEASING_COSMOS_CREDENTIAL` on Cosmos DB).
    ///
    /// `LEASING_BLOB_CONTAINER` sets the container.
    ///
    /// What is missing or malformed (never a secret's value) is a `Configuration` error
    /// returned by [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProviderBuilder;
    /// // Usually set by the deployment (here: Azurite, the local storage emulator):
    /// std::env::set_var("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true");
    /// std::env::set_var("LEASING_BLOB_CONTAINER", "billing-leases");
    /// let config = BlobLeaseProviderBuilder::from_env().into_config()?;
    /// assert_eq!(config.endpoint.as_str(), leasing_blob::DEV_BLOB_ENDPOINT);
    /// assert_eq!(config.container, "billing-leases");
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn from_env() -> Self {
        Self::from_vars(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub(crate) fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Self {
        Self::default().step(|b| b.set_from_vars(var))
    }

    /// Runs a fallible setter: its error (the first one) is kept for `build`.
    fn step(mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Self {
        if self.error.is_none() {
            if let Err(e) = f(&mut self) {
                self.error = Some(e);
            }
        }
        self
    }

    fn set_from_vars(&mut self, var: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(c) = var(env::CONTAINER) {
            self.container = Some(c);
        }
        if let Some(cs) = var(env::CONNECTION_STRING) {
            return self.set_connection_string(&cs);
        }
        let account = var(env::ACCOUNT);
        let endpoint = match (var(env::BLOB_ENDPOINT), &account) {
            (Some(e), _) => e,
            (None, Some(a)) => format!("https://{a}.blob.core.windows.net"),
            (None, None) => {
                return Err(config_error(
                    "endpoint",
                    format!(
                        "set {} or {} (or {})",
                        env::CONNECTION_STRING,
                        env::BLOB_ENDPOINT,
                        env::ACCOUNT
                    ),
                ))
            }
        };
        self.endpoint = Some(base(parse_url("endpoint", &endpoint)?));
        if let Some(key) = var(env::KEY) {
            let account = account.ok_or_else(|| {
                config_error("auth", format!("{} needs {}", env::KEY, env::ACCOUNT))
            })?;
            self.auth = Some(BlobAuth::AccountKey {
                account,
                key: Secret::new(key),
            });
            return Ok(());
        }
        if let Some(sas) = var(env::SAS_TOKEN) {
            self.auth = Some(BlobAuth::Sas(Secret::new(
                sas.trim_start_matches('?').to_owned(),
            )));
            return Ok(());
        }
        self.auth = Some(BlobAuth::Token(leasing_azure::credential_from_env(
            env::CREDENTIAL,
            var,
        )?));
        Ok(())
    }

    /// Reads an Azure Storage connection string: `UseDevelopmentStorage=true` (Azurite on
    /// this machine), or `AccountName=…;AccountKey=…` with `DefaultEndpointsProtocol`,
    /// `EndpointSuffix` or `BlobEndpoint`, or `BlobEndpoint=…;SharedAccessSignature=…`.
    ///
    /// Errors (`Configuration`, field `connection_string`, naming what is missing; the
    /// string itself never appears) are returned by [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// // From the portal's "Access keys" page; this key is a placeholder.
    /// let config = BlobLeaseProvider::builder()
    ///     .connection_string("AccountName=myaccount;AccountKey=ZmFrZS1rZXktZm9yLWRvY3M=")
    ///     .into_config()?;
    /// assert_eq!(config.endpoint.as_str(), "https://myaccount.blob.core.windows.net/");
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn connection_string(self, s: impl AsRef<str>) -> Self {
        self.step(|b| b.set_connection_string(s.as_ref()))
    }

    fn set_connection_string(&mut self, s: &str) -> Result<()> {
        let kv = ConnectionString::parse(s)?;
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
            return Ok(());
        }
        let account = kv.get("accountname").map(str::to_owned);
        let endpoint = match (kv.get("blobendpoint"), &account) {
            (Some(e), _) => parse_url("connection_string", e)?,
            (None, Some(a)) => {
                let proto = kv.get("defaultendpointsprotocol").unwrap_or("https");
                let suffix = kv.get("endpointsuffix").unwrap_or("core.windows.net");
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
                    key: Secret::new(key.to_owned()),
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
        Ok(())
    }

    /// An account URL carrying a shared access signature
    /// (`https://myaccount.blob.core.windows.net/?sv=…&sig=…`). The SAS must allow read,
    /// write, create and (for `list`) list on the container's blobs, and creating the
    /// container unless it exists.
    ///
    /// Errors (`Configuration`, field `sas_url`: not a URL, no query) are returned by
    /// [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// let builder = BlobLeaseProvider::builder()
    ///     .sas_url("https://myaccount.blob.core.windows.net/?sv=2022-11-02&sp=rwdlc&sig=FAKE");
    /// assert!(!format!("{builder:?}").contains("sig=FAKE")); // never printed
    /// let config = builder.into_config()?;
    /// assert_eq!(config.endpoint.as_str(), "https://myaccount.blob.core.windows.net/");
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn sas_url(self, url: impl AsRef<str>) -> Self {
        self.step(|b| b.set_sas_url(url.as_ref()))
    }

    fn set_sas_url(&mut self, url: &str) -> Result<()> {
        let parsed = parse_url("sas_url", url)?;
        let Some(query) = parsed.query().filter(|q| !q.is_empty()) else {
            return Err(config_error(
                "sas_url",
                "has no shared access signature (query)",
            ));
        };
        self.auth = Some(BlobAuth::Sas(Secret::new(query.to_owned())));
        self.endpoint = Some(base(parsed));
        Ok(())
    }

    /// A container URL carrying a shared access signature
    /// (`https://myaccount.blob.core.windows.net/leases?sv=…&sig=…`): the last path segment
    /// is the container.
    ///
    /// Errors (`Configuration`, field `sas_url`: not a URL, no container, no query) are
    /// returned by [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// let config = BlobLeaseProvider::builder()
    ///     .container_sas_url("https://myaccount.blob.core.windows.net/billing-leases?sp=rwl&sig=FAKE")
    ///     .into_config()?;
    /// assert_eq!(config.container, "billing-leases");
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn container_sas_url(self, url: impl AsRef<str>) -> Self {
        self.step(|b| b.set_container_sas_url(url.as_ref()))
    }

    fn set_container_sas_url(&mut self, url: &str) -> Result<()> {
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
        self.set_sas_url(account.as_str())?;
        self.container = Some(container);
        Ok(())
    }

    /// The account's blob endpoint, e.g. `https://myaccount.blob.core.windows.net`.
    ///
    /// An error (`Configuration`, field `endpoint`: not an http(s) URL) is returned by
    /// [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// let builder = BlobLeaseProvider::builder().endpoint("https://myaccount.blob.core.windows.net");
    /// let config = builder.account_key("myaccount", "ZmFrZS1rZXktZm9yLWRvY3M=").into_config()?;
    /// assert_eq!(config.endpoint.host_str(), Some("myaccount.blob.core.windows.net"));
    /// // A malformed endpoint is reported by `into_config` and `build`, not by the setter:
    /// let no_scheme = BlobLeaseProvider::builder().endpoint("myaccount.blob.core.windows.net");
    /// assert_eq!(no_scheme.into_config().unwrap_err().field(), Some("endpoint"));
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn endpoint(self, url: impl AsRef<str>) -> Self {
        self.step(|b| {
            b.endpoint = Some(base(parse_url("endpoint", url.as_ref())?));
            Ok(())
        })
    }

    /// Signs requests with the account key.
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// // Read the key from your secret store; this one is a placeholder.
    /// let builder = BlobLeaseProvider::builder()
    ///     .endpoint("https://myaccount.blob.core.windows.net")
    ///     .account_key("myaccount", "ZmFrZS1rZXktZm9yLWRvY3M=");
    /// assert!(!format!("{builder:?}").contains("ZmFrZS1rZXktZm9yLWRvY3M=")); // never printed
    /// assert!(builder.into_config().is_ok()); // checked (base64) without a request
    /// ```
    pub fn account_key(mut self, account: impl Into<String>, key: impl Into<String>) -> Self {
        self.auth = Some(BlobAuth::AccountKey {
            account: account.into(),
            key: Secret::new(key.into()),
        });
        self
    }

    /// Authorizes with a token credential (`azure_identity`); the endpoint must be HTTPS.
    ///
    /// # Examples
    ///
    /// ```
    /// use azure_identity::ManagedIdentityCredential;
    /// use leasing_blob::{BlobAuth, BlobLeaseProvider};
    /// let config = BlobLeaseProvider::builder()
    ///     .endpoint("https://myaccount.blob.core.windows.net")
    ///     .credential(ManagedIdentityCredential::new(None)?)
    ///     .into_config()?;
    /// assert!(matches!(config.auth, BlobAuth::Token(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.auth = Some(BlobAuth::Token(credential));
        self
    }

    /// The container (default `leases`).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// let azurite = || BlobLeaseProvider::builder().connection_string("UseDevelopmentStorage=true");
    /// let config = azurite().container("billing-leases").into_config()?;
    /// assert_eq!(config.container, "billing-leases");
    /// // Azure's naming rule (3-63 of a-z 0-9 -) is checked by `into_config` and `build`:
    /// let err = azurite().container("Billing_Leases").into_config().unwrap_err();
    /// assert_eq!(err.field(), Some("container"));
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// The transport's bound on one HTTP request (default 5 s): a request with no answer by
    /// then fails as `ProviderUnavailable`. Within the lease engine each call also has the
    /// deadline the core gives it (see `leasing_abstractions::provider::deadline`), which
    /// usually ends it sooner; this bound matters for calls made outside the core.
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// use std::time::Duration;
    /// let config = BlobLeaseProvider::builder()
    ///     .connection_string("UseDevelopmentStorage=true")
    ///     .call_timeout(Duration::from_secs(2))
    ///     .into_config()?;
    /// assert_eq!(config.call_timeout, Duration::from_secs(2));
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// Renewals `renew_many` keeps in flight (default 32).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// let config = BlobLeaseProvider::builder()
    ///     .connection_string("UseDevelopmentStorage=true")
    ///     .renew_concurrency(8)
    ///     .into_config()?;
    /// assert_eq!(config.renew_concurrency, 8);
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn renew_concurrency(mut self, n: usize) -> Self {
        self.renew_concurrency = Some(n);
        self
    }

    /// Trusts these extra root certificates (PEM) for HTTPS, e.g. a test CA.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
    /// // Azurite serving HTTPS with a certificate from a test CA:
    /// let provider = BlobLeaseProvider::builder()
    ///     .endpoint("https://127.0.0.1:10000/devstoreaccount1")
    ///     .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
    ///     .root_certificates_pem(std::fs::read("certs/test-ca.pem")?)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_blob::BlobLeaseProvider;
    /// let config = BlobLeaseProvider::builder()
    ///     .connection_string("UseDevelopmentStorage=true")
    ///     .container("billing-leases")
    ///     .into_config()?; // every setting checked, no request made
    /// assert_eq!(config.container, "billing-leases");
    /// let provider = BlobLeaseProvider::from_config(config)?; // still no request
    /// # Ok::<(), leasing_abstractions::LeaseError>(())
    /// ```
    pub fn into_config(self) -> Result<BlobConfig> {
        if let Some(e) = self.error {
            return Err(e);
        }
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
        if let BlobAuth::AccountKey { key, .. } = &auth {
            // Signing decodes the key as base64 on every request: a key that is not base64
            // would otherwise pass the build and fail every call with the decoder's message.
            if azure_core::hmac::hmac_sha256("", key).is_err() {
                return Err(config_error(
                    "account_key",
                    "is not base64 (copy key1 or key2 from the storage account's access keys)",
                ));
            }
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

    /// Builds the provider and checks, with one request, that the service answers at the
    /// endpoint and accepts the credentials: a dead endpoint, a wrong account or a
    /// rejected key fails here, at once (within the call timeout), naming the endpoint
    /// tried, instead of at the first acquisition. The container is created on first
    /// use.
    ///
    /// # Errors
    /// `Configuration` for what [`into_config`](Self::into_config) checks (and the first
    /// error of a setter), an unreadable certificate, or an account that does not exist;
    /// `ProviderUnavailable` when the endpoint does not answer; `Unauthorized` when it
    /// rejects the credentials.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = leasing_blob::BlobLeaseProvider::builder()
    ///     .endpoint("https://myaccount.blob.core.windows.net")
    ///     .credential(azure_identity::ManagedIdentityCredential::new(None)?)
    ///     .container("billing-leases")
    ///     .build() // one request: a dead endpoint or a refused credential fails here
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<BlobLeaseProvider> {
        let provider = BlobLeaseProvider::from_config(self.into_config()?)?;
        provider.check_reachable().await?;
        Ok(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasing_abstractions::ErrorKind;
    use std::collections::HashMap;

    const KEY: &str = "c2VjcmV0LWtleS1ub3QtcmVhbA==";

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    fn field(r: Result<impl fmt::Debug>) -> &'static str {
        let e = r.expect_err("must be rejected");
        assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
        e.field().expect("names a field")
    }

    #[test]
    fn development_storage() {
        let c = BlobLeaseProvider::builder()
            .connection_string("UseDevelopmentStorage=true")
            .into_config()
            .unwrap();
        assert_eq!(c.endpoint.as_str(), DEV_BLOB_ENDPOINT);
        assert_eq!(c.container, DEFAULT_CONTAINER);
        assert!(
            matches!(c.auth, BlobAuth::AccountKey { ref account, .. } if account == DEV_ACCOUNT)
        );
        let c = BlobLeaseProvider::builder()
            .connection_string(
                "UseDevelopmentStorage=true; DevelopmentStorageProxyUri=http://10.0.0.1:10000/",
            )
            .into_config()
            .unwrap();
        assert_eq!(
            c.endpoint.as_str(),
            "http://10.0.0.1:10000/devstoreaccount1"
        );
    }

    #[test]
    fn account_connection_strings() {
        let cs = format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn");
        let c = BlobLeaseProvider::builder()
            .connection_string(&cs)
            .into_config()
            .unwrap();
        assert_eq!(
            c.endpoint.as_str(),
            "https://acct.blob.core.chinacloudapi.cn/"
        );
        let dbg = format!(
            "{c:?} {:?}",
            BlobLeaseProvider::builder().connection_string(&cs)
        );
        assert!(!dbg.contains(KEY), "{dbg}");
        let c = BlobLeaseProvider::builder()
            .connection_string(format!("AccountName=acct;AccountKey={KEY}"))
            .into_config()
            .unwrap();
        assert_eq!(c.endpoint.as_str(), "https://acct.blob.core.windows.net/");
        let c = BlobLeaseProvider::builder()
            .connection_string(
                "BlobEndpoint=https://x.example/acct/;SharedAccessSignature=?sv=1&sig=SECRETSIG",
            )
            .into_config()
            .unwrap();
        assert_eq!(c.endpoint.as_str(), "https://x.example/acct");
        assert!(matches!(&c.auth, BlobAuth::Sas(s) if s.secret() == "sv=1&sig=SECRETSIG"));
        assert!(!format!("{c:?}").contains("SECRETSIG"));
    }

    #[test]
    fn bad_connection_strings_name_the_field_without_the_secret() {
        for cs in [
            "garbage",
            "AccountKey=SECRETKEY",
            "AccountName=a",
            "BlobEndpoint=https://x;AccountKey=SECRETKEY",
            "BlobEndpoint=notaurl;AccountKey=SECRETKEY",
            "BlobEndpoint=ftp://x/?sig=SECRETKEY;AccountName=a;AccountKey=k",
        ] {
            let e = BlobLeaseProvider::builder()
                .connection_string(cs)
                .into_config()
                .expect_err(cs);
            assert_eq!(e.field(), Some("connection_string"), "{cs}: {e}");
            assert!(!format!("{e} {e:?}").contains("SECRETKEY"), "{e:?}");
        }
    }

    #[test]
    fn sas_urls() {
        let b = BlobLeaseProvider::builder()
            .sas_url("https://acct.blob.core.windows.net/?sv=2020&sig=SECRETSIG");
        let c = b.into_config().unwrap();
        assert_eq!(c.endpoint.as_str(), "https://acct.blob.core.windows.net/");
        let c = BlobLeaseProvider::builder()
            .container_sas_url(
                "http://127.0.0.1:10000/devstoreaccount1/my-leases?sv=2020&sig=SECRETSIG",
            )
            .into_config()
            .unwrap();
        assert_eq!(
            c.endpoint.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(c.container, "my-leases");
        assert!(!format!("{c:?}").contains("SECRETSIG"));
        assert_eq!(
            field(
                BlobLeaseProvider::builder()
                    .sas_url("https://a.example/")
                    .into_config()
            ),
            "sas_url"
        );
        assert_eq!(
            field(
                BlobLeaseProvider::builder()
                    .container_sas_url("https://a.example/?sig=x")
                    .into_config()
            ),
            "sas_url"
        );
        let e = BlobLeaseProvider::builder()
            .sas_url("not a url?sig=SECRETSIG")
            .into_config()
            .unwrap_err();
        assert!(!e.to_string().contains("SECRETSIG"), "{e}");
    }

    #[test]
    fn checks_name_the_field() {
        let ok = || {
            BlobLeaseProvider::builder()
                .endpoint("https://acct.blob.core.windows.net")
                .account_key("acct", KEY)
        };
        assert_eq!(
            field(BlobLeaseProvider::builder().into_config()),
            "endpoint"
        );
        assert_eq!(
            field(
                BlobLeaseProvider::builder()
                    .endpoint("https://a.example")
                    .into_config()
            ),
            "auth"
        );
        for bad in [
            "ab",
            "Leases",
            "-leases",
            "leases-",
            "le--ases",
            &"a".repeat(64),
        ] {
            assert_eq!(
                field(ok().container(bad).into_config()),
                "container",
                "{bad}"
            );
        }
        assert_eq!(
            field(ok().call_timeout(Duration::ZERO).into_config()),
            "call_timeout"
        );
        // A key that is not base64 fails the build, not every request; it is never echoed.
        for (label, b) in [
            ("builder", ok().account_key("acct", "not*base64!SECRET")),
            (
                "connection string",
                BlobLeaseProvider::builder().connection_string(
                    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=not*base64!SECRET",
                ),
            ),
        ] {
            let e = b.into_config().expect_err(label);
            assert_eq!(e.field(), Some("account_key"), "{label}: {e}");
            assert!(!e.to_string().contains("SECRET"), "{label}: {e}");
        }
        assert_eq!(
            field(ok().renew_concurrency(0).into_config()),
            "renew_concurrency"
        );
        assert_eq!(
            field(
                BlobLeaseProvider::builder()
                    .endpoint("mailto:x")
                    .into_config()
            ),
            "endpoint"
        );
        let token = BlobLeaseProvider::builder()
            .endpoint("http://127.0.0.1:10000/devstoreaccount1")
            .credential(
                leasing_azure::token_credential(
                    leasing_azure::CredentialKind::DeveloperTools,
                    &vars(&[]),
                )
                .unwrap(),
            );
        assert_eq!(field(token.into_config()), "endpoint");
        assert_eq!(
            field(BlobLeaseProvider::from_config(
                ok().root_certificates_pem(b"not a pem".to_vec())
                    .into_config()
                    .unwrap()
            )),
            "root_certificates_pem"
        );
        let p = BlobLeaseProvider::from_config(
            ok().container("abc")
                .call_timeout(Duration::from_millis(10))
                .renew_concurrency(3)
                .into_config()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(p.config().container, "abc");
        assert_eq!(p.config().renew_concurrency, 3);
        assert!(format!("{:?}", ok()).contains("acct"));
    }

    #[test]
    fn from_the_environment() {
        let b = BlobLeaseProviderBuilder::from_vars(&vars(&[
            (env::CONNECTION_STRING, "UseDevelopmentStorage=true"),
            (env::CONTAINER, "other"),
        ]));
        assert_eq!(b.into_config().unwrap().container, "other");
        let c =
            BlobLeaseProviderBuilder::from_vars(&vars(&[(env::ACCOUNT, "acct"), (env::KEY, KEY)]))
                .into_config()
                .unwrap();
        assert_eq!(c.endpoint.as_str(), "https://acct.blob.core.windows.net/");
        assert!(matches!(c.auth, BlobAuth::AccountKey { .. }));
        let c = BlobLeaseProviderBuilder::from_vars(&vars(&[
            (env::BLOB_ENDPOINT, "https://x.example"),
            (env::SAS_TOKEN, "?sv=1&sig=S"),
        ]))
        .into_config()
        .unwrap();
        assert!(matches!(&c.auth, BlobAuth::Sas(s) if s.secret() == "sv=1&sig=S"));
        let c = BlobLeaseProviderBuilder::from_vars(&vars(&[(env::ACCOUNT, "acct")]))
            .into_config()
            .unwrap();
        assert!(matches!(c.auth, BlobAuth::Token(_)));
        assert_eq!(format!("{:?}", c.auth), "Token(<credential>)");
        assert_eq!(
            field(BlobLeaseProviderBuilder::from_vars(&vars(&[])).into_config()),
            "endpoint"
        );
        assert_eq!(
            field(
                BlobLeaseProviderBuilder::from_vars(&vars(&[
                    (env::BLOB_ENDPOINT, "https://x.example"),
                    (env::KEY, KEY)
                ]))
                .into_config()
            ),
            "auth"
        );
        // The process environment: whatever it holds, no panic and no secret in errors.
        if let Err(e) = BlobLeaseProviderBuilder::from_env().into_config() {
            assert_eq!(e.kind(), ErrorKind::Configuration);
        }
    }
}
