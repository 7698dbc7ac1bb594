//! `list`: the held leases among the container's lease blobs, a page at a time.

use crate::error::{map_failure, Failure, Op};
use crate::naming;
use crate::provider::BlobLeaseProvider;
use crate::stored::{info, read_stored};
use azure_storage_blob::models::{LeaseDuration as AzLeaseDuration, LeaseStatus};
use futures::StreamExt;
use leasing_abstractions::{LeasePage, ListRequest, Result};
use std::collections::HashMap;

impl BlobLeaseProvider {
    pub(crate) async fn list_page(&self, request: &ListRequest) -> Result<LeasePage> {
        use azure_storage_blob::models::{
            BlobContainerClientListBlobsOptions, ListBlobsIncludeItem,
        };
        let options = BlobContainerClientListBlobsOptions {
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            marker: request.cursor.clone(),
            maxresults: Some(i32::try_from(request.limit.clamp(1, 5000)).unwrap_or(5000)),
            prefix: Some(naming::blob_prefix(&request.prefix)),
            ..Default::default()
        };
        let mut pages = match self.container().list_blobs(Some(options)) {
            Ok(p) => p.into_pages(),
            Err(e) => return Err(map_failure(Op::List, Failure::from_azure(&e))),
        };
        loop {
            // No timeout of its own: the core's deadline for the call ends it.
            let page = match pages.next().await {
                None => return Ok(LeasePage::new(Vec::new(), None)),
                Some(Err(e)) => {
                    let f = Failure::from_azure(&e);
                    if f.code() == Some("ContainerNotFound") {
                        return Ok(LeasePage::new(Vec::new(), None));
                    }
                    return Err(map_failure(Op::List, f));
                }
                Some(Ok(p)) => p,
            };
            let body = page
                .into_model()
                .map_err(|e| map_failure(Op::List, Failure::from_azure(&e)))?;
            let next_marker = body.next_marker.clone().filter(|m| !m.is_empty());
            let mut leases = Vec::new();
            for item in body.blob_items {
                // Blobs that are not lease blobs (or unnamed) are skipped.
                let Some(name) = item.name.as_deref().and_then(naming::lease_name) else {
                    continue;
                };
                if !name.starts_with(&request.prefix) {
                    continue;
                }
                let props = item.properties.as_ref();
                let locked = props.and_then(|p| p.lease_status) == Some(LeaseStatus::Locked);
                if !locked {
                    continue;
                }
                let infinite =
                    props.and_then(|p| p.lease_duration) == Some(AzLeaseDuration::Infinite);
                let raw: HashMap<String, String> = item
                    .metadata
                    .as_ref()
                    .and_then(|m| m.values.clone())
                    .unwrap_or_default();
                leases.push(info(&name, read_stored(&raw), infinite));
            }
            // A page is never empty unless the listing is done: skip pages of free
            // leases.
            if !leases.is_empty() || next_marker.is_none() {
                return Ok(LeasePage::new(leases, next_marker));
            }
        }
    }
}
