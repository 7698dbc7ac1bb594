//! The lease operations on one document: acquire (create, or take over a free or
//! expired one under If-Match), renew, release, break and inspect.

use crate::document::{document_id, LeaseDocument, State};
use crate::error::{Failure, Mapped};
use crate::provider::CosmosLeaseProvider;
use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseDuration, LeaseError, LeaseExpiry, LeaseGrant, LeaseInfo,
    Result,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// How many attempts a release or break makes when the document keeps changing under it.
const WRITE_ATTEMPTS: usize = 5;

pub(crate) fn ms_to_time(ms: i64) -> SystemTime {
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
    pub(crate) fn ttl_secs(&self, duration_ms: u64) -> i64 {
        let secs = self
            .inner
            .retention
            .as_secs()
            .max(duration_ms.div_ceil(1000) + 1);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    pub(crate) fn new_doc(&self, req: &AcquireRequest, lease_id: &str) -> LeaseDocument {
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

    pub(crate) fn grant_of(
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

    pub(crate) async fn acquire(&self, req: &AcquireRequest) -> Result<Option<LeaseGrant>> {
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

    pub(crate) fn held_doc(&self, grant: &LeaseGrant, state: State) -> LeaseDocument {
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

    pub(crate) async fn renew_one(&self, grant: &LeaseGrant) -> Result<()> {
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

    pub(crate) async fn release_one(&self, grant: &LeaseGrant) -> Result<()> {
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

    pub(crate) async fn break_one(&self, name: &str) -> Result<bool> {
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

    pub(crate) fn info_of(doc: &LeaseDocument) -> LeaseInfo {
        LeaseInfo::new(
            doc.lease_name.clone(),
            Some(doc.lease_id.clone()),
            doc.token(),
            ms_to_time(doc.acquired_ms()),
            LeaseExpiry::At(ms_to_time(doc.expiry_ms())),
            doc.metadata.clone(),
        )
    }

    pub(crate) async fn inspect_one(&self, name: &str) -> Result<Option<LeaseInfo>> {
        Ok(self
            .observe(name)
            .await?
            .filter(|s| s.doc.held_at(s.now_ms))
            .map(|s| Self::info_of(&s.doc)))
    }
}

/// During acquisition, a 412/404 from an unexpected place (the document changed or went
/// between two steps) is not "lost": it is `Unexpected`, marked temporary (the next
/// attempt reads the document again); other kinds stay.
fn acquire_error(m: Mapped) -> LeaseError {
    if m.error.kind() == ErrorKind::Lost {
        LeaseError::new(ErrorKind::Unexpected, m.error.message().to_owned()).with_temporary(true)
    } else {
        m.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error;

    #[test]
    fn small_conversions() {
        assert_eq!(ms_to_time(-1), UNIX_EPOCH);
        assert_eq!(ms_to_time(1500), UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(duration_ms(LeaseDuration::Infinite), u64::MAX);
        assert_eq!(duration_ms(Duration::from_secs(2).into()), 2000);
        assert!(wall_ms() > 0);
        let err = acquire_error(error::map_status(412, None, None, true, "acquire"));
        assert_eq!(err.kind(), ErrorKind::Unexpected);
        assert!(
            err.is_retryable(),
            "the next attempt reads the document again"
        );
        let err = acquire_error(error::map_status(503, None, None, true, "acquire"));
        assert_eq!(err.kind(), ErrorKind::ProviderUnavailable);
    }
}
