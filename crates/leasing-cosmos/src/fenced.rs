//! [`CosmosFencedResource`]: documents that refuse a stale holder's write, by a
//! conditional replace on the document's ETag.

use crate::client::with_content;
use crate::document::document_id;
use crate::error::{self, Failure, Mapped};
use crate::CosmosLeaseProvider;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{ContainerProperties, ItemResponse};
use azure_data_cosmos::options::{ItemReadOptions, ItemWriteOptions, Precondition};
use azure_data_cosmos::CosmosClient;
use leasing_abstractions::fence::{check, Fence, FencedWrite};
use leasing_abstractions::{LeaseError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `kind` of an item document: a document without it is never overwritten.
const KIND: &str = "fencedItem";

/// Cosmos DB's limit on an id, in bytes.
const MAX_ID_BYTES: usize = 1023;

/// The largest value: its base64 must fit a 2 MiB document with room for the rest.
const MAX_VALUE_BYTES: usize = 1536 * 1024 - 48 * 1024;

/// An item: the value and, per lease name, the largest token that wrote it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemDocument {
    id: String,
    partition_key: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    key: String,
    /// Base64 of the value.
    #[serde(default)]
    value: String,
    /// Lease name → largest token, in decimal (a JSON number is a double: tokens past
    /// 2^53 would not compare exactly).
    #[serde(default)]
    tokens: BTreeMap<String, String>,
    #[serde(rename = "_etag", default, skip_serializing)]
    etag: Option<String>,
    /// Any other field (kept on write; the service's own `_…` fields are dropped).
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl ItemDocument {
    fn token(&self, name: &str) -> Result<Option<u64>> {
        self.tokens
            .get(name)
            .map(|t| {
                t.parse::<u64>().map_err(|_| {
                    corrupt(
                        &format!("fenced read of {:?}", self.key),
                        format!(
                            "the token of {name:?} is {t:?}, not a token; fix or delete the entry"
                        ),
                    )
                })
            })
            .transpose()
    }
}

/// What a fenced resource takes from its [`CosmosLeaseProvider`].
pub(crate) struct Shared<'a> {
    pub(crate) client: &'a CosmosClient,
    pub(crate) endpoint: &'a str,
    pub(crate) database: &'a str,
    pub(crate) lease_container: &'a str,
    pub(crate) call_timeout: Duration,
    pub(crate) may_create: bool,
}

impl CosmosLeaseProvider {
    /// What a [`CosmosFencedResource`](crate::CosmosFencedResource) shares with this
    /// provider: its SDK client (connection pool, credentials, retries off), database,
    /// call timeout, and whether it may create containers.
    pub(crate) fn shared(&self) -> Shared<'_> {
        let i = &self.inner;
        Shared {
            client: &i.client,
            endpoint: &i.endpoint,
            database: &i.database,
            lease_container: &i.container_name,
            call_timeout: i.call_timeout,
            may_create: self.may_create(),
        }
    }
}

/// Options of an item write: the response without the document (the ETag is enough).
fn write_options() -> ItemWriteOptions {
    ItemWriteOptions::default().with_operation_options(with_content(false))
}

/// A fenced resource in a Cosmos DB container: each item is a document, with the value
/// and, per lease name, the largest token that has written it.
///
/// - **Where**: a container of the provider's database (not the lease container). The
///   document of key `k` has id [`document_id(k)`](crate::document_id) (`%`, `/`, `\`,
///   `?`, `#` escaped) and partition key the same string (one logical partition per
///   item; the container is partitioned on `/partitionKey`, as the provider's, or `/id`),
///   with fields `kind: "fencedItem"`, `key` (the key as given), `value` (base64) and
///   `tokens` (lease name → largest token, a decimal string so that tokens past 2^53
///   compare exactly). Other fields on the document are kept. A document without
///   `kind: "fencedItem"` (a lease document, someone else's data) is never overwritten:
///   the write fails instead.
/// - **How a stale write is refused**: a write reads the document (point read, with its
///   `_etag`), compares its token with [`check`], and replaces the document with
///   `If-Match: <_etag>` (creates it when absent). Another writer in between makes the
///   replace answer 412 (or the create 409): the write reads again and decides again, at
///   most [`WRITE_ATTEMPTS`](Self::WRITE_ATTEMPTS) times. A stale token is refused
///   without writing.
/// - **Cost**: a write is 2 round trips (a point read, then the replace or create; on
///   Azure about 1 RU + 6–10 RU for a 1 KB item), plus 2 per round lost to a concurrent
///   writer; a refused write 1 (the read); `read` and `highest` 1 each.
///
/// ```no_run
/// # async fn f() -> leasing_abstractions::Result<()> {
/// use leasing_abstractions::fence::{Fence, FencedResource, FencedWrite};
/// use leasing_abstractions::{LeaseManager, LeaseOptions};
/// use leasing_cosmos::{CosmosFencedResource, CosmosLeaseProvider};
/// use std::sync::Arc;
/// let provider = CosmosLeaseProvider::builder()
///     .connection_string("AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=…;")
///     .build()
///     .await?;
/// let reports = CosmosFencedResource::create(&provider, "reports").await?;
/// let manager = LeaseManager::new(Arc::new(provider), LeaseOptions::default())?;
/// let lease = manager.acquire("daily-report").await?;
/// match reports.write(&Fence::of(&lease), "2026-12-03", b"totals").await? {
///     FencedWrite::Written => {}
///     FencedWrite::Stale { highest } => eprintln!("lost the lease: token {highest} wrote since"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CosmosFencedResource {
    inner: Arc<Inner>,
}

struct Inner {
    container: ContainerClient,
    endpoint: String,
    database: String,
    container_name: String,
    call_timeout: Duration,
    request_charge_centi: AtomicU64,
}

impl fmt::Debug for CosmosFencedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("CosmosFencedResource")
            .field("endpoint", &i.endpoint)
            .field("database", &i.database)
            .field("container", &i.container_name)
            .field("call_timeout", &i.call_timeout)
            .finish_non_exhaustive()
    }
}

/// The error of a database or container that does not exist.
fn missing(database: &str, container: &str) -> LeaseError {
    LeaseError::configuration(
        "container",
        format!(
            "database {database:?} or container {container:?} does not exist; create it (CosmosFencedResource::create, key auth) or name an existing one"
        ),
    )
}

/// One setup call under the call timeout.
async fn setup<T>(
    what: &str,
    limit: Duration,
    f: impl Future<Output = azure_data_cosmos::Result<T>>,
) -> std::result::Result<T, Mapped> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| error::map(e, what)),
        Err(_) => Err(Mapped {
            failure: Failure::Other,
            error: error::deadline(what, limit),
        }),
    }
}

impl CosmosFencedResource {
    /// How many read-then-conditional-write rounds a write makes before it gives up
    /// (each lost round means another writer changed the document in between).
    pub const WRITE_ATTEMPTS: usize = 16;

    /// The fenced resource in `container` of `provider`'s database, through the
    /// provider's client (its connection pool, credentials and call timeout). One round
    /// trip: the container is opened.
    ///
    /// ```no_run
    /// # async fn f(provider: leasing_cosmos::CosmosLeaseProvider) -> leasing_abstractions::Result<()> {
    /// let items = leasing_cosmos::CosmosFencedResource::new(&provider, "reports").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Configuration` (field `container`) when the database or container does not
    /// exist, or `container` is the provider's lease container (items get their own);
    /// `Unauthorized`, `ProviderUnavailable` from the service.
    pub async fn new(provider: &CosmosLeaseProvider, container: &str) -> Result<Self> {
        Self::open(provider, container, false).await
    }

    /// As [`new`](Self::new), creating the database and container first if they are
    /// missing (partitioned on `/partitionKey`; key auth only: with a token credential
    /// they must exist). 2–3 round trips.
    ///
    /// ```no_run
    /// # async fn f(provider: leasing_cosmos::CosmosLeaseProvider) -> leasing_abstractions::Result<()> {
    /// let items = leasing_cosmos::CosmosFencedResource::create(&provider, "reports").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub async fn create(provider: &CosmosLeaseProvider, container: &str) -> Result<Self> {
        Self::open(provider, container, true).await
    }

    async fn open(provider: &CosmosLeaseProvider, container: &str, create: bool) -> Result<Self> {
        let shared = provider.shared();
        if container == shared.lease_container {
            return Err(LeaseError::configuration(
                "container",
                format!("{container:?} holds the provider's lease documents; give the fenced items a container of their own"),
            ));
        }
        if container.is_empty()
            || container.len() > 255
            || container.contains(['/', '\\', '?', '#'])
            || container == "."
            || container == ".."
        {
            return Err(LeaseError::configuration(
                "container",
                "must be 1-255 characters without / \\ ? #, and not . or ..",
            ));
        }
        let (client, limit, db_name) = (shared.client, shared.call_timeout, shared.database);
        if create && shared.may_create {
            exists(
                setup(
                    "create database",
                    limit,
                    client.create_database(db_name, None),
                )
                .await,
            )?;
            let props = ContainerProperties::new(container.to_owned(), "/partitionKey".into());
            let db = client.database_client(db_name);
            exists(setup("create container", limit, db.create_container(props, None)).await)?;
        }
        let db = client.database_client(db_name);
        let opened = setup(
            "open container",
            limit,
            db.container_client(container, None),
        )
        .await;
        let container_client = match opened {
            Ok(c) => c,
            Err(m) if m.failure == Failure::NotFound => return Err(missing(db_name, container)),
            Err(m) => return Err(m.error),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                container: container_client,
                endpoint: shared.endpoint.to_owned(),
                database: db_name.to_owned(),
                container_name: container.to_owned(),
                call_timeout: limit,
                request_charge_centi: AtomicU64::new(0),
            }),
        })
    }

    /// Request units charged to this resource so far (sum of `x-ms-request-charge`).
    ///
    /// ```no_run
    /// # fn f(items: leasing_cosmos::CosmosFencedResource) {
    /// println!("{} RU", items.request_charge_total());
    /// # }
    /// ```
    pub fn request_charge_total(&self) -> f64 {
        self.inner.request_charge_centi.load(Ordering::Relaxed) as f64 / 100.0
    }

    /// Checks that `key` can be an item, and returns its document id: not empty, and an
    /// id ([`document_id`](crate::document_id)) of at most 1 023 bytes.
    ///
    /// ```
    /// use leasing_cosmos::CosmosFencedResource;
    /// assert!(CosmosFencedResource::check_key("reports/2026-12-03?#").is_ok());
    /// assert_eq!(CosmosFencedResource::check_key("").unwrap_err().field(), Some("key"));
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` (field `key`) naming the rule.
    pub fn check_key(key: &str) -> Result<String> {
        if key.is_empty() {
            return Err(LeaseError::invalid_argument("key", "must not be empty"));
        }
        let id = document_id(key);
        if id.len() > MAX_ID_BYTES {
            return Err(LeaseError::invalid_argument(
                "key",
                format!(
                    "is {} bytes as a document id (% / \\ ? # escaped as 3 bytes); Cosmos DB allows {MAX_ID_BYTES}",
                    id.len()
                ),
            ));
        }
        Ok(id)
    }

    fn charge(&self, ru: f64) {
        let centi = (ru * 100.0).round().max(0.0) as u64;
        self.inner
            .request_charge_centi
            .fetch_add(centi, Ordering::Relaxed);
    }

    fn note(&self, r: &ItemResponse) {
        self.charge(r.headers().request_charge().map_or(0.0, |c| f64::from(*c)));
    }

    /// Runs one call under the call timeout.
    async fn call<T>(
        &self,
        what: &str,
        f: impl Future<Output = azure_data_cosmos::Result<T>>,
    ) -> std::result::Result<T, Mapped> {
        // Sub-status 1003: the container is gone (deleted under the resource).
        let gone_to = |e: azure_data_cosmos::CosmosError| {
            let gone = error::parts(&e).1 == Some(1003);
            let mut m = error::map(e, what);
            if gone {
                m.failure = Failure::Other;
                m.error = missing(&self.inner.database, &self.inner.container_name);
            }
            m
        };
        error::bounded(
            Some(self.inner.call_timeout),
            what,
            f,
            |ru| self.charge(ru),
            gone_to,
        )
        .await
    }

    /// The item document of `id`, `None` if there is none.
    async fn read_doc(&self, key: &str, id: &str) -> Result<Option<ItemDocument>> {
        let what = format!("fenced read of {key:?}");
        let read =
            self.inner
                .container
                .read_item(id.to_owned(), id, Some(ItemReadOptions::default()));
        let resp = match self.call(&what, read).await {
            Ok(r) => r,
            Err(m) if m.failure == Failure::NotFound => return Ok(None),
            Err(m) => return Err(m.error),
        };
        self.note(&resp);
        let doc: ItemDocument = resp.into_model().map_err(|e| corrupt(&what, e))?;
        if doc.kind != KIND {
            return Err(LeaseError::configuration(
                "container",
                format!(
                    "cosmos db: {what}: document {id:?} in container {:?} is not a fenced item (kind {:?}, not {KIND:?}): is this the lease container? Fenced items need a container of their own",
                    self.inner.container_name, doc.kind
                ),
            ));
        }
        Ok(Some(doc))
    }

    async fn write_item(&self, fence: &Fence, key: &str, value: &[u8]) -> Result<FencedWrite> {
        let id = Self::check_key(key)?;
        leasing_abstractions::validate_name(fence.name())?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(LeaseError::invalid_argument(
                "value",
                format!(
                    "is {} bytes; an item holds at most {MAX_VALUE_BYTES} (base64 in a document of at most 2 MiB)",
                    value.len()
                ),
            ));
        }
        let what = format!("fenced write of {key:?}");
        let encoded = azure_core::base64::encode(value);
        for attempt in 0..Self::WRITE_ATTEMPTS {
            let current = self.read_doc(key, &id).await?;
            let highest = match &current {
                Some(d) => d.token(fence.name())?,
                None => None,
            };
            let outcome = check(highest, fence.token());
            if outcome != FencedWrite::Written {
                return Ok(outcome);
            }
            let exists = current.is_some();
            let mut doc = current.unwrap_or_else(|| ItemDocument {
                id: id.clone(),
                partition_key: id.clone(),
                kind: KIND.to_owned(),
                key: key.to_owned(),
                ..ItemDocument::default()
            });
            let etag = doc.etag.take();
            doc.other.retain(|k, _| !k.starts_with('_'));
            doc.value.clone_from(&encoded);
            doc.tokens
                .insert(fence.name().to_owned(), fence.token().to_string());
            let options = write_options();
            let container = &self.inner.container;
            let sent = match (exists, etag) {
                (false, _) => {
                    self.call(
                        &what,
                        container.create_item(id.clone(), &id, &doc, Some(options)),
                    )
                    .await
                }
                (true, Some(tag)) => {
                    let options = options.with_precondition(Precondition::if_match(
                        azure_core::http::Etag::from(tag),
                    ));
                    self.call(
                        &what,
                        container.replace_item(id.clone(), &id, &doc, Some(options)),
                    )
                    .await
                }
                (true, None) => {
                    return Err(corrupt(
                        &what,
                        "the service sent the document without an _etag",
                    ))
                }
            };
            match sent {
                Ok(resp) => {
                    self.note(&resp);
                    return Ok(FencedWrite::Written);
                }
                // Changed (412), created (409) or deleted (404 on replace) since the read.
                Err(m)
                    if m.failure == Failure::PreconditionFailed
                        || m.failure == Failure::Conflict
                        || (m.failure == Failure::NotFound && exists) =>
                {
                    tokio::time::sleep(leasing_azure::lost_round_pause(attempt)).await;
                }
                Err(m) if m.failure == Failure::NotFound => {
                    return Err(missing(&self.inner.database, &self.inner.container_name))
                }
                Err(m) => return Err(m.error),
            }
        }
        Err(LeaseError::unavailable(format!(
            "cosmos db: {what}: the document changed between the read and the conditional write {} times (heavy contention); this call wrote nothing",
            Self::WRITE_ATTEMPTS
        )))
    }

    async fn read_item(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let id = Self::check_key(key)?;
        let Some(doc) = self.read_doc(key, &id).await? else {
            return Ok(None);
        };
        azure_core::base64::decode(&doc.value)
            .map(Some)
            .map_err(|e| corrupt(&format!("fenced read of {key:?}"), e))
    }

    async fn highest_of(&self, key: &str, name: &str) -> Result<Option<u64>> {
        let id = Self::check_key(key)?;
        match self.read_doc(key, &id).await? {
            Some(doc) => doc.token(name),
            None => Ok(None),
        }
    }
}

/// A create that found the resource there already (409) is as good.
fn exists<T>(r: std::result::Result<T, Mapped>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(m) if m.failure == Failure::Conflict => Ok(()),
        Err(m) => Err(m.error),
    }
}

/// An item the resource cannot read (written by something else, or edited by hand).
fn corrupt(what: &str, detail: impl fmt::Display) -> LeaseError {
    LeaseError::new(
        leasing_abstractions::ErrorKind::Unexpected,
        format!("cosmos db: {what}: unreadable item: {detail}"),
    )
}

leasing_abstractions::fenced_resource!(CosmosFencedResource);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_foreign_fields_and_exact_tokens() {
        let json = r#"{"id":"a%2Fb","partitionKey":"a%2Fb","kind":"fencedItem","key":"a/b","value":"eA==","tokens":{"l":"1152921504606846977"},"_etag":"\"1\"","_ts":5,"owner":"me"}"#;
        let mut doc: ItemDocument = serde_json::from_str(json).expect("parse");
        assert_eq!(doc.etag.as_deref(), Some("\"1\""));
        assert_eq!(doc.token("l").expect("token"), Some((1 << 60) + 1));
        assert_eq!(doc.token("m").expect("token"), None);
        doc.other.retain(|k, _| !k.starts_with('_'));
        let back = serde_json::to_value(&doc).expect("write");
        assert_eq!(back["owner"], "me");
        assert!(
            back.get("_etag").is_none() && back.get("_ts").is_none(),
            "{back}"
        );
        assert_eq!(back["partitionKey"], "a%2Fb");
        doc.tokens.insert("l".into(), "x".into());
        assert!(doc.token("l").is_err());
        let lease: ItemDocument =
            serde_json::from_str(r#"{"id":"x","partitionKey":"x","leaseName":"x"}"#)
                .expect("parse");
        assert_eq!(lease.kind, "");
    }

    #[test]
    fn keys_become_ids_within_the_limit() {
        assert_eq!(CosmosFencedResource::check_key("a/b").expect("ok"), "a%2Fb");
        assert_eq!(CosmosFencedResource::check_key("..").expect("ok"), "%2E%2E");
        CosmosFencedResource::check_key(&"k".repeat(1023)).expect("1023 bytes");
        for bad in [String::new(), "k".repeat(1024), "/".repeat(342)] {
            let e = CosmosFencedResource::check_key(&bad).expect_err("refused");
            assert_eq!(e.field(), Some("key"));
        }
        for a in 0..CosmosFencedResource::WRITE_ATTEMPTS {
            assert!(leasing_azure::lost_round_pause(a) <= Duration::from_millis(65));
        }
    }
}
