//! The provider: native blob leases, fencing tokens in blob metadata.

use crate::client::container_client;
use crate::config::{BlobConfig, MAX_DURATION, MIN_DURATION};
use crate::error::{map_failure, Failure, Op};
use crate::naming;
use crate::stored::{info, lease_seconds, micros, read_stored, service_date, write_stored};
use azure_core::http::headers::HeaderName;
use azure_core::http::{Etag, RequestContent};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientBreakLeaseOptions,
    BlobClientGetPropertiesResultHeaders, BlobClientSetMetadataOptions,
    BlobContainerClientCreateOptions, BlockBlobClientUploadOptions,
    LeaseDuration as AzLeaseDuration, LeaseStatus,
};
use azure_storage_blob::{BlobClient, BlobContainerClient};
use leasing_abstractions::{
    AcquireRequest, BoxFuture, LeaseError, LeaseGrant, LeaseInfo, LeasePage, LeaseProvider,
    ListRequest, ProviderCapabilities, Result,
};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Leases as native Azure Blob leases: one blob per lease name in one container.
///
/// Round trips: `try_acquire` 3 when the name is free (acquire the blob lease; read the
/// metadata for the previous fencing token and the service's `Date`; write the new token
/// and the holder's metadata under the lease id), 1 when it is held; the first use of a
/// name adds 1–2 (create the blob, and the container if missing). `renew`, `release`
/// and `inspect` take 1 each; `break_lease` 2 (whether a lease is held, then the break).
///
/// Build it with [`builder`](Self::builder) or [`from_env`](Self::from_env).
#[derive(Clone)]
pub struct BlobLeaseProvider {
    inner: Arc<Inner>,
}

struct Inner {
    config: BlobConfig,
    container: BlobContainerClient,
}

impl fmt::Debug for BlobLeaseProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("BlobLeaseProvider")
            .field("endpoint", &c.endpoint.as_str())
            .field("container", &c.container)
            .field("auth", &c.auth)
            .field("call_timeout", &c.call_timeout)
            .finish()
    }
}

impl BlobLeaseProvider {
    /// A provider from a checked configuration.
    ///
    /// # Errors
    /// `Configuration` when the blob client rejects the endpoint or a certificate.
    pub fn from_config(config: BlobConfig) -> Result<Self> {
        let container = container_client(&config)?;
        Ok(Self {
            inner: Arc::new(Inner { config, container }),
        })
    }

    /// The configuration (secrets redacted in its `Debug`).
    pub fn config(&self) -> &BlobConfig {
        &self.inner.config
    }

    /// One request (the properties of a blob that is never a lease) to see that the
    /// service answers at the endpoint and accepts the credentials; for `build`.
    pub(crate) async fn check_reachable(&self) -> Result<()> {
        let endpoint = self.inner.config.endpoint.as_str().to_owned();
        let blob = self.inner.container.blob_client("leasing-build-check");
        let failure = match self.call(blob.get_properties(None)).await {
            Ok(_) => return Ok(()),
            Err(f) => f,
        };
        match (failure.status(), failure.code()) {
            // Reachable and authorized: the blob (or the container, created on first use)
            // does not exist. (A HEAD answer may carry no error code.)
            (Some(404), Some("BlobNotFound" | "ContainerNotFound") | None) => Ok(()),
            (Some(404), Some(code)) => Err(LeaseError::configuration(
                "endpoint",
                format!(
                    "the blob service at {endpoint} answered 404 {code}: no such account there (check the account name in the endpoint or connection string)"
                ),
            )
            .with_source(failure)),
            _ => {
                let kind = map_failure(Op::Connect, failure.clone()).kind();
                Err(LeaseError::new(
                    kind,
                    format!("blob service at {endpoint} could not be used: {failure}"),
                )
                .with_source(failure))
            }
        }
    }

    /// The SDK's client of the lease container.
    pub(crate) fn container(&self) -> &BlobContainerClient {
        &self.inner.container
    }

    fn blob(&self, name: &str) -> BlobClient {
        self.inner.container.blob_client(&naming::blob_name(name))
    }

    /// Runs one service call. No timeout of its own: within the core the call's deadline
    /// ends it (the core drops it), outside the core the transport's request timeout
    /// (`call_timeout`) does.
    async fn call<T>(
        &self,
        fut: impl Future<Output = azure_core::Result<T>>,
    ) -> std::result::Result<T, Failure> {
        fut.await.map_err(|e| Failure::from_azure(&e))
    }

    /// Creates the container; one that exists already (another process won the race) is
    /// fine.
    async fn create_container(&self) -> Result<()> {
        let r = self
            .call(
                self.inner
                    .container
                    .create(None::<BlobContainerClientCreateOptions<'_>>),
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(f) if f.code() == Some("ContainerAlreadyExists") => Ok(()),
            Err(f) => Err(map_failure(Op::Acquire, f)),
        }
    }

    /// Creates the empty blob of a name; one that exists already is fine.
    async fn create_blob(&self, blob: &BlobClient) -> Result<()> {
        let options = BlockBlobClientUploadOptions {
            if_none_match: Some(Etag::from("*")),
            ..Default::default()
        };
        let r = self
            .call(
                blob.block_blob_client()
                    .upload(RequestContent::from(Vec::<u8>::new()), Some(options)),
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            // 409 BlobAlreadyExists; 412 LeaseIdMissing (it exists and is leased).
            Err(f) if matches!(f.status(), Some(409 | 412)) => Ok(()),
            Err(f) => Err(map_failure(Op::Acquire, f)),
        }
    }

    async fn acquire(&self, request: &AcquireRequest) -> Result<Option<LeaseGrant>> {
        let seconds = lease_seconds(request.duration)?;
        let blob = self.blob(&request.name);
        let lease_id = uuid::Uuid::new_v4().to_string();
        let mut setups = 0;
        let mut guard = GiveBack::new(self, &request.name, &lease_id);
        let sent_at = loop {
            let sent_at = Instant::now();
            let options = BlobClientAcquireLeaseOptions {
                proposed_lease_id: Some(lease_id.clone()),
                ..Default::default()
            };
            // From here the service may grant the lease: if the answer is lost or the call
            // dropped (its deadline passed), the guard gives it back.
            guard.arm();
            let r = self.call(blob.acquire_lease(seconds, Some(options))).await;
            match r {
                Ok(_) => break sent_at,
                // Held, or being broken with a break period by someone else: not ours.
                Err(f)
                    if matches!(
                        f.code(),
                        Some("LeaseAlreadyPresent" | "LeaseIsBreakingAndCannotBeAcquired")
                    ) =>
                {
                    guard.disarm();
                    return Ok(None);
                }
                Err(f)
                    if setups < 2
                        && matches!(f.code(), Some("BlobNotFound" | "ContainerNotFound")) =>
                {
                    guard.disarm();
                    setups += 1;
                    if f.code() == Some("ContainerNotFound") {
                        self.create_container().await?;
                    }
                    self.create_blob(&blob).await?;
                }
                Err(f) => return Err(map_failure(Op::Acquire, f)),
            }
        };
        // We hold the blob lease; if the token cannot be written (or the call is dropped
        // meanwhile), the guard gives it back so the name does not stay locked (an
        // infinite lease would stay locked forever).
        let grant = self.stamp(&blob, request, &lease_id, sent_at).await?;
        guard.disarm();
        Ok(Some(grant))
    }

    /// Reads the previous token and writes the new one with the holder's metadata, under
    /// the lease just acquired.
    async fn stamp(
        &self,
        blob: &BlobClient,
        request: &AcquireRequest,
        lease_id: &str,
        sent_at: Instant,
    ) -> Result<LeaseGrant> {
        let props = self
            .call(blob.get_properties(None))
            .await
            .map_err(|f| map_failure(Op::Acquire, f))?;
        let stored = read_stored(&props.metadata().unwrap_or_default());
        let now = service_date(props.headers()).unwrap_or_else(SystemTime::now);
        // Strictly above the previous token, and at least the service's clock in µs, so a
        // blob that was deleted (or an emulator restarted empty) still continues upwards.
        let token = stored.token.saturating_add(1).max(micros(now));
        let md = write_stored(token, now, request.duration, &request.metadata);
        let options = BlobClientSetMetadataOptions {
            lease_id: Some(lease_id.to_owned()),
            ..Default::default()
        };
        let written = self
            .call(blob.set_metadata(&md, Some(options)))
            .await
            .map_err(|f| map_failure(Op::Acquire, f))?;
        let grant = LeaseGrant::new(request, lease_id, token, now, sent_at);
        let etag = written
            .headers()
            .get_optional_str(&HeaderName::from_static("etag"))
            .map(str::to_owned);
        Ok(match etag {
            Some(e) => grant.with_version(e),
            None => grant,
        })
    }

    async fn release_id(&self, blob: &BlobClient, lease_id: &str) -> Result<()> {
        let r = self
            .call(blob.release_lease(lease_id.to_owned(), None))
            .await;
        match r {
            Ok(_) => Ok(()),
            // Not ours any more, or gone: nothing to release.
            Err(f) if matches!(f.status(), Some(404 | 409 | 412)) => Ok(()),
            Err(f) => Err(map_failure(Op::Release, f)),
        }
    }

    async fn renew_one(&self, grant: &LeaseGrant) -> Result<()> {
        let blob = self.blob(&grant.name);
        self.call(blob.renew_lease(grant.lease_id.clone(), None))
            .await
            .map(|_| ())
            .map_err(|f| map_failure(Op::Renew, f))
    }

    async fn inspect_name(&self, name: &str) -> Result<Option<LeaseInfo>> {
        let blob = self.blob(name);
        let props = match self.call(blob.get_properties(None)).await {
            Ok(p) => p,
            Err(f) if f.status() == Some(404) => return Ok(None),
            Err(f) => return Err(map_failure(Op::Inspect, f)),
        };
        if props.lease_status().ok().flatten() != Some(LeaseStatus::Locked) {
            return Ok(None);
        }
        let infinite = props.duration().ok().flatten() == Some(AzLeaseDuration::Infinite);
        let stored = read_stored(&props.metadata().unwrap_or_default());
        Ok(Some(info(name, stored, infinite)))
    }

    async fn break_name(&self, name: &str) -> Result<bool> {
        let blob = self.blob(name);
        // The service also answers 202 to breaking a lease that is already broken or
        // expired, so ask first whether one is held (an operator call: 2 round trips).
        let props = match self.call(blob.get_properties(None)).await {
            Ok(p) => p,
            Err(f) if f.status() == Some(404) => return Ok(false),
            Err(f) => return Err(map_failure(Op::Break, f)),
        };
        if props.lease_status().ok().flatten() != Some(LeaseStatus::Locked) {
            return Ok(false);
        }
        let options = BlobClientBreakLeaseOptions {
            break_period: Some(0),
            ..Default::default()
        };
        match self.call(blob.break_lease(Some(options))).await {
            Ok(_) => Ok(true),
            // Released or deleted since we looked (404, 409 LeaseNotPresentWithLeaseOperation).
            Err(f) if matches!(f.status(), Some(404 | 409)) => Ok(false),
            Err(f) => Err(map_failure(Op::Break, f)),
        }
    }
}

/// Gives a blob lease back in the background when dropped armed: armed while an acquire
/// may have taken the lease and the grant is not yet handed out, so an answer lost, a
/// failed stamp or a call dropped at its deadline never leaves the name locked. Releasing
/// an id that holds nothing is harmless (the service refuses it).
struct GiveBack {
    /// The runtime the acquisition runs on (the HTTP transport needs one), for the
    /// background release.
    runtime: tokio::runtime::Handle,
    provider: BlobLeaseProvider,
    name: String,
    lease_id: String,
    armed: bool,
}

impl GiveBack {
    fn new(provider: &BlobLeaseProvider, name: &str, lease_id: &str) -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            provider: provider.clone(),
            name: name.to_owned(),
            lease_id: lease_id.to_owned(),
            armed: false,
        }
    }

    fn arm(&mut self) {
        self.armed = true;
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GiveBack {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let provider = self.provider.clone();
        let name = std::mem::take(&mut self.name);
        let lease_id = std::mem::take(&mut self.lease_id);
        // Best effort: a failure leaves the lease to expire (an id that holds nothing is
        // refused harmlessly).
        self.runtime.spawn(async move {
            let blob = provider.blob(&name);
            let _ = provider.release_id(&blob, &lease_id).await;
        });
    }
}

impl LeaseProvider for BlobLeaseProvider {
    fn provider_name(&self) -> &'static str {
        "blob"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities::new(MIN_DURATION, MAX_DURATION)
            .with_infinite_leases(true)
            .with_duration_granularity(Duration::from_secs(1))
            .with_listing(true)
            .with_max_renew_batch(self.inner.config.renew_concurrency.saturating_mul(8))
            // Each renewal is its own request: the core's renew_many keeps this many in
            // flight.
            .with_renew_concurrency(self.inner.config.renew_concurrency)
    }

    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move {
            leasing_abstractions::validate_request(request, &self.capabilities())?;
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

    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let blob = self.blob(&grant.name);
            self.release_id(&blob, &grant.lease_id)
                .await
                .map_err(|e| e.or_lease(&grant.name, Some(&grant.lease_id)))
        })
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move {
            leasing_abstractions::validate_name(name)?;
            self.inspect_name(name)
                .await
                .map_err(|e| e.or_lease(name, None))
        })
    }

    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            leasing_abstractions::validate_name(name)?;
            self.break_name(name)
                .await
                .map_err(|e| e.or_lease(name, None))
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(async move { self.list_page(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let p = BlobLeaseProvider::from_config(
            BlobLeaseProvider::builder()
                .sas_url("https://a.blob.core.windows.net/?sv=1&sig=TOPSECRET")
                .into_config()
                .unwrap(),
        )
        .unwrap();
        let d = format!("{p:?} {p:#?} {:?}", p.config());
        assert!(!d.contains("TOPSECRET"), "{d}");
        assert!(d.contains("a.blob.core.windows.net"));
    }
}
