//! `list`: the held leases whose names start with a prefix, in name order, a page at a
//! time (the cursor is the last name of the page).

use crate::document::LeaseDocument;
use crate::error::{self, Failure};
use crate::provider::CosmosLeaseProvider;
use crate::store::DocAndClock;
use azure_data_cosmos::options::QueryOptions;
use azure_data_cosmos::{FeedScope, Query};
use futures::StreamExt;
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
