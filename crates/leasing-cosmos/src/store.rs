//! Document I/O: each call under the per-call deadline with its request charge, the
//! container on first use, and the reads and writes of lease documents.

use crate::client::with_content;
use crate::document::{document_id, LeaseDocument};
use crate::error::{self, Failure, Mapped};
use crate::provider::CosmosLeaseProvider;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{ContainerProperties, ItemResponse};
use azure_data_cosmos::options::{ItemReadOptions, ItemWriteOptions, Precondition, QueryOptions};
use azure_data_cosmos::{FeedScope, Query};
use futures::StreamExt;
use leasing_abstractions::{LeaseError, Result};
use serde::Deserialize;
use std::future::Future;
use std::sync::atomic::Ordering;

/// What a read of a lease document returns: the document and the service clock.
pub(crate) struct Observed {
    pub(crate) doc: LeaseDocument,
    /// Service time (ms) when the document was read.
    pub(crate) now_ms: i64,
}

#[derive(Deserialize)]
pub(crate) struct DocAndClock {
    pub(crate) doc: LeaseDocument,
    pub(crate) now: i64,
}

impl CosmosLeaseProvider {
    pub(crate) fn charge(&self, op: &'static str, ru: f64) {
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

    /// Runs one call. No timeout of its own: within the core the call's deadline ends it
    /// (the core drops it), outside the core the transport's request timeout
    /// (`call_timeout`) does.
    pub(crate) async fn call<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = azure_data_cosmos::Result<T>>,
    ) -> std::result::Result<T, Mapped> {
        error::bounded(
            None,
            what,
            f,
            |ru| self.charge(what, ru),
            |e| error::map(e, what),
        )
        .await
    }

    pub(crate) fn note(&self, what: &'static str, r: &ItemResponse) {
        self.charge(
            what,
            r.headers().request_charge().map_or(0.0, |c| f64::from(*c)),
        );
    }

    /// The container client, creating the database and container on first use.
    pub(crate) async fn container(&self) -> Result<&ContainerClient> {
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

    pub(crate) fn may_create(&self) -> bool {
        self.inner.create_if_missing && self.inner.auth_kind == "key"
    }

    /// Creates the database and container unless they exist; safe when many processes
    /// race (409 means someone else created it, which is as good).
    pub(crate) async fn ensure_container(&self) -> Result<()> {
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
    pub(crate) async fn observe(&self, name: &str) -> Result<Option<Observed>> {
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
        let Some(rows) = self
            .query_docs("read", container, query, FeedScope::partition(pk))
            .await?
        else {
            // No container (yet, or any more): nothing is held.
            return Ok(None);
        };
        Ok(rows.into_iter().next().map(|r| Observed {
            doc: r.doc,
            now_ms: r.now,
        }))
    }

    /// Every row of `query` in `scope` (all its pages) under one call deadline, with the
    /// request charge counted as `what`; `None` when the container does not exist.
    pub(crate) async fn query_docs(
        &self,
        what: &'static str,
        container: &ContainerClient,
        query: Query,
        scope: FeedScope,
    ) -> Result<Option<Vec<DocAndClock>>> {
        let fut = async {
            let iter = container
                .query_items::<DocAndClock>(query, scope, Some(QueryOptions::default()))
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
        let (rows, ru) = match self.call(what, fut).await {
            Ok(v) => v,
            Err(m) if m.failure == Failure::NotFound => return Ok(None),
            Err(m) => return Err(m.error),
        };
        self.charge(what, ru);
        Ok(Some(rows))
    }

    /// Point read of the document (no clock).
    pub(crate) async fn read_doc(&self, name: &str) -> Result<Option<LeaseDocument>> {
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
    pub(crate) async fn send(
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
    pub(crate) async fn write_doc(
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
    pub(crate) async fn write_tag(
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
}

/// A create that found the resource already there (409) is as good as one that made it.
pub(crate) fn conflict_is_fine<T>(r: std::result::Result<T, Mapped>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(m) if m.failure == Failure::Conflict => Ok(()),
        Err(m) => Err(m.error),
    }
}
