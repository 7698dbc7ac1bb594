//! [`CosmosLeaseProviderBuilder`]: settings, the environment, and `build`, which checks
//! them, connects and reads the account.

use crate::client::{self, is_loopback, validate_endpoint};
use crate::config::{
    PartitionKeyStrategy, DEFAULT_CALL_TIMEOUT, DEFAULT_CONTAINER, DEFAULT_DATABASE,
    DEFAULT_RENEW_CONCURRENCY, DEFAULT_RETENTION,
};
use crate::credential::{parse_connection_string, validate_key, Auth};
use crate::provider::{CosmosLeaseProvider, Inner, KnownNames};
use azure_core::credentials::{Secret, TokenCredential};
use azure_data_cosmos::AccountEndpoint;
use leasing_abstractions::{LeaseError, Result};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Environment variables [`CosmosLeaseProviderBuilder::from_env`] reads.
mod env {
    pub(super) const CONNECTION_STRING: &str = "LEASING_COSMOS_CONNECTION_STRING";
    pub(super) const ENDPOINT: &str = "LEASING_COSMOS_ENDPOINT";
    pub(super) const KEY: &str = "LEASING_COSMOS_KEY";
    pub(super) const DATABASE: &str = "LEASING_COSMOS_DATABASE";
    pub(super) const CONTAINER: &str = "LEASING_COSMOS_CONTAINER";
    pub(super) const CREDENTIAL: &str = "LEASING_COSMOS_CREDENTIAL";
}

impl CosmosLeaseProvider {
    /// A builder.
    pub fn builder() -> CosmosLeaseProviderBuilder {
        CosmosLeaseProviderBuilder::default()
    }

    /// A provider from the environment ([`CosmosLeaseProviderBuilder::from_env`]).
    ///
    /// # Errors
    /// As [`CosmosLeaseProviderBuilder::build`].
    pub async fn from_env() -> Result<Self> {
        CosmosLeaseProviderBuilder::from_env().build().await
    }
}

/// Builds a [`CosmosLeaseProvider`].
///
/// ```no_run
/// # async fn doc() -> leasing_abstractions::Result<()> {
/// use leasing_cosmos::CosmosLeaseProvider;
/// let provider = CosmosLeaseProvider::builder()
///     .connection_string("AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=…;")
///     .database("leasing")
///     .container("leases")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct CosmosLeaseProviderBuilder {
    endpoint: Option<String>,
    auth: Option<Auth>,
    connection_string: Option<Secret>,
    database: String,
    container: String,
    create_if_missing: bool,
    partition_key: PartitionKeyStrategy,
    call_timeout: Duration,
    owner: Option<String>,
    retention: Duration,
    emulator: Option<bool>,
    allow_multi_region_writes: bool,
    renew_concurrency: usize,
    #[cfg(feature = "fault_injection")]
    fault_rules: Vec<Arc<azure_data_cosmos::fault_injection::FaultInjectionRule>>,
    /// What `from_env` found missing or malformed, returned by `build`.
    error: Option<LeaseError>,
}

impl fmt::Debug for CosmosLeaseProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosmosLeaseProviderBuilder")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field(
                "connection_string",
                &self.connection_string.as_ref().map(|_| "<redacted>"),
            )
            .field("database", &self.database)
            .field("container", &self.container)
            .field("partition_key", &self.partition_key)
            .finish_non_exhaustive()
    }
}

impl Default for CosmosLeaseProviderBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            auth: None,
            connection_string: None,
            database: DEFAULT_DATABASE.into(),
            container: DEFAULT_CONTAINER.into(),
            create_if_missing: true,
            partition_key: PartitionKeyStrategy::default(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            owner: None,
            retention: DEFAULT_RETENTION,
            emulator: None,
            allow_multi_region_writes: false,
            renew_concurrency: DEFAULT_RENEW_CONCURRENCY,
            #[cfg(feature = "fault_injection")]
            fault_rules: Vec::new(),
            error: None,
        }
    }
}

impl CosmosLeaseProviderBuilder {
    /// Account endpoint and key (primary or secondary).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_cosmos::CosmosLeaseProvider;
    /// // Read the key from your secret store; this one is a placeholder.
    /// let builder = CosmosLeaseProvider::builder()
    ///     .key("https://myaccount.documents.azure.com:443/", "ZmFrZS1rZXktZm9yLWRvY3M=");
    /// let shown = format!("{builder:?}");
    /// assert!(shown.contains("myaccount.documents.azure.com"));
    /// assert!(!shown.contains("ZmFrZS1rZXktZm9yLWRvY3M=")); // never printed
    /// ```
    pub fn key(mut self, endpoint: impl Into<String>, key: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.auth = Some(Auth::Key(Secret::new(key.into())));
        self
    }

    /// `AccountEndpoint=…;AccountKey=…;` (parsed by [`build`](Self::build)).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_cosmos::CosmosLeaseProvider;
    /// // From the portal's "Keys" page; this key is a placeholder.
    /// let builder = CosmosLeaseProvider::builder().connection_string(
    ///     "AccountEndpoint=https://myaccount.documents.azure.com:443/;AccountKey=ZmFrZS1rZXktZm9yLWRvY3M=;",
    /// );
    /// assert!(!format!("{builder:?}").contains("ZmFrZS1rZXktZm9yLWRvY3M=")); // never printed
    /// ```
    pub fn connection_string(mut self, connection_string: impl Into<String>) -> Self {
        self.connection_string = Some(Secret::new(connection_string.into()));
        self
    }

    /// Account endpoint and a Microsoft Entra ID token credential (`azure_identity`). The
    /// identity needs the *Cosmos DB Built-in Data Contributor* role; with a token the
    /// database and container must already exist (the service allows creating them only
    /// through the control plane).
    ///
    /// # Examples
    ///
    /// ```
    /// use azure_identity::ManagedIdentityCredential;
    /// use leasing_cosmos::CosmosLeaseProvider;
    /// let credential = ManagedIdentityCredential::new(None)?;
    /// let builder = CosmosLeaseProvider::builder()
    ///     .token_credential("https://myaccount.documents.azure.com:443/", credential)
    ///     .create_if_missing(false); // a token cannot create the database or container
    /// assert!(format!("{builder:?}").contains("TokenCredential"));
    /// # Ok::<(), azure_core::Error>(())
    /// ```
    pub fn token_credential(
        mut self,
        endpoint: impl Into<String>,
        credential: Arc<dyn TokenCredential>,
    ) -> Self {
        self.endpoint = Some(endpoint.into());
        self.auth = Some(Auth::Token(credential));
        self
    }

    /// Database name (default `leasing`).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_cosmos::CosmosLeaseProvider;
    /// let builder = CosmosLeaseProvider::builder().database("billing");
    /// assert!(format!("{builder:?}").contains(r#"database: "billing""#));
    /// ```
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// Container name (default `leases`).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_cosmos::CosmosLeaseProvider;
    /// let builder = CosmosLeaseProvider::builder().database("billing").container("billing-leases");
    /// assert!(format!("{builder:?}").contains(r#"container: "billing-leases""#));
    /// ```
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = name.into();
        self
    }

    /// Whether to create the database and container on first use (default true; key auth
    /// only). The container is partitioned on `/partitionKey` with TTL on (no default).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// // The database and container are provisioned with the infrastructure:
    /// let provider = leasing_cosmos::CosmosLeaseProviderBuilder::from_env()
    ///     .create_if_missing(false)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// Partition-key strategy (default [`PartitionKeyStrategy::PerLease`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_cosmos::{CosmosLeaseProvider, PartitionKeyStrategy};
    /// // Names from `LeaseNameBuilder` (`env:region:tenant:service:resource`), one partition per tenant:
    /// let strategy = PartitionKeyStrategy::ByTenant { fallback: "shared".into() };
    /// assert_eq!(strategy.key_for("prod:eu:acme:billing:invoice-42", "unused"), "acme");
    /// let builder = CosmosLeaseProvider::builder().partition_key(strategy);
    /// assert!(format!("{builder:?}").contains("ByTenant"));
    /// ```
    pub fn partition_key(mut self, strategy: PartitionKeyStrategy) -> Self {
        self.partition_key = strategy;
        self
    }

    /// The transport's bound on one request (default 5 s; at least 100 ms), and the bound
    /// of connecting at build (twice this). The SDK's own throttling retries are off: the
    /// core retries, within the lease's safety margin. Within the lease engine each call
    /// also has the deadline the core gives it (see
    /// `leasing_abstractions::provider::deadline`), which usually ends it sooner; this
    /// bound matters for calls made outside the core. The fenced container bounds each of
    /// its calls by it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// let provider = leasing_cosmos::CosmosLeaseProviderBuilder::from_env()
    ///     .call_timeout(std::time::Duration::from_secs(2))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The `owner` written into each lease document (default
    /// [`owner_id`](leasing_abstractions::owner_id): `{host}-{pid}-{8 hex digits}`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// // Written into each lease document this process takes:
    /// let provider = leasing_cosmos::CosmosLeaseProviderBuilder::from_env()
    ///     .owner("billing-worker-3")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a document is kept after its last write before Cosmos DB's TTL deletes
    /// it (default 7 days; at least one second past the lease's duration).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// // Keep each lease document one day after its last write:
    /// let provider = leasing_cosmos::CosmosLeaseProviderBuilder::from_env()
    ///     .retention(std::time::Duration::from_secs(24 * 60 * 60))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Talk to a local emulator: certificate checks relaxed for loopback hosts only, HTTP/2
    /// and binary encoding off. Default: on for `localhost`, `127.0.0.1` and `[::1]`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// // The emulator in another container, by its service name: HTTP/2 and binary encoding
    /// // off (certificate checks are relaxed on loopback only). The key is a placeholder.
    /// let provider = leasing_cosmos::CosmosLeaseProvider::builder()
    ///     .key("https://cosmos-emulator:8081/", "ZmFrZS1rZXktZm9yLWRvY3M=")
    ///     .emulator(true)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn emulator(mut self, yes: bool) -> Self {
        self.emulator = Some(yes);
        self
    }

    /// Accept an account with multi-region writes. Off by default: such accounts resolve
    /// conflicting writes after the fact, so two regions could both grant one lease.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// // Knowingly: two write regions could both grant one lease.
    /// let provider = leasing_cosmos::CosmosLeaseProviderBuilder::from_env()
    ///     .allow_multi_region_writes(true)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn allow_multi_region_writes(mut self, yes: bool) -> Self {
        self.allow_multi_region_writes = yes;
        self
    }

    /// How many renewals [`LeaseProvider::renew_many`](leasing_abstractions::LeaseProvider::renew_many)
    /// runs at once (default 32).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// let provider = leasing_cosmos::CosmosLeaseProviderBuilder::from_env()
    ///     .renew_concurrency(8)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn renew_concurrency(mut self, n: usize) -> Self {
        self.renew_concurrency = n.max(1);
        self
    }

    /// The SDK's fault-injection rules (feature `fault_injection`, for tests).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// # use std::sync::Arc;
    /// use leasing_cosmos::{fault_injection::*, CosmosLeaseProviderBuilder};
    /// // A tenth of the requests answered 429 (throttled):
    /// let throttled = FaultInjectionResultBuilder::new()
    ///     .with_error(FaultInjectionErrorType::TooManyRequests)
    ///     .with_probability(0.1)
    ///     .build();
    /// let rule = Arc::new(FaultInjectionRuleBuilder::new("throttle", throttled).build());
    /// let provider = CosmosLeaseProviderBuilder::from_env().fault_injection_rules(vec![rule]).build().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "fault_injection")]
    pub fn fault_injection_rules(
        mut self,
        rules: Vec<Arc<azure_data_cosmos::fault_injection::FaultInjectionRule>>,
    ) -> Self {
        self.fault_rules = rules;
        self
    }

    /// Settings from the environment, in this order (the first that is set wins):
    /// 1. `LEASING_COSMOS_CONNECTION_STRING`;
    /// 2. `LEASING_COSMOS_ENDPOINT` with `LEASING_COSMOS_KEY`;
    /// 3. `LEASING_COSMOS_ENDPOINT` with a token credential: the one
    ///    `LEASING_COSMOS_CREDENTIAL` names (`client-secret`, `workload-identity`,
    ///    `managed-identity`, `developer-tools`), else a client secret when
    ///    `AZURE_CLIENT_SECRET` is set (with `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`; one
    ///    of them missing is an error naming it), else workload identity when
    ///    `AZURE_FEDERATED_TOKEN_FILE` is, else managed identity when `IDENTITY_ENDPOINT`
    ///    or `MSI_ENDPOINT` is (on a VM with only IMDS, set
    ///    `LEASING_COSMOS_CREDENTIAL=managed-identity`), else the developer tools (Azure
    ///    CLI, Azure Developer CLI). Chosen from the environment, not by trying each: the
    ///    order `leasing-azure` defines for both Azure providers.
    ///
    /// Also read: `LEASING_COSMOS_DATABASE`, `LEASING_COSMOS_CONTAINER`.
    ///
    /// What is missing or malformed is a `Configuration` error returned by
    /// [`build`](Self::build) (as on the other backends' builders).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_cosmos::CosmosLeaseProviderBuilder;
    /// // Usually set by the deployment (a placeholder key here):
    /// std::env::set_var("LEASING_COSMOS_CONNECTION_STRING",
    ///     "AccountEndpoint=https://myaccount.documents.azure.com:443/;AccountKey=ZmFrZS1rZXktZm9yLWRvY3M=;");
    /// std::env::set_var("LEASING_COSMOS_DATABASE", "billing");
    /// let builder = CosmosLeaseProviderBuilder::from_env();
    /// assert!(format!("{builder:?}").contains(r#"database: "billing""#));
    /// ```
    pub fn from_env() -> Self {
        match Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty())) {
            Ok(b) => b,
            Err(e) => Self {
                error: Some(e),
                ..Self::default()
            },
        }
    }

    pub(crate) fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut b = CosmosLeaseProvider::builder();
        if let Some(db) = var(env::DATABASE) {
            b = b.database(db);
        }
        if let Some(c) = var(env::CONTAINER) {
            b = b.container(c);
        }
        if let Some(cs) = var(env::CONNECTION_STRING) {
            return Ok(b.connection_string(cs));
        }
        let Some(endpoint) = var(env::ENDPOINT) else {
            return Err(LeaseError::configuration(
                "LEASING_COSMOS_ENDPOINT",
                "set LEASING_COSMOS_CONNECTION_STRING, or LEASING_COSMOS_ENDPOINT (with LEASING_COSMOS_KEY or an Azure identity)",
            ));
        };
        if let Some(key) = var(env::KEY) {
            return Ok(b.key(endpoint, key));
        }
        let cred = leasing_azure::credential_from_env(env::CREDENTIAL, &var)?;
        Ok(b.token_credential(endpoint, cred))
    }

    /// Connects, checks the account's write regions, and returns the provider. The
    /// database and container are created (or found) on first use.
    ///
    /// # Errors
    /// `Configuration` for missing or malformed settings, checked before any request (an
    /// endpoint that is not `https://`, or `http://` to another host than a local emulator,
    /// which the SDK refuses; a key that is not base64; a database or container name that
    /// is empty, too long, `.` or `..`, or holds `/ \ ? #`), or for a multi-region-write
    /// account without the opt-in; `ProviderUnavailable` when the account cannot be
    /// reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// use leasing_cosmos::CosmosLeaseProvider;
    /// // The key is a placeholder: read yours from a secret store.
    /// let provider = CosmosLeaseProvider::builder()
    ///     .key("https://myaccount.documents.azure.com:443/", "ZmFrZS1rZXktZm9yLWRvY3M=")
    ///     .database("billing")
    ///     .build()
    ///     .await?;
    /// println!("writes in {:?}", provider.write_locations());
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<CosmosLeaseProvider> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (endpoint, auth) = match (&self.connection_string, self.endpoint, self.auth) {
            (Some(cs), _, _) => {
                let (e, k) = parse_connection_string(cs.secret())?;
                (e, Auth::Key(k))
            }
            (None, Some(e), Some(a)) => (e, a),
            _ => return Err(LeaseError::configuration(
                "endpoint",
                "set a connection string, an endpoint and key, or an endpoint and token credential",
            )),
        };
        // Checked before any request: the SDK would report these only as an unreachable
        // or rejecting service, or (a key) as a 401.
        let parsed = AccountEndpoint::from(validate_endpoint(&endpoint)?);
        if let Auth::Key(key) = &auth {
            validate_key(key)?;
        }
        for (field, v) in [("database", &self.database), ("container", &self.container)] {
            if v.is_empty() || v.contains(['/', '\\', '?', '#']) || v.len() > 255 {
                return Err(LeaseError::configuration(
                    field,
                    "must be 1-255 characters without / \\ ? #",
                ));
            }
            // The SDK puts the name into the URL path as is, where `.` and `..` are
            // resolved as dot segments: the requests would reach other resources.
            if v == "." || v == ".." {
                return Err(LeaseError::configuration(field, "must not be . or .."));
            }
        }
        if self.call_timeout.is_zero() {
            return Err(LeaseError::configuration(
                "call_timeout",
                "must be positive",
            ));
        }
        if self.retention < Duration::from_secs(1) {
            return Err(LeaseError::configuration(
                "retention",
                "must be at least one second",
            ));
        }
        let emulator = self.emulator.unwrap_or_else(|| is_loopback(&endpoint));
        let client = client::connect(
            &endpoint,
            parsed,
            &auth,
            emulator,
            self.call_timeout,
            #[cfg(feature = "fault_injection")]
            self.fault_rules,
        )
        .await?;
        let account_info =
            crate::account::read_account(&endpoint, &auth, self.call_timeout).await?;
        if account_info.multiple_write_locations && !self.allow_multi_region_writes {
            return Err(LeaseError::configuration(
                "allow_multi_region_writes",
                format!(
                    "the account writes in several regions ({}); ETag checks only hold within one write region, so two regions could both grant a lease. Use a single-write-region account, or opt in knowingly",
                    account_info.write_locations.join(", ")
                ),
            ));
        }
        Ok(CosmosLeaseProvider {
            inner: Arc::new(Inner {
                client,
                container: OnceCell::new(),
                endpoint,
                auth_kind: match auth {
                    Auth::Key(_) => "key",
                    Auth::Token(_) => "token",
                },
                create_if_missing: self.create_if_missing,
                database: self.database,
                container_name: self.container,
                partition_key: self.partition_key,
                call_timeout: self.call_timeout,
                owner: self.owner.unwrap_or_else(leasing_abstractions::owner_id),
                retention: self.retention,
                renew_concurrency: self.renew_concurrency,
                request_charge_centi: AtomicU64::new(0),
                write_locations: account_info.write_locations,
                existing: KnownNames::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasing_abstractions::ErrorKind;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn from_env_follows_the_documented_order() {
        let b = CosmosLeaseProviderBuilder::from_lookup(lookup(&[
            (
                "LEASING_COSMOS_CONNECTION_STRING",
                "AccountEndpoint=http://x/;AccountKey=a2V5;",
            ),
            ("LEASING_COSMOS_ENDPOINT", "http://ignored/"),
            ("LEASING_COSMOS_DATABASE", "db1"),
            ("LEASING_COSMOS_CONTAINER", "c1"),
        ]))
        .expect("connection string");
        let dbg = format!("{b:?}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert!(!dbg.contains("a2V5"), "{dbg}");
        assert!(dbg.contains("db1"), "{dbg}");
        assert!(dbg.contains("c1"), "{dbg}");
        let b = CosmosLeaseProviderBuilder::from_lookup(lookup(&[
            ("LEASING_COSMOS_ENDPOINT", "http://x/"),
            ("LEASING_COSMOS_KEY", "a2V5"),
        ]))
        .expect("endpoint and key");
        assert!(format!("{b:?}").contains("Key(<redacted>)"));
        for extra in [
            vec![],
            vec![("IDENTITY_ENDPOINT", "http://169.254.169.254/")],
            vec![("MSI_ENDPOINT", "http://169.254.169.254/")],
            vec![("LEASING_COSMOS_CREDENTIAL", "managed-identity")],
            vec![("LEASING_COSMOS_CREDENTIAL", "developer-tools")],
            vec![
                ("AZURE_CLIENT_SECRET", "s3cr3t"),
                ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
                ("AZURE_CLIENT_ID", "app"),
            ],
        ] {
            let mut pairs = vec![(
                "LEASING_COSMOS_ENDPOINT",
                "https://acct.documents.azure.com/",
            )];
            pairs.extend(extra);
            let b = CosmosLeaseProviderBuilder::from_lookup(lookup(&pairs)).expect("token");
            let dbg = format!("{b:?}");
            assert!(dbg.contains("TokenCredential"), "{dbg}");
            assert!(!dbg.contains("s3cr3t"), "{dbg}");
        }
        let e = CosmosLeaseProviderBuilder::from_lookup(lookup(&[
            (
                "LEASING_COSMOS_ENDPOINT",
                "https://acct.documents.azure.com/",
            ),
            ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent"),
        ]));
        // Workload identity without its tenant/client settings is a configuration error.
        if let Err(e) = e {
            assert_eq!(e.kind(), ErrorKind::Configuration);
        }
        // The order shared with Blob (leasing_azure::credential): an unknown name in
        // LEASING_COSMOS_CREDENTIAL, or a client secret without its tenant (asked for by
        // name, or by AZURE_CLIENT_SECRET alone), is a `credential` error naming the
        // variable to fix.
        for (vars, says) in [
            (
                vec![("LEASING_COSMOS_CREDENTIAL", "magic")],
                "LEASING_COSMOS_CREDENTIAL",
            ),
            (
                vec![("LEASING_COSMOS_CREDENTIAL", "client-secret")],
                "AZURE_TENANT_ID",
            ),
            (vec![("AZURE_CLIENT_SECRET", "s3cr3t")], "AZURE_TENANT_ID"),
        ] {
            let mut pairs = vec![(
                "LEASING_COSMOS_ENDPOINT",
                "https://acct.documents.azure.com/",
            )];
            pairs.extend(vars);
            let e = CosmosLeaseProviderBuilder::from_lookup(lookup(&pairs)).expect_err(says);
            assert_eq!(e.kind(), ErrorKind::Configuration);
            assert_eq!(e.field(), Some("credential"), "{e}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(!format!("{e:?}").contains("s3cr3t"), "{e:?}");
        }
        let e = CosmosLeaseProviderBuilder::from_lookup(lookup(&[])).expect_err("nothing set");
        assert_eq!(e.field(), Some("LEASING_COSMOS_ENDPOINT"));
    }
}
