//! Listing keeps to the page limit on a small database, where one `SCAN` step finds every
//! name at once (the shared servers of the other tests hold too many keys to show it):
//! single server and Redlock.

mod common;

use common::RedisServer;
use leasing_abstractions::{AcquireRequest, LeaseProvider, ListRequest, Metadata};
use leasing_redis::RedlockLeaseProvider;
use std::time::Duration;

async fn pages(p: &dyn LeaseProvider, prefix: &str, limit: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = p
            .list(
                &ListRequest::new(prefix)
                    .with_limit(limit)
                    .with_cursor(cursor),
            )
            .await
            .expect("list");
        out.push(page.leases.iter().map(|l| l.name.clone()).collect());
        cursor = page.cursor;
        if cursor.is_none() {
            return out;
        }
    }
}

async fn hold_five(p: &dyn LeaseProvider) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..5 {
        let name = format!("job-{i}");
        let req = AcquireRequest::new(&name, Duration::from_secs(30), Metadata::new());
        p.try_acquire(&req).await.expect("acquire").expect("free");
        names.push(name);
    }
    names
}

fn check(pages: &[Vec<String>], limit: usize, want: &[String]) {
    assert!(
        pages.iter().all(|p| p.len() <= limit),
        "a page over the limit of {limit}: {pages:?}"
    );
    let mut seen: Vec<String> = pages.concat();
    seen.sort();
    assert_eq!(seen, want, "each held name exactly once: {pages:?}");
}

#[tokio::test]
async fn a_single_server_keeps_to_the_page_limit() {
    if !RedisServer::installed() {
        return;
    }
    let server = RedisServer::start().expect("start redis-server");
    let p = common::connect(server.url()).await;
    let names = hold_five(&p).await;
    for limit in [1, 2, 5, 100] {
        check(&pages(&p, "job-", limit).await, limit, &names);
    }
    // A cursor from a page that stopped inside a SCAN step, then a malformed one.
    let first = p
        .list(&ListRequest::new("job-").with_limit(2))
        .await
        .unwrap();
    let cursor = first.cursor.expect("more to come");
    assert_eq!(cursor.split(':').count(), 3, "{cursor}");
    let bad = p
        .list(&ListRequest::new("job-").with_cursor(Some("0:0:x".into())))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), leasing_abstractions::ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn redlock_keeps_to_the_page_limit() {
    let Some((_servers, urls)) = common::private_servers(3, &[]) else {
        return;
    };
    let p = RedlockLeaseProvider::builder()
        .urls(urls)
        .build()
        .await
        .expect("redlock");
    let names = hold_five(&p).await;
    for limit in [1, 3, 100] {
        check(&pages(&p, "job-", limit).await, limit, &names);
    }
}
