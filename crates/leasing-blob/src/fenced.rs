//! [`BlobFencedResource`]: block blobs that refuse a stale holder's write, by a
//! conditional upload on the blob's ETag.

use crate::client::container_client;
use crate::config::{check_container, BlobConfig};
use crate::error::Failure;
use crate::BlobLeaseProvider;
use azure_core::http::{Etag, RequestContent};
use azure_storage_blob::models::{
    BlobClientGetPropertiesResultHeaders, BlobContainerClientCreateOptions,
    BlockBlobClientUploadOptions,
};
use azure_storage_blob::{BlobClient, BlobContainerClient};
use leasing_abstractions::fence::{check, Fence, FencedWrite};
use leasing_abstractions::{ErrorKind, LeaseError, Result};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::num::NonZero;
use std::sync::Arc;
use std::time::Duration;

/// Prefix of the metadata keys that hold the tokens.
const TOKEN_PREFIX: &str = "fence_";

/// At most this many metadata entries on an item: each comes back as a response header,
/// and the HTTP client reads at most 100 headers (about 20 are the service's own). An
/// item with more could no longer be read (tested: it fails at about 80).
const MAX_METADATA_ENTRIES: usize = 64;

/// Azure's limit on a blob's metadata, names and values together.
const MAX_METADATA_BYTES: usize = 8 * 1024;

/// A fenced resource in a blob container: each item is a block blob named by its key, and
/// its metadata holds, per lease name, the largest token that has written it.
///
/// - **Where**: blob `{key}` in the container given to [`new`](Self::new) (the key is
///   the blob name as it is, so other tools read the data where you expect it; see
///   [`check_key`](Self::check_key) for the keys a blob cannot be named by). The value is
///   the blob's content. The token of lease `name` is the metadata entry
///   [`metadata_key(name)`](Self::metadata_key) = `fence_` + the lower-case hex of the
///   name's bytes (metadata names must be C# identifiers and are case-insensitive, lease
///   names are neither), with the token in decimal. Other metadata on the blob is kept.
/// - **How a stale write is refused**: a write reads the blob's properties (ETag and
///   metadata), compares its token with [`check`], and uploads the value and the new
///   token with `If-Match: <ETag>` (`If-None-Match: *` when the blob does not exist yet).
///   Another writer in between makes the upload fail (412 / 409): the write reads again
///   and decides again, at most [`WRITE_ATTEMPTS`](Self::WRITE_ATTEMPTS) times. A stale
///   token is refused without writing.
/// - **Cost**: a write is 2 round trips (Get Blob Properties, Put Blob), plus 2 per round
///   lost to a concurrent writer; a refused write 1. `read` is 1 (Get Blob), `highest` 1
///   (Get Blob Properties).
/// - **Limit**: an item tracks at most 64 lease names (each token is a metadata entry,
///   and each entry a response header); a write that would add a 65th, or pass Azure's
///   8 KiB of metadata, is refused with `InvalidArgument` (field `fence`).
///
/// The container is not created implicitly (a mistyped name would otherwise start an
/// empty store); call [`create_container`](Self::create_container) once.
///
/// ```no_run
/// # async fn f() -> leasing_abstractions::Result<()> {
/// use leasing_abstractions::fence::{Fence, FencedResource, FencedWrite};
/// use leasing_abstractions::{LeaseManager, LeaseOptions};
/// use leasing_blob::{BlobFencedResource, BlobLeaseProvider};
/// use std::sync::Arc;
/// let provider = BlobLeaseProvider::builder()
///     .connection_string("UseDevelopmentStorage=true")
///     .build()
///     .await?;
/// let reports = BlobFencedResource::new(&provider, "reports")?;
/// reports.create_container().await?;
/// let manager = LeaseManager::new(Arc::new(provider), LeaseOptions::default())?;
/// let lease = manager.acquire("daily-report").await?;
/// match reports.write(&Fence::of(&lease), "2026/12/03.csv", b"totals").await? {
///     FencedWrite::Written => {}
///     FencedWrite::Stale { highest } => eprintln!("lost the lease: token {highest} wrote since"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BlobFencedResource {
    inner: Arc<Inner>,
}

struct Inner {
    config: BlobConfig,
    container: BlobContainerClient,
}

impl fmt::Debug for BlobFencedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("BlobFencedResource")
            .field("endpoint", &c.endpoint.as_str())
            .field("container", &c.container)
            .field("auth", &c.auth)
            .field("call_timeout", &c.call_timeout)
            .finish()
    }
}

/// A call that failed or ran out of time.
enum Call {
    Failed(Failure),
    Deadline(Duration),
}

impl BlobFencedResource {
    /// How many read-then-conditional-upload rounds a write makes before it gives up
    /// (each lost round means another writer changed the blob in between).
    pub const WRITE_ATTEMPTS: usize = 16;

    /// A fenced resource in `container` of `provider`'s account, with its credentials,
    /// call timeout and trusted certificates (the provider's
    /// [`config`](BlobLeaseProvider::config) with another container). Nothing is sent.
    ///
    /// ```
    /// # fn main() -> leasing_abstractions::Result<()> {
    /// // (`from_config` builds without the request `build` makes, so this runs anywhere.)
    /// let provider = leasing_blob::BlobLeaseProvider::from_config(
    ///     leasing_blob::BlobLeaseProvider::builder()
    ///         .connection_string("UseDevelopmentStorage=true")
    ///         .into_config()?,
    /// )?;
    /// let items = leasing_blob::BlobFencedResource::new(&provider, "reports")?;
    /// assert_eq!(items.container(), "reports");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Configuration` (field `container`) for a name Azure refuses, or the provider's own
    /// container: a key `lease-…` would be a lease blob there, so items get their own.
    pub fn new(provider: &BlobLeaseProvider, container: &str) -> Result<Self> {
        if container == provider.config().container {
            return Err(LeaseError::configuration(
                "container",
                format!("{container:?} holds the provider's lease blobs; give the fenced items a container of their own"),
            ));
        }
        let mut config = provider.config().clone();
        container.clone_into(&mut config.container);
        Self::from_config(config)
    }

    /// A fenced resource in `config.container` (a configuration from
    /// [`BlobLeaseProviderBuilder::into_config`](crate::BlobLeaseProviderBuilder::into_config)).
    ///
    /// ```
    /// # fn main() -> leasing_abstractions::Result<()> {
    /// let config = leasing_blob::BlobLeaseProvider::builder()
    ///     .connection_string("UseDevelopmentStorage=true")
    ///     .container("reports")
    ///     .into_config()?;
    /// let items = leasing_blob::BlobFencedResource::from_config(config)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Configuration` for a container name Azure refuses, or an endpoint or certificate
    /// the blob client rejects.
    pub fn from_config(config: BlobConfig) -> Result<Self> {
        check_container(&config.container)?;
        let container = container_client(&config)?;
        Ok(Self {
            inner: Arc::new(Inner { config, container }),
        })
    }

    /// The container that holds the items.
    ///
    /// ```
    /// # fn f(items: leasing_blob::BlobFencedResource) {
    /// println!("items in container {}", items.container());
    /// # }
    /// ```
    pub fn container(&self) -> &str {
        &self.inner.config.container
    }

    /// Creates the container; `Ok(false)` if it exists already.
    ///
    /// ```no_run
    /// # async fn f(items: leasing_blob::BlobFencedResource) -> leasing_abstractions::Result<()> {
    /// items.create_container().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Unauthorized` when the credentials may not create containers (a container SAS);
    /// `ProviderUnavailable` when the service cannot be reached.
    pub async fn create_container(&self) -> Result<bool> {
        let create = self
            .inner
            .container
            .create(None::<BlobContainerClientCreateOptions<'_>>);
        match self.call(create).await {
            Ok(_) => Ok(true),
            Err(Call::Failed(f)) if f.code() == Some("ContainerAlreadyExists") => Ok(false),
            Err(c) => Err(self.error("create container", None, c)),
        }
    }

    /// The metadata key that holds the tokens of lease `name`: `fence_` and the
    /// lower-case hex of its UTF-8 bytes.
    ///
    /// ```
    /// assert_eq!(leasing_blob::BlobFencedResource::metadata_key("a/B"), "fence_612f42");
    /// ```
    pub fn metadata_key(name: &str) -> String {
        let mut out = String::with_capacity(TOKEN_PREFIX.len() + 2 * name.len());
        out.push_str(TOKEN_PREFIX);
        for b in name.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Checks that `key` names exactly one blob: 1 to 1 024 characters, at most 254
    /// `/`-separated segments, no control character, no `\`, no segment that is empty or
    /// ends with `.` (so no `.`/`..` segment, no leading, trailing or doubled `/`, no final
    /// `.`: Azure trims or resolves these, and two keys would name one blob).
    ///
    /// ```
    /// use leasing_blob::BlobFencedResource;
    /// assert!(BlobFencedResource::check_key("reports/2026-12-03.csv").is_ok());
    /// let e = BlobFencedResource::check_key("reports/").unwrap_err();
    /// assert_eq!(e.field(), Some("key"));
    /// ```
    ///
    /// # Errors
    /// `InvalidArgument` (field `key`) naming the rule.
    pub fn check_key(key: &str) -> Result<()> {
        let bad = |rule: String| Err(LeaseError::invalid_argument("key", rule));
        if key.is_empty() {
            return bad("must not be empty".into());
        }
        let len = key.chars().count();
        if len > 1024 {
            return bad(format!(
                "is {len} characters long; a blob name has at most 1024"
            ));
        }
        if let Some((i, c)) = key
            .char_indices()
            .find(|&(_, c)| c.is_control() || c == '\\')
        {
            return bad(format!(
                "character {c:?} at byte {i} cannot be in a blob name (control characters and \\ are refused)"
            ));
        }
        let segments = key.split('/').count();
        if segments > 254 {
            return bad(format!(
                "has {segments} /-separated segments; a blob name has at most 254"
            ));
        }
        if key.split('/').any(|s| s.is_empty() || s.ends_with('.')) {
            return bad(format!(
                "{key:?} has an empty segment or one ending with '.' (a leading, trailing or doubled /, a . or .. segment, a final .): Azure trims or resolves these"
            ));
        }
        Ok(())
    }

    /// Runs one service call under the call timeout.
    async fn call<T>(
        &self,
        fut: impl Future<Output = azure_core::Result<T>>,
    ) -> std::result::Result<T, Call> {
        let limit = self.inner.config.call_timeout;
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Call::Failed(Failure::from_azure(&e))),
            Err(_) => Err(Call::Deadline(limit)),
        }
    }

    /// The error of a failed call: `what` was being done to `key`.
    fn error(&self, what: &str, key: Option<&str>, call: Call) -> LeaseError {
        let on = key.map(|k| format!(" of {k:?}")).unwrap_or_default();
        let failure = match call {
            Call::Deadline(limit) => {
                return LeaseError::unavailable(format!(
                    "blob fenced {what}{on}: no answer within {limit:?} (the outcome is unknown)"
                ))
            }
            Call::Failed(f) => f,
        };
        let container = &self.inner.config.container;
        let err = match (&failure, failure.status(), failure.code()) {
            (_, Some(404), Some("ContainerNotFound")) => LeaseError::configuration(
                "container",
                format!("container {container:?} does not exist ({failure}); create it (BlobFencedResource::create_container)"),
            ),
            (_, Some(400), Some("MetadataTooLarge")) => LeaseError::invalid_argument(
                "fence",
                format!("blob fenced {what}{on}: the blob's metadata would pass Azure's 8 KiB with this lease name's token ({failure}): too many lease names write this item"),
            ),
            (_, Some(400), Some("InvalidResourceName" | "InvalidUri")) => {
                LeaseError::invalid_argument(
                    "key",
                    format!("blob fenced {what}{on}: the service refuses the blob name ({failure})"),
                )
            }
            (_, Some(400), _) => LeaseError::invalid_argument(
                "request",
                format!("blob fenced {what}{on}: the service refuses the request ({failure})"),
            ),
            (Failure::Credential(_), ..) | (_, Some(401 | 403), _) => LeaseError::new(
                ErrorKind::Unauthorized,
                format!("blob fenced {what}{on}: the credentials were refused ({failure})"),
            ),
            (_, Some(409 | 412), Some(code)) if code.starts_with("Lease") => LeaseError::new(
                ErrorKind::Conflict,
                format!("blob fenced {what}{on}: the blob holds a blob lease, which fenced writes do not take ({failure})"),
            ),
            (Failure::Transport { .. }, ..) | (_, Some(408 | 429 | 500..=599), _) => {
                LeaseError::unavailable(format!("blob fenced {what}{on} failed: {failure}"))
            }
            // An answer no rule covers: `Unexpected`, as on every backend.
            _ => LeaseError::new(
                ErrorKind::Unexpected,
                format!("blob fenced {what}{on}: unexpected answer: {failure}"),
            ),
        };
        err.with_source(failure)
    }

    fn blob(&self, key: &str) -> BlobClient {
        self.inner.container.blob_client(key)
    }

    /// The blob's ETag and metadata (keys lower-cased), `None` if it does not exist.
    async fn properties(
        &self,
        blob: &BlobClient,
        key: &str,
    ) -> Result<Option<(Option<Etag>, HashMap<String, String>)>> {
        let props = match self.call(blob.get_properties(None)).await {
            Ok(p) => p,
            // A HEAD answer has no body: some services send no error code with it.
            Err(Call::Failed(f))
                if f.status() == Some(404) && f.code() != Some("ContainerNotFound") =>
            {
                return Ok(None)
            }
            Err(c) => return Err(self.error("read", Some(key), c)),
        };
        let unreadable = |e: azure_core::Error| {
            LeaseError::unavailable(format!(
                "blob fenced read of {key:?}: unreadable properties: {}",
                Failure::from_azure(&e)
            ))
        };
        let etag = props.etag().map_err(unreadable)?;
        let metadata = props
            .metadata()
            .map_err(unreadable)?
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Ok(Some((etag, metadata)))
    }

    async fn write_item(&self, fence: &Fence, key: &str, value: &[u8]) -> Result<FencedWrite> {
        Self::check_key(key)?;
        leasing_abstractions::validate_name(fence.name())?;
        let blob = self.blob(key);
        let block_blob = blob.block_blob_client();
        let field = Self::metadata_key(fence.name());
        for attempt in 0..Self::WRITE_ATTEMPTS {
            let seen = self.properties(&blob, key).await?;
            let highest = match &seen {
                Some((_, md)) => token_of(md, &field, key)?,
                None => None,
            };
            let outcome = check(highest, fence.token());
            if outcome != FencedWrite::Written {
                return Ok(outcome);
            }
            let (etag, mut metadata) = seen.unwrap_or_default();
            metadata.insert(field.clone(), fence.token().to_string());
            check_size(&metadata, key)?;
            let mut options = BlockBlobClientUploadOptions {
                metadata: Some(metadata),
                // One Put Blob whatever the size: the condition is checked by one request.
                partition_size: NonZero::new(u64::try_from(value.len()).unwrap_or(u64::MAX))
                    .or(NonZero::new(1)),
                ..Default::default()
            };
            match etag {
                Some(tag) => options.if_match = Some(tag),
                None => options.if_none_match = Some(Etag::from("*")),
            }
            let upload = block_blob.upload(RequestContent::from(value.to_vec()), Some(options));
            match self.call(upload).await {
                Ok(_) => return Ok(FencedWrite::Written),
                Err(Call::Failed(f)) if lost_race(&f) => {
                    tokio::time::sleep(leasing_azure::lost_round_pause(attempt)).await;
                }
                Err(c) => return Err(self.error("write", Some(key), c)),
            }
        }
        Err(LeaseError::unavailable(format!(
            "blob fenced write of {key:?}: the blob changed between the read and the conditional upload {} times (heavy contention); this call wrote nothing",
            Self::WRITE_ATTEMPTS
        )))
    }

    async fn read_item(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Self::check_key(key)?;
        let blob = self.blob(key);
        let download = async {
            let r = blob.download(None).await?;
            r.body.collect().await
        };
        match self.call(download).await {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(Call::Failed(f)) if f.code() == Some("BlobNotFound") => Ok(None),
            Err(c) => Err(self.error("read", Some(key), c)),
        }
    }

    async fn highest_of(&self, key: &str, name: &str) -> Result<Option<u64>> {
        Self::check_key(key)?;
        match self.properties(&self.blob(key), key).await? {
            Some((_, md)) => token_of(&md, &Self::metadata_key(name), key),
            None => Ok(None),
        }
    }
}

/// The token stored under `field`; an unreadable one is an error, never "no token".
fn token_of(metadata: &HashMap<String, String>, field: &str, key: &str) -> Result<Option<u64>> {
    metadata
        .get(field)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                LeaseError::unavailable(format!(
                    "blob fenced item {key:?}: metadata {field} holds {v:?}, not a token; fix or delete the entry"
                ))
            })
        })
        .transpose()
}

/// Refuses metadata the service (8 KiB) or the client (response headers) cannot carry.
fn check_size(metadata: &HashMap<String, String>, key: &str) -> Result<()> {
    let bytes: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if metadata.len() > MAX_METADATA_ENTRIES || bytes > MAX_METADATA_BYTES {
        return Err(LeaseError::invalid_argument(
            "fence",
            format!(
                "item {key:?} would hold {} metadata entries ({bytes} bytes) with this lease name's token; at most {MAX_METADATA_ENTRIES} entries and {MAX_METADATA_BYTES} bytes: write it under fewer lease names",
                metadata.len()
            ),
        ));
    }
    Ok(())
}

/// Whether an upload failed only because another writer changed (or created) the blob
/// since it was read: 412 `ConditionNotMet`, 409 `BlobAlreadyExists`.
fn lost_race(f: &Failure) -> bool {
    matches!(
        (f.status(), f.code()),
        (Some(412), Some("ConditionNotMet") | None) | (Some(409), Some("BlobAlreadyExists"))
    )
}

leasing_abstractions::fenced_resource!(BlobFencedResource);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_name_one_blob() {
        for ok in [
            "a",
            "reports/2026-12-03.csv",
            "Zoë ✓/日本語",
            "a b?c#d%e",
            &"x".repeat(1024),
        ] {
            BlobFencedResource::check_key(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "",
            "a/",
            "/a",
            "a//b",
            ".",
            "..",
            "a/../b",
            "a/./b",
            "a.",
            "a\\b",
            "tab\there",
            "nul\0",
            &"x".repeat(1025),
        ] {
            let e = BlobFencedResource::check_key(bad).expect_err(bad);
            assert_eq!(e.field(), Some("key"), "{bad:?}");
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
        let many = vec!["s"; 255].join("/");
        assert!(BlobFencedResource::check_key(&many).is_err());
        assert!(BlobFencedResource::check_key(&vec!["s"; 254].join("/")).is_ok());
    }

    #[test]
    fn metadata_keys_are_identifiers_one_per_name() {
        let k = BlobFencedResource::metadata_key("Orders:eu/1");
        assert!(k.starts_with(TOKEN_PREFIX));
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        assert_ne!(k, BlobFencedResource::metadata_key("orders:eu/1"));
        let mut md = HashMap::new();
        md.insert(k.clone(), "42".to_owned());
        assert_eq!(token_of(&md, &k, "x").unwrap(), Some(42));
        assert_eq!(token_of(&md, "fence_00", "x").unwrap(), None);
        md.insert(k.clone(), "x".to_owned());
        assert!(token_of(&md, &k, "x").is_err());
    }

    #[test]
    fn only_lost_races_are_retried() {
        let s = |status, code: Option<&str>| Failure::Status {
            status,
            code: code.map(str::to_owned),
        };
        assert!(lost_race(&s(412, Some("ConditionNotMet"))));
        assert!(lost_race(&s(412, None)));
        assert!(lost_race(&s(409, Some("BlobAlreadyExists"))));
        assert!(!lost_race(&s(412, Some("LeaseIdMissing"))));
        assert!(!lost_race(&s(403, None)));
        for a in 0..BlobFencedResource::WRITE_ATTEMPTS {
            assert!(leasing_azure::lost_round_pause(a) <= Duration::from_millis(65));
        }
    }

    #[test]
    fn the_lease_container_and_bad_names_are_refused() {
        let p = BlobLeaseProvider::from_config(
            BlobLeaseProvider::builder()
                .connection_string("UseDevelopmentStorage=true")
                .into_config()
                .unwrap(),
        )
        .unwrap();
        let e = BlobFencedResource::new(&p, &p.config().container).unwrap_err();
        assert_eq!(e.field(), Some("container"));
        let e = BlobFencedResource::new(&p, "Bad_Name").unwrap_err();
        assert_eq!(e.field(), Some("container"));
        let r = BlobFencedResource::new(&p, "items").unwrap();
        assert_eq!(r.container(), "items");
        let d = format!("{r:?}");
        assert!(!d.contains(crate::DEV_ACCOUNT_KEY), "{d}");
    }
}
