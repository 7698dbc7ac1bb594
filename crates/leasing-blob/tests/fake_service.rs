//! Service answers Azurite does not give on demand, from a scripted HTTP server: a
//! failure after the lease was acquired (the lease must be given back), a blob that keeps
//! vanishing, a lease released between break's look and its break, unreadable listings.

use leasing_abstractions::{AcquireRequest, ErrorKind, LeaseProvider, ListRequest, Metadata};
use leasing_blob::{BlobLeaseProvider, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::fake::{serve, serve_lease_ops, Answer};

fn provider(url: &str) -> BlobLeaseProvider {
    BlobLeaseProvider::from_config(
        BlobLeaseProvider::builder()
            .endpoint(url)
            .account_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
            .call_timeout(Duration::from_secs(2))
            .into_config()
            .expect("config"),
    )
    .expect("build")
}

fn req() -> AcquireRequest {
    AcquireRequest::new("job:1", Duration::from_secs(15), Metadata::new())
}

fn count(seen: &Mutex<Vec<String>>, what: &str) -> usize {
    seen.lock()
        .expect("log")
        .iter()
        .filter(|r| r.contains(what))
        .count()
}

/// The core drops an acquisition at its deadline; if the service may already have granted
/// the lease (the acquire answered, the stamp did not), the provider gives it back.
#[tokio::test]
async fn an_acquisition_dropped_at_its_deadline_gives_the_lease_back() {
    let (url, seen) = serve(Arc::new(|t: &str| {
        if t.starts_with("PUT") && t.contains("comp=lease") {
            Answer(201, "", "x-ms-lease-id: x\r\n", "")
        } else {
            Answer(0, "", "", "")
        }
    }))
    .await;
    let p = provider(&url);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let e = leasing_abstractions::provider::within(
        deadline,
        leasing_abstractions::Operation::Acquire,
        p.try_acquire(&req()),
    )
    .await
    .expect_err("the stamp never answers");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.to_string().contains("within its deadline"), "{e}");
    // Acquire, the stalled read, then the release in the background.
    while count(&seen, "comp=lease") < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = seen.lock().expect("log").clone();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[1].starts_with("HEAD"), "{log:?}");
    assert!(
        log[2].starts_with("PUT") && log[2].contains("comp=lease"),
        "{log:?}"
    );
    // A contended answer (the lease is someone else's) gives nothing back.
    let (url, seen) = serve_lease_ops(
        Answer(409, "LeaseAlreadyPresent", "", ""),
        Answer(0, "", "", ""),
    )
    .await;
    assert!(provider(&url)
        .try_acquire(&req())
        .await
        .expect("held")
        .is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count(&seen, "comp=lease"),
        1,
        "no give-back for a refused acquire"
    );
}

#[tokio::test]
async fn a_failure_after_the_lease_was_taken_gives_the_lease_back() {
    let (url, seen) = serve(Arc::new(|t: &str| {
        if t.starts_with("PUT") && t.contains("comp=lease") {
            Answer(201, "", "x-ms-lease-id: x\r\n", "")
        } else {
            Answer(503, "ServerBusy", "", "")
        }
    }))
    .await;
    let e = provider(&url)
        .try_acquire(&req())
        .await
        .expect_err("stamp failed");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    // The lease is given back in the background: wait for the third request.
    let log = loop {
        let log = seen.lock().expect("log").clone();
        if log.len() >= 3 {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(log.len(), 3, "acquire, read, release: {log:?}");
    assert!(
        log[0].starts_with("PUT") && log[1].starts_with("HEAD"),
        "{log:?}"
    );
    assert!(
        log[2].starts_with("PUT") && log[2].contains("comp=lease"),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_blob_that_keeps_vanishing_is_an_error_not_a_loop() {
    let (url, seen) =
        serve_lease_ops(Answer(404, "BlobNotFound", "", ""), Answer(201, "", "", "")).await;
    let e = provider(&url)
        .try_acquire(&req())
        .await
        .expect_err("gave up");
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    assert_eq!(count(&seen, "comp=lease"), 3);
}

#[tokio::test]
async fn container_and_blob_creation_failures_are_reported() {
    let (url, _) = serve_lease_ops(
        Answer(404, "ContainerNotFound", "", ""),
        Answer(500, "InternalError", "", ""),
    )
    .await;
    let e = provider(&url)
        .try_acquire(&req())
        .await
        .expect_err("no container");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    let (url, _) = serve_lease_ops(
        Answer(404, "BlobNotFound", "", ""),
        Answer(500, "InternalError", "", ""),
    )
    .await;
    let e = provider(&url)
        .try_acquire(&req())
        .await
        .expect_err("no blob");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
}

#[tokio::test]
async fn a_lease_released_between_look_and_break_was_not_broken() {
    let (url, _) = serve(Arc::new(|t: &str| {
        if t.starts_with("HEAD") {
            Answer(
                200,
                "",
                "x-ms-lease-status: locked\r\nx-ms-lease-state: leased\r\n",
                "",
            )
        } else {
            Answer(409, "LeaseNotPresentWithLeaseOperation", "", "")
        }
    }))
    .await;
    assert!(!provider(&url).break_lease("job:1").await.expect("break"));
    let (url, _) = serve(Arc::new(|t: &str| {
        if t.starts_with("HEAD") {
            Answer(200, "", "x-ms-lease-status: locked\r\n", "")
        } else {
            Answer(500, "InternalError", "", "")
        }
    }))
    .await;
    let e = provider(&url)
        .break_lease("job:1")
        .await
        .expect_err("break");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
}

#[tokio::test]
async fn unreadable_or_failed_listings_are_errors() {
    let (url, _) = serve(Arc::new(|_: &str| {
        Answer(200, "", "content-type: application/xml\r\n", "<not xml")
    }))
    .await;
    let e = provider(&url)
        .list(&ListRequest::new(""))
        .await
        .expect_err("garbage");
    // An answer the provider cannot read: Unexpected, as on every backend.
    assert_eq!(e.kind(), ErrorKind::Unexpected, "{e}");
    let (url, _) = serve(Arc::new(|_: &str| Answer(500, "InternalError", "", ""))).await;
    let e = provider(&url)
        .list(&ListRequest::new(""))
        .await
        .expect_err("500");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
}

/// The fenced resource keeps to the error contract too: an answer no rule covers is
/// `Unexpected`, a service error (5xx) `ProviderUnavailable`.
#[tokio::test]
async fn a_fenced_resource_reports_unknown_and_failing_answers_as_everywhere() {
    use leasing_abstractions::fence::{Fence, FencedResource};
    for (status, kind) in [
        (418, ErrorKind::Unexpected),
        (503, ErrorKind::ProviderUnavailable),
    ] {
        let (url, _) =
            serve_lease_ops(Answer(status, "X", "", ""), Answer(status, "X", "", "")).await;
        let p = provider(&url);
        let r = leasing_blob::BlobFencedResource::new(&p, "items").expect("resource");
        let f = Fence::new("lease", 1);
        let e = r.write(&f, "k", b"v").await.expect_err("write");
        assert_eq!(e.kind(), kind, "{status}: {e}");
        let e = r.read("k").await.expect_err("read");
        assert_eq!(e.kind(), kind, "{status}: {e}");
        let e = r.highest("k", "lease").await.expect_err("highest");
        assert_eq!(e.kind(), kind, "{status}: {e}");
    }
}
