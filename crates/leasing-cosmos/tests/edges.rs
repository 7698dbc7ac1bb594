//! Less travelled paths against the emulator: answers lost after a successful write
//! (stale ETags), grants without a version, expired leases, a missing container, and
//! documents this provider did not write.

mod common;

use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseGrant, LeaseProvider, ListRequest, Metadata,
};
use std::time::Duration;
use tokio::time::Instant;

fn req(name: &str, secs: u64) -> AcquireRequest {
    AcquireRequest::new(name, Duration::from_secs(secs), Metadata::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_etag_of_our_own_grant_is_recovered_by_renew_and_release() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let p = common::provider(&cs, &common::unique("edges")).await;
    let name = common::unique("stale");
    let g = p
        .try_acquire(&req(&name, 30))
        .await
        .expect("acquire")
        .expect("free");
    let v1 = g.version.get().expect("an ETag");
    p.renew(&g).await.expect("renew");
    let v2 = g.version.get().expect("an ETag");
    assert_ne!(v1, v2, "a renewal moves the ETag");
    // As if the answer of the last renewal had been lost: the grant still has v1.
    g.version.set(v1.clone());
    p.renew(&g)
        .await
        .expect("renew recovers: the document is still ours");
    assert_ne!(g.version.get().as_deref(), Some(v1.as_str()));
    g.version.set(v1);
    p.release(&g).await.expect("release recovers too");
    assert!(p.inspect(&name).await.expect("inspect").is_none());
    // Renewing a released grant is Lost, even with a stale version.
    let e = p.renew(&g).await.expect_err("released");
    assert_eq!(e.kind(), ErrorKind::Lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_without_a_version_reads_the_current_one() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let p = common::provider(&cs, &common::unique("edges")).await;
    let name = common::unique("noversion");
    let r = req(&name, 30);
    let g = p.try_acquire(&r).await.expect("acquire").expect("free");
    let bare = LeaseGrant::new(
        &r,
        g.lease_id.clone(),
        g.fencing_token,
        g.acquired_at,
        Instant::now(),
    );
    // No version: the document is read, and it still holds this lease id.
    p.renew(&bare)
        .await
        .expect("renew reads the current version");
    assert!(bare.version.get().is_some());
    p.release(&bare).await.expect("release");
    assert!(p.inspect(&name).await.expect("inspect").is_none());
    let g2 = p.try_acquire(&r).await.expect("acquire").expect("free");
    let other = LeaseGrant::new(&r, "not-ours", 1, g.acquired_at, Instant::now());
    let e = p.renew(&other).await.expect_err("not the holder");
    assert_eq!(e.kind(), ErrorKind::Lost);
    p.release(&other)
        .await
        .expect("a grant that is not the holder releases nothing");
    assert!(
        p.inspect(&name).await.expect("inspect").is_some(),
        "the holder survives"
    );
    p.release(&g2).await.expect("release");
    let gone = LeaseGrant::new(
        &req(&common::unique("never"), 30),
        "x",
        1,
        g.acquired_at,
        Instant::now(),
    );
    p.release(&gone)
        .await
        .expect("no document: nothing to release");
    let e = p.renew(&gone).await.expect_err("no document");
    assert_eq!(e.kind(), ErrorKind::Lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_free_to_inspect_break_list_and_take() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let p = common::provider(&cs, &common::unique("edges")).await;
    let prefix = common::unique("exp");
    let name = format!("{prefix}/a");
    let g = p
        .try_acquire(&req(&name, 1))
        .await
        .expect("acquire")
        .expect("free");
    assert_eq!(
        p.list(&ListRequest::new(&prefix))
            .await
            .expect("list")
            .leases
            .len(),
        1
    );
    // Expired on the service's clock after (_ts + 1 s) + 1 s at the latest.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(p.inspect(&name).await.expect("inspect").is_none());
    assert!(
        !p.break_lease(&name).await.expect("break"),
        "nothing to break"
    );
    assert!(p
        .list(&ListRequest::new(&prefix))
        .await
        .expect("list")
        .leases
        .is_empty());
    let g2 = p
        .try_acquire(&req(&name, 30))
        .await
        .expect("take")
        .expect("expired");
    assert!(g2.fencing_token > g.fencing_token);
    let e = p.renew(&g).await.expect_err("taken over");
    assert_eq!(e.kind(), ErrorKind::Lost);
    p.release(&g).await.expect("stale release");
    p.renew(&g2).await.expect("the new holder renews");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_container_without_creation_is_a_configuration_error() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let p = common::builder(&cs, &common::unique("absent"))
        .create_if_missing(false)
        .build()
        .await
        .expect("connect");
    let e = p.inspect("x").await.expect_err("no container");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert_eq!(e.field(), Some("container"));
    let e = p.try_acquire(&req("x", 5)).await.expect_err("no container");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_many_leases_lists_each_once() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let p = common::provider(&cs, &common::unique("pages")).await;
    let prefix = format!("{}:", common::unique("page"));
    let mut want = Vec::new();
    for i in 0..7 {
        let n = format!("{prefix}{i}");
        p.try_acquire(&req(&n, 30))
            .await
            .expect("acquire")
            .expect("free");
        want.push(n);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = p
            .list(&ListRequest::new(&prefix).with_limit(3).with_cursor(cursor))
            .await
            .expect("list");
        assert!(page.leases.len() <= 3);
        seen.extend(page.leases.into_iter().map(|l| l.name));
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, want);
}

/// `.` and `..` are valid lease names, but as document ids they are URL dot segments:
/// the SDK's item URL `…/docs/.` resolved to `…/docs/` ("no route") and `…/docs/..` to the
/// container itself ("replacing partitionKey is not allowed"), so both could be acquired
/// but never renewed or released. `...` is not a dot segment and keeps its plain id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_made_of_dots_are_renewed_inspected_listed_and_released() {
    let Some(cs) = common::connection_string() else {
        return;
    };
    let p = common::provider(&cs, &common::unique("dots")).await;
    let names = [".", "..", "..."];
    let mut grants = Vec::new();
    for name in names {
        let g = std::sync::Arc::new(
            p.try_acquire(&req(name, 30))
                .await
                .unwrap_or_else(|e| panic!("acquire {name:?}: {e}"))
                .unwrap_or_else(|| panic!("{name:?} is free in a new database")),
        );
        p.renew(&g)
            .await
            .unwrap_or_else(|e| panic!("renew {name:?}: {e}"));
        p.renew_many(std::slice::from_ref(&g))
            .await
            .into_iter()
            .for_each(|r| r.unwrap_or_else(|e| panic!("renew_many {name:?}: {e}")));
        let info = p
            .inspect(name)
            .await
            .expect("inspect")
            .unwrap_or_else(|| panic!("{name:?} is held"));
        assert_eq!(info.name, name);
        assert_eq!(info.fencing_token, g.fencing_token);
        assert!(
            p.try_acquire(&req(name, 30))
                .await
                .expect("acquire")
                .is_none(),
            "{name:?} is held by the first grant"
        );
        grants.push(g);
    }
    let listed: Vec<String> = p
        .list(&ListRequest::new("."))
        .await
        .expect("list")
        .leases
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(listed, names);
    for (name, g) in names.iter().zip(&grants) {
        p.release(g)
            .await
            .unwrap_or_else(|e| panic!("release {name:?}: {e}"));
        assert!(
            p.inspect(name).await.expect("inspect").is_none(),
            "{name:?}"
        );
        let e = p.renew(g).await.expect_err("released");
        assert_eq!(e.kind(), ErrorKind::Lost, "{name:?}: {e}");
        let again = p
            .try_acquire(&req(name, 30))
            .await
            .expect("acquire")
            .unwrap_or_else(|| panic!("{name:?} is free after its release"));
        assert!(again.fencing_token > g.fencing_token, "{name:?}");
        assert!(p.break_lease(name).await.expect("break"), "{name:?}");
        assert!(
            p.inspect(name).await.expect("inspect").is_none(),
            "{name:?}"
        );
    }
    assert!(p
        .list(&ListRequest::new("."))
        .await
        .expect("list")
        .leases
        .is_empty());
}
