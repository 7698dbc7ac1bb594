//! [`CosmosLeaseProvider`]: one document per lease, guarded by ETags, expiry on the
//! service's clock.

use crate::config::{
    is_loopback, parse_connection_string, validate_endpoint, validate_key, Auth,
    PartitionKeyStrategy, DEFAULT_CALL_TIMEOUT, DEFAULT_CONTAINER, DEFAULT_DATABASE,
    DEFAULT_RETENTION,
};
use crate::document::{document_id, LeaseDocument, State};
use crate::error::{self, Failure, Mapped};
use azure_core::credentials::{Secret, TokenCredential};
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{ContainerProperties, ItemResponse};
use azure_data_cosmos::options::{
    BinaryEncodingOptions, ConnectionPoolOptions, ContentResponseOnWrite, ItemReadOptions,
    ItemWriteOptions, OperationOptions, Precondition, QueryOptions, Region,
    ServerCertificateValidation, ThrottlingRetryOptions,
};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosRuntime, FeedScope, Query,
    RoutingStrategy,
};
use futures::StreamExt;
use leasing_abstractions::{
    AcquireRequest, BoxFuture, ErrorKind, LeaseDuration, LeaseError, LeaseExpiry, LeaseGrant,
    LeaseInfo, LeasePage, LeaseProvider, ListRequest, ProviderCapabilities, Result,
};
use serde::Deserialize;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Shortest lease: `_ts` has a resolution of one second.
pub const MIN_DURATION: Duration = Duration::from_secs(1);
/// Longest lease.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// How many attempts a release or break makes when the document keeps changing under it.
const WRITE_ATTEMPTS: usize = 5;

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
            renew_concurrency: 32,
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

    /// Deadline of each call to the service (default 5 s). The SDK's own throttling
    /// retries are off: the core retries, within the lease's safety margin.
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

    /// The `owner` written into each lease document (default `host:pid`).
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

    /// How many renewals [`LeaseProvider::renew_many`] runs at once (default 32).
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
    ///    `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID` and `AZURE_CLIENT_ID` are set, else
    ///    workload identity when `AZURE_FEDERATED_TOKEN_FILE` is, else managed identity
    ///    when `IDENTITY_ENDPOINT` or `MSI_ENDPOINT` is, else the developer tools (Azure
    ///    CLI, Azure Developer CLI). Chosen from the environment, not by trying each (the
    ///    Blob provider's order).
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
        if let Some(db) = var("LEASING_COSMOS_DATABASE") {
            b = b.database(db);
        }
        if let Some(c) = var("LEASING_COSMOS_CONTAINER") {
            b = b.container(c);
        }
        if let Some(cs) = var("LEASING_COSMOS_CONNECTION_STRING") {
            return Ok(b.connection_string(cs));
        }
        let Some(endpoint) = var("LEASING_COSMOS_ENDPOINT") else {
            return Err(LeaseError::configuration(
                "LEASING_COSMOS_ENDPOINT",
                "set LEASING_COSMOS_CONNECTION_STRING, or LEASING_COSMOS_ENDPOINT (with LEASING_COSMOS_KEY or an Azure identity)",
            ));
        };
        if let Some(key) = var("LEASING_COSMOS_KEY") {
            return Ok(b.key(endpoint, key));
        }
        let cred = env_credential(&var)?;
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
        let account = match &auth {
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
        let pool = pool
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
            client = client
                .with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false));
        }
        #[cfg(feature = "fault_injection")]
        if !self.fault_rules.is_empty() {
            client = client
                .with_fault_injection_rules(self.fault_rules)
                .map_err(|e| unavailable("fault injection", e))?;
        }
        let connect = client.build(account, RoutingStrategy::ProximityTo(Region::from("")));
        let client = tokio::time::timeout(self.call_timeout * 2, connect)
            .await
            .map_err(|_| error::deadline(&format!("connect to {endpoint}"), self.call_timeout * 2))?
            .map_err(|e| unavailable(&format!("connect to {endpoint}"), e))?;
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
                owner: self.owner.unwrap_or_else(default_owner),
                retention: self.retention,
                renew_concurrency: self.renew_concurrency,
                request_charge_centi: AtomicU64::new(0),
                write_locations: account_info.write_locations,
                existing: KnownNames::default(),
            }),
        })
    }
}

/// The token credential `from_env` picks: the one `LEASING_COSMOS_CREDENTIAL` names, else
/// the first whose settings are present (the same order as the Blob provider's).
fn env_credential(var: &impl Fn(&str) -> Option<String>) -> Result<Arc<dyn TokenCredential>> {
    let cfg = |e: azure_core::Error| {
        LeaseError::configuration(
            "credential",
            format!("could not build the Azure identity: {e}"),
        )
    };
    let secret = match (
        var("AZURE_CLIENT_SECRET"),
        var("AZURE_TENANT_ID"),
        var("AZURE_CLIENT_ID"),
    ) {
        (Some(s), Some(t), Some(c)) => Some((s, t, c)),
        _ => None,
    };
    let choice = var("LEASING_COSMOS_CREDENTIAL").unwrap_or_else(|| {
        let auto = if secret.is_some() {
            "client-secret"
        } else if var("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            "workload-identity"
        } else if var("IDENTITY_ENDPOINT").is_some() || var("MSI_ENDPOINT").is_some() {
            "managed-identity"
        } else {
            "developer-tools"
        };
        auto.to_owned()
    });
    match (choice.as_str(), secret) {
        ("client-secret", Some((s, t, c))) => Ok(azure_identity::ClientSecretCredential::new(
            &t,
            c,
            Secret::new(s),
            None,
        )
        .map_err(cfg)?),
        ("workload-identity", _) => {
            Ok(azure_identity::WorkloadIdentityCredential::new(None).map_err(cfg)?)
        }
        ("managed-identity", _) => {
            Ok(azure_identity::ManagedIdentityCredential::new(None).map_err(cfg)?)
        }
        ("developer-tools", _) => {
            Ok(azure_identity::DeveloperToolsCredential::new(None).map_err(cfg)?)
        }
        (other, _) => Err(LeaseError::configuration(
            "LEASING_COSMOS_CREDENTIAL",
            format!(
                "{other:?} is not one of client-secret (with AZURE_CLIENT_SECRET, AZURE_TENANT_ID, AZURE_CLIENT_ID), workload-identity, managed-identity, developer-tools"
            ),
        )),
    }
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host}:{}", std::process::id())
}

/// SDK retries off (the core retries within the lease's margin), session capture on.
fn default_operation_options() -> OperationOptions {
    let mut o = OperationOptions::default();
    let mut throttling = ThrottlingRetryOptions::default();
    throttling.max_retry_count = Some(0);
    o.throttling_retry_options = Some(throttling);
    o.max_failover_retry_count = Some(0);
    o
}

fn with_content(on: bool) -> OperationOptions {
    let mut o = OperationOptions::default();
    o.content_response_on_write = Some(if on {
        ContentResponseOnWrite::Enabled
    } else {
        ContentResponseOnWrite::Disabled
    });
    o
}

/// Azure Cosmos DB lease provider. See the crate docs and `docs/providers/cosmos.md`.
///
/// Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct CosmosLeaseProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: CosmosClient,
    container: OnceCell<ContainerClient>,
    endpoint: String,
    auth_kind: &'static str,
    create_if_missing: bool,
    database: String,
    container_name: String,
    partition_key: PartitionKeyStrategy,
    call_timeout: Duration,
    owner: String,
    retention: Duration,
    renew_concurrency: usize,
    /// Sum of the request charges (RU × 100) of every call this provider made.
    request_charge_centi: AtomicU64,
    write_locations: Vec<String>,
    /// Names whose document this provider has seen exist (a hint: acquire then starts
    /// with the read instead of a create that would answer 409).
    existing: KnownNames,
}

/// A bounded set of names (cleared when full: it is only a hint).
#[derive(Default)]
struct KnownNames(std::sync::Mutex<std::collections::HashSet<String>>);

impl KnownNames {
    const CAPACITY: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, name: &str) -> bool {
        self.lock().contains(name)
    }

    fn insert(&self, name: &str) {
        let mut set = self.lock();
        if set.len() >= Self::CAPACITY {
            set.clear();
        }
        set.insert(name.to_owned());
    }

    fn remove(&self, name: &str) {
        self.lock().remove(name);
    }
}

impl fmt::Debug for CosmosLeaseProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("CosmosLeaseProvider")
            .field("endpoint", &i.endpoint)
            .field("auth", &i.auth_kind)
            .field("database", &i.database)
            .field("container", &i.container_name)
            .field("partition_key", &i.partition_key)
            .field("call_timeout", &i.call_timeout)
            .field("owner", &i.owner)
            .finish_non_exhaustive()
    }
}

/// What a read of a lease document returns: the document and the service clock.
struct Observed {
    doc: LeaseDocument,
    /// Service time (ms) when the document was read.
    now_ms: i64,
}

#[derive(Deserialize)]
struct DocAndClock {
    doc: LeaseDocument,
    now: i64,
}

fn ms_to_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms(d: LeaseDuration) -> u64 {
    match d {
        LeaseDuration::Finite(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        LeaseDuration::Infinite => u64::MAX,
    }
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

    /// Request units charged to this provider so far (sum of `x-ms-request-charge`).
    pub fn request_charge_total(&self) -> f64 {
        self.inner.request_charge_centi.load(Ordering::Relaxed) as f64 / 100.0
    }

    /// The account's write regions, read at start-up.
    pub fn write_locations(&self) -> &[String] {
        &self.inner.write_locations
    }

    /// The document id of a lease name (see [`document_id`]).
    pub fn document_id(name: &str) -> String {
        document_id(name)
    }

    /// What a [`CosmosFencedResource`](crate::CosmosFencedResource) shares with this
    /// provider: its SDK client (connection pool, credentials, retries off), database,
    /// call timeout, and whether it may create containers.
    pub(crate) fn shared(&self) -> crate::fenced::Shared<'_> {
        let i = &self.inner;
        crate::fenced::Shared {
            client: &i.client,
            endpoint: &i.endpoint,
            database: &i.database,
            lease_container: &i.container_name,
            call_timeout: i.call_timeout,
            may_create: self.may_create(),
        }
    }

    fn partition_for(&self, name: &str, id: &str) -> String {
        self.inner.partition_key.key_for(name, id)
    }

    fn charge(&self, op: &'static str, ru: f64) {
        let centi = (ru * 100.0).round().max(0.0) as u64;
        self.inner
            .request_charge_centi
            .fetch_add(centi, Ordering::Relaxed);
        tracing::trace!(
            cosmos.operation = op,
            cosmos.request_charge = ru,
            "cosmos request"
        );
    }

    /// Runs one call under the per-call deadline.
    async fn call<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = azure_data_cosmos::Result<T>>,
    ) -> std::result::Result<T, Mapped> {
        match tokio::time::timeout(self.inner.call_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let ru = e
                    .response()
                    .and_then(|r| r.headers().request_charge)
                    .map_or(0.0, f64::from);
                self.charge(what, ru);
                Err(error::map(e, what))
            }
            Err(_) => Err(Mapped {
                failure: Failure::Other,
                error: error::deadline(what, self.inner.call_timeout),
            }),
        }
    }

    fn note(&self, what: &'static str, r: &ItemResponse) {
        self.charge(
            what,
            r.headers().request_charge().map_or(0.0, |c| f64::from(*c)),
        );
    }

    /// The container client, creating the database and container on first use.
    async fn container(&self) -> Result<&ContainerClient> {
        self.inner
            .container
            .get_or_try_init(|| async {
                if self.may_create() {
                    self.ensure_container().await?;
                }
                let db = self
                    .inner
                    .client
                    .database_client(self.inner.database.as_str());
                match self
                    .call(
                        "open container",
                        db.container_client(self.inner.container_name.as_str(), None),
                    )
                    .await
                {
                    Ok(c) => Ok(c),
                    Err(m) if m.failure == Failure::NotFound => Err(LeaseError::configuration(
                        "container",
                        format!(
                            "database {:?} or container {:?} does not exist; create it, or let the provider create it (key auth, create_if_missing)",
                            self.inner.database, self.inner.container_name
                        ),
                    )),
                    Err(m) => Err(m.error),
                }
            })
            .await
    }

    fn may_create(&self) -> bool {
        self.inner.create_if_missing && self.inner.auth_kind == "key"
    }

    /// Creates the database and container unless they exist; safe when many processes
    /// race (409 means someone else created it, which is as good).
    async fn ensure_container(&self) -> Result<()> {
        let created = self
            .call(
                "create database",
                self.inner
                    .client
                    .create_database(&self.inner.database, None),
            )
            .await;
        conflict_is_fine(created)?;
        let db = self
            .inner
            .client
            .database_client(self.inner.database.as_str());
        let props =
            ContainerProperties::new(self.inner.container_name.clone(), "/partitionKey".into())
                .with_default_ttl(azure_data_cosmos::models::TimeToLive::NoDefault);
        conflict_is_fine(
            self.call("create container", db.create_container(props, None))
                .await,
        )
    }

    /// The document and the service clock, in one single-partition query.
    async fn observe(&self, name: &str) -> Result<Option<Observed>> {
        let id = document_id(name);
        let pk = self.partition_for(name, &id);
        let container = self.container().await?;
        // The partition key is also in the filter: the local emulator ignores the
        // partition header of queries (harmless and redundant on the service).
        let query = Query::from(
            "SELECT c AS doc, GetCurrentTimestamp() AS now FROM c WHERE c.id = @id AND c.partitionKey = @pk",
        )
        .with_parameter("@id", &id)
        .and_then(|q| q.with_parameter("@pk", &pk))
        .map_err(|e| error::corrupt("query", e))?;
        let fut = async {
            let iter = container
                .query_items::<DocAndClock>(
                    query,
                    FeedScope::partition(pk),
                    Some(QueryOptions::default()),
                )
                .await?;
            let mut pages = iter.into_pages();
            let mut rows = Vec::new();
            let mut ru = 0.0;
            while let Some(page) = pages.next().await {
                let page = page?;
                ru += page
                    .headers()
                    .request_charge()
                    .map_or(0.0, |c| f64::from(*c));
                rows.extend(page.into_items());
            }
            Ok((rows, ru))
        };
        let (rows, ru) = match self.call("read", fut).await {
            Ok(v) => v,
            // No container (yet, or any more): nothing is held.
            Err(m) if m.failure == Failure::NotFound => return Ok(None),
            Err(m) => return Err(m.error),
        };
        self.charge("read", ru);
        Ok(rows.into_iter().next().map(|r| Observed {
            doc: r.doc,
            now_ms: r.now,
        }))
    }

    /// Point read of the document (no clock).
    async fn read_doc(&self, name: &str) -> Result<Option<LeaseDocument>> {
        let id = document_id(name);
        let pk = self.partition_for(name, &id);
        let container = self.container().await?;
        match self
            .call(
                "read",
                container.read_item(pk, &id, Some(ItemReadOptions::default())),
            )
            .await
        {
            Ok(r) => {
                self.note("read", &r);
                // The body carries `_etag` (and `_ts`): the service's own fields.
                let doc: LeaseDocument = r.into_model().map_err(|e| error::corrupt("read", e))?;
                Ok(Some(doc))
            }
            Err(m) if m.failure == Failure::NotFound => Ok(None),
            Err(m) => Err(m.error),
        }
    }

    /// Sends `doc`: a create (no ETag) or a replace under `If-Match: etag`.
    async fn send(
        &self,
        what: &'static str,
        doc: &LeaseDocument,
        if_match: Option<&str>,
        content: bool,
    ) -> std::result::Result<ItemResponse, Mapped> {
        let container = self.container().await.map_err(|error| Mapped {
            failure: Failure::Other,
            error,
        })?;
        let options = ItemWriteOptions::default().with_operation_options(with_content(content));
        let pk = doc.partition_key.clone();
        let resp = match if_match {
            None => {
                self.call(what, container.create_item(pk, &doc.id, doc, Some(options)))
                    .await?
            }
            Some(etag) => {
                let options = options.with_precondition(Precondition::if_match(
                    azure_core::http::Etag::from(etag.to_owned()),
                ));
                self.call(
                    what,
                    container.replace_item(pk, &doc.id, doc, Some(options)),
                )
                .await?
            }
        };
        self.note(what, &resp);
        Ok(resp)
    }

    /// Writes `doc` and returns it as written (with `_ts` and `_etag`).
    async fn write_doc(
        &self,
        what: &'static str,
        doc: &LeaseDocument,
        if_match: Option<&str>,
    ) -> std::result::Result<LeaseDocument, Mapped> {
        let resp = self.send(what, doc, if_match, true).await?;
        resp.into_model().map_err(|e| Mapped {
            failure: Failure::Other,
            error: error::corrupt(what, e),
        })
    }

    /// Replaces `doc` under `If-Match: etag` and returns the new ETag (empty if the
    /// service sent none: the next conditional write then fails and re-reads).
    async fn write_tag(
        &self,
        what: &'static str,
        doc: &LeaseDocument,
        etag: &str,
    ) -> std::result::Result<String, Mapped> {
        let resp = self.send(what, doc, Some(etag), false).await?;
        Ok(resp
            .headers()
            .etag()
            .map(ToString::to_string)
            .unwrap_or_default())
    }

    fn ttl_secs(&self, duration_ms: u64) -> i64 {
        let secs = self
            .inner
            .retention
            .as_secs()
            .max(duration_ms.div_ceil(1000) + 1);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    fn new_doc(&self, req: &AcquireRequest, lease_id: &str) -> LeaseDocument {
        let id = document_id(&req.name);
        let duration = duration_ms(req.duration);
        LeaseDocument {
            partition_key: self.partition_for(&req.name, &id),
            id,
            lease_name: req.name.clone(),
            lease_id: lease_id.to_owned(),
            fencing_token: None,
            owner: Some(self.inner.owner.clone()),
            acquired_at: None,
            expires_at: Some(wall_ms().saturating_add(i64::try_from(duration).unwrap_or(i64::MAX))),
            duration,
            metadata: req.metadata.clone(),
            ttl: self.ttl_secs(duration),
            state: State::Held,
            ts: 0,
            etag: None,
        }
    }

    fn grant_of(
        &self,
        req: &AcquireRequest,
        written: &LeaseDocument,
        sent_at: Instant,
    ) -> LeaseGrant {
        // The body always carries `_etag`; without one the first renewal fails its
        // If-Match and re-reads the document.
        LeaseGrant::new(
            req,
            written.lease_id.clone(),
            written.token(),
            ms_to_time(written.acquired_ms()),
            sent_at,
        )
        .with_version(written.etag.clone().unwrap_or_default())
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<Option<LeaseGrant>> {
        let lease_id = uuid::Uuid::new_v4().to_string();
        // Create first (one round trip when the name is new) unless this provider has
        // seen the document exist; 409 → look at the holder.
        let mut try_create = !self.inner.existing.contains(&req.name);
        for _ in 0..WRITE_ATTEMPTS {
            if try_create {
                let sent_at = Instant::now();
                let doc = self.new_doc(req, &lease_id);
                match self.write_doc("acquire", &doc, None).await {
                    Ok(written) => {
                        self.inner.existing.insert(&req.name);
                        return Ok(Some(self.grant_of(req, &written, sent_at)));
                    }
                    Err(m) if m.failure == Failure::Conflict => {}
                    // The container is gone (deleted, or an emulator restarted): recreate
                    // it when allowed, and try again.
                    Err(m) if m.failure == Failure::NotFound && self.may_create() => {
                        self.ensure_container().await?;
                        continue;
                    }
                    Err(m) => return Err(acquire_error(m)),
                }
            }
            try_create = true;
            let sent_at = Instant::now();
            let Some(seen) = self.observe(&req.name).await? else {
                self.inner.existing.remove(&req.name);
                continue; // no document (deleted in between, or never made): create
            };
            self.inner.existing.insert(&req.name);
            if seen.doc.held_at(seen.now_ms) {
                return Ok(None);
            }
            // Free or expired on the service's clock: take it over under If-Match.
            let mut next = self.new_doc(req, &lease_id);
            next.fencing_token = Some(seen.doc.token().saturating_add(1));
            next.acquired_at = Some(seen.now_ms);
            let etag = seen.doc.etag.clone().unwrap_or_default();
            return match self.write_doc("acquire", &next, Some(&etag)).await {
                Ok(written) => Ok(Some(self.grant_of(req, &written, sent_at))),
                // Someone else took it (or changed it) first: held by another.
                Err(m) if m.failure == Failure::PreconditionFailed => Ok(None),
                Err(m) if m.failure == Failure::NotFound => {
                    self.inner.existing.remove(&req.name);
                    continue;
                }
                Err(m) => Err(acquire_error(m)),
            };
        }
        Ok(None)
    }

    fn held_doc(&self, grant: &LeaseGrant, state: State) -> LeaseDocument {
        let id = document_id(&grant.name);
        let duration = duration_ms(grant.duration);
        LeaseDocument {
            partition_key: self.partition_for(&grant.name, &id),
            id,
            lease_name: grant.name.clone(),
            lease_id: grant.lease_id.clone(),
            fencing_token: Some(grant.fencing_token),
            owner: Some(self.inner.owner.clone()),
            acquired_at: Some(
                grant
                    .acquired_at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ),
            expires_at: match state {
                State::Held => {
                    Some(wall_ms().saturating_add(i64::try_from(duration).unwrap_or(i64::MAX)))
                }
                State::Free => None,
            },
            duration,
            metadata: match state {
                State::Held => grant.metadata.clone(),
                State::Free => Default::default(),
            },
            ttl: self.ttl_secs(duration),
            state,
            ts: 0,
            etag: None,
        }
    }

    async fn renew_one(&self, grant: &LeaseGrant) -> Result<()> {
        let doc = self.held_doc(grant, State::Held);
        let mut etag = grant.version.get();
        for _ in 0..2 {
            if let Some(tag) = etag.as_deref() {
                match self.write_tag("renew", &doc, tag).await {
                    Ok(new_tag) => {
                        grant.version.set(new_tag);
                        return Ok(());
                    }
                    Err(m) if m.failure == Failure::NotFound => {
                        return Err(LeaseError::lost("cosmos db: renew: the lease document is gone (expired and deleted by TTL, or deleted by an operator)"));
                    }
                    Err(m) if m.failure == Failure::PreconditionFailed => {}
                    Err(m) => return Err(m.error),
                }
            }
            // The ETag moved (or the grant has none). If the document still holds our
            // lease id (an earlier renewal whose answer was lost), continue from its
            // current version; otherwise the lease is lost.
            match self.read_doc(&grant.name).await? {
                Some(cur) if cur.lease_id == grant.lease_id && cur.state == State::Held => {
                    etag = cur.etag;
                }
                _ => {
                    return Err(LeaseError::lost(
                        "cosmos db: renew: the lease was taken over, broken or released",
                    ))
                }
            }
        }
        // Still ours but changing under us (our own concurrent writes): transient.
        Err(LeaseError::unavailable(
            "cosmos db: renew: the lease document keeps changing under this grant",
        ))
    }

    async fn release_one(&self, grant: &LeaseGrant) -> Result<()> {
        let doc = self.held_doc(grant, State::Free);
        let mut etag = grant.version.get();
        for _ in 0..WRITE_ATTEMPTS {
            if let Some(tag) = etag.as_deref() {
                match self.write_tag("release", &doc, tag).await {
                    // The grant keeps the held version: a renewal after release must
                    // fail its If-Match.
                    Ok(_) => return Ok(()),
                    Err(m) if m.failure == Failure::NotFound => return Ok(()),
                    Err(m) if m.failure == Failure::PreconditionFailed => {}
                    Err(m) => return Err(m.error),
                }
            }
            match self.read_doc(&grant.name).await? {
                Some(cur) if cur.lease_id == grant.lease_id && cur.state == State::Held => {
                    etag = cur.etag;
                }
                // Released already, taken over or gone: nothing of ours to release.
                _ => return Ok(()),
            }
        }
        Err(LeaseError::unavailable(
            "cosmos db: release: the lease document kept changing",
        ))
    }

    async fn break_one(&self, name: &str) -> Result<bool> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(seen) = self.observe(name).await? else {
                return Ok(false);
            };
            if !seen.doc.held_at(seen.now_ms) {
                return Ok(false);
            }
            let mut doc = seen.doc.clone();
            doc.fencing_token = Some(seen.doc.token());
            doc.acquired_at = Some(seen.doc.acquired_ms());
            doc.state = State::Free;
            doc.metadata = Default::default();
            doc.expires_at = None;
            let etag = seen.doc.etag.clone().unwrap_or_default();
            match self.write_tag("break", &doc, &etag).await {
                Ok(_) => return Ok(true),
                Err(m) if m.failure == Failure::NotFound => return Ok(false),
                Err(m) if m.failure == Failure::PreconditionFailed => {}
                Err(m) => return Err(m.error),
            }
        }
        Err(LeaseError::unavailable(
            "cosmos db: break: the lease document kept changing",
        ))
    }

    fn info_of(doc: &LeaseDocument) -> LeaseInfo {
        LeaseInfo::new(
            doc.lease_name.clone(),
            Some(doc.lease_id.clone()),
            doc.token(),
            ms_to_time(doc.acquired_ms()),
            LeaseExpiry::At(ms_to_time(doc.expiry_ms())),
            doc.metadata.clone(),
        )
    }

    async fn inspect_one(&self, name: &str) -> Result<Option<LeaseInfo>> {
        Ok(self
            .observe(name)
            .await?
            .filter(|s| s.doc.held_at(s.now_ms))
            .map(|s| Self::info_of(&s.doc)))
    }

    async fn list_page(&self, request: &ListRequest) -> Result<LeasePage> {
        let container = self.container().await?;
        let after = request.cursor.clone().unwrap_or_default();
        let query = Query::from(
            "SELECT c AS doc, GetCurrentTimestamp() AS now FROM c WHERE c.state = 'held' AND STARTSWITH(c.leaseName, @prefix) AND c.leaseName > @after",
        )
        .with_parameter("@prefix", &request.prefix)
        .and_then(|q| q.with_parameter("@after", &after))
        .map_err(|e| error::corrupt("list", e))?;
        let fut = async {
            let iter = container
                .query_items::<DocAndClock>(
                    query,
                    FeedScope::full_container(),
                    Some(QueryOptions::default()),
                )
                .await?;
            let mut pages = iter.into_pages();
            let mut rows = Vec::new();
            let mut ru = 0.0;
            while let Some(page) = pages.next().await {
                let page = page?;
                ru += page
                    .headers()
                    .request_charge()
                    .map_or(0.0, |c| f64::from(*c));
                rows.extend(page.into_items());
            }
            Ok((rows, ru))
        };
        let (rows, ru) = match self.call("list", fut).await {
            Ok(v) => v,
            Err(m) if m.failure == Failure::NotFound => {
                return Ok(LeasePage::new(Vec::new(), None))
            }
            Err(m) => return Err(m.error),
        };
        self.charge("list", ru);
        let mut held: Vec<LeaseDocument> = rows
            .into_iter()
            .filter(|r| r.doc.held_at(r.now))
            .map(|r| r.doc)
            .collect();
        held.sort_by(|a, b| a.lease_name.cmp(&b.lease_name));
        let more = held.len() > request.limit;
        held.truncate(request.limit);
        let cursor = if more {
            held.last().map(|d| d.lease_name.clone())
        } else {
            None
        };
        Ok(LeasePage::new(
            held.iter().map(Self::info_of).collect(),
            cursor,
        ))
    }
}

/// A create that found the resource already there (409) is as good as one that made it.
fn conflict_is_fine<T>(r: std::result::Result<T, Mapped>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(m) if m.failure == Failure::Conflict => Ok(()),
        Err(m) => Err(m.error),
    }
}

/// During acquisition, a 412/404 from an unexpected place is not "lost" but a failed
/// acquisition; other kinds stay.
fn acquire_error(m: Mapped) -> LeaseError {
    if m.error.kind() == ErrorKind::Lost {
        LeaseError::new(ErrorKind::Acquisition, m.error.message().to_owned())
    } else {
        m.error
    }
}

impl LeaseProvider for CosmosLeaseProvider {
    fn provider_name(&self) -> &'static str {
        "cosmos"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(MIN_DURATION, MAX_DURATION)
            .with_duration_granularity(Duration::from_secs(1))
            .with_listing(true)
            .with_max_renew_batch(self.inner.renew_concurrency)
    }

    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            self.capabilities().check_duration(request.duration)?;
            self.acquire(request)
                .await
                .map_err(|e| e.or_lease(&request.name, None))
        })
    }

    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.renew_one(grant)
                .await
                .map_err(|e| e.or_lease(&grant.name, Some(&grant.lease_id)))
        })
    }

    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let calls: Vec<BoxFuture<'a, Result<()>>> =
                grants.iter().map(|g| self.renew(g)).collect();
            futures::stream::iter(calls)
                .buffered(self.inner.renew_concurrency)
                .collect()
                .await
        })
    }

    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.release_one(grant)
                .await
                .map_err(|e| e.or_lease(&grant.name, Some(&grant.lease_id)))
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move {
            self.inspect_one(name)
                .await
                .map_err(|e| e.or_lease(name, None))
        })
    }

    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.break_one(name)
                .await
                .map_err(|e| e.or_lease(name, None))
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(self.list_page(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        for bad in ["client-secret", "magic"] {
            let e = CosmosLeaseProviderBuilder::from_lookup(lookup(&[
                (
                    "LEASING_COSMOS_ENDPOINT",
                    "https://acct.documents.azure.com/",
                ),
                ("LEASING_COSMOS_CREDENTIAL", bad),
            ]))
            .expect_err(bad);
            assert_eq!(e.field(), Some("LEASING_COSMOS_CREDENTIAL"));
        }
        let e = CosmosLeaseProviderBuilder::from_lookup(lookup(&[])).expect_err("nothing set");
        assert_eq!(e.field(), Some("LEASING_COSMOS_ENDPOINT"));
    }

    #[test]
    fn known_names_are_a_bounded_hint() {
        let k = KnownNames::default();
        k.insert("a");
        assert!(k.contains("a"));
        k.remove("a");
        assert!(!k.contains("a"));
        for i in 0..KnownNames::CAPACITY {
            k.insert(&i.to_string());
        }
        k.insert("last");
        assert!(k.contains("last"));
        assert!(!k.contains("0"));
    }

    #[test]
    fn small_conversions() {
        assert_eq!(ms_to_time(-1), UNIX_EPOCH);
        assert_eq!(ms_to_time(1500), UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(duration_ms(LeaseDuration::Infinite), u64::MAX);
        assert_eq!(duration_ms(Duration::from_secs(2).into()), 2000);
        assert!(wall_ms() > 0);
        assert!(default_owner().contains(':'));
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
        let err = acquire_error(error::map_status(412, None, None, true, "acquire"));
        assert_eq!(err.kind(), ErrorKind::Acquisition);
        let err = acquire_error(error::map_status(503, None, None, true, "acquire"));
        assert_eq!(err.kind(), ErrorKind::ProviderUnavailable);
    }
}
