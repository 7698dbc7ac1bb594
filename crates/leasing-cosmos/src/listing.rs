//! `list`: the held leases whose names start with a prefix, in name order, a page at a
//! time (the cursor is the last name of the page).

use crate::document::LeaseDocument;
use crate::error;
use crate::provider::CosmosLeaseProvider;
use azure_data_cosmos::{FeedScope, Query};
use leasing_abstractions::{LeasePage, ListRequest, Result};

impl CosmosLeaseProvider {
    pub(crate) async fn list_page(&self, request: &ListRequest) -> Result<LeasePage> {
        let container = self.container().await?;
        let after = request.cursor.clone().unwrap_or_default();
        let query = Query::from(
            "SELECT c AS doc, GetCurrentTimestamp() AS now FROM c WHERE c.state = 'held' AND STARTSWITH(c.leaseName, @prefix) AND c.leaseName > @after",
        )
        .with_parameter("@prefix", &request.prefix)
        .and_then(|q| q.with_parameter("@after", &after))
        .map_err(|e| error::corrupt("list", e))?;
        let Some(rows) = self
            .query_docs("list", container, query, FeedScope::full_container())
            .await?
        else {
            return Ok(LeasePage::new(Vec::new(), None));
        };
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
