//! The lease key's two states against a real redis-server: a lease, or once released a
//! tombstone (`~<token>`) that keeps the fencing floor for `fence_retention`. What reads
//! as free, what the next token is, a release on a full server, and records of another
//! format refused loudly and left as they were.

mod common;

use common::{private_server, raw, req, service_env, unique};
use leasing_abstractions::{ErrorKind, LeaseProvider, ListRequest};
use std::time::{Duration, SystemTime};

const D: Duration = Duration::from_secs(5);

async fn get(c: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(c)
        .await
        .expect("get")
}

async fn set(c: &mut redis::aio::MultiplexedConnection, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(60_000)
        .query_async(c)
        .await
        .expect("set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_leaves_a_tombstone_that_reads_as_free_and_floors_the_next_token() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = common::connect(&url).await;
    let mut c = raw(&url).await;
    let name = unique("tomb");
    let key = format!("lease:{{{name}}}");
    let g1 = p
        .try_acquire(&req(&name, D))
        .await
        .expect("acquire")
        .expect("free");
    p.release(&g1).await.expect("release");
    assert_eq!(
        get(&mut c, &key).await,
        Some(format!("~{}", g1.fencing_token))
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("pttl");
    assert!(
        (1..=86_400_000).contains(&pttl),
        "the tombstone lives the default retention (1 day): {pttl}"
    );
    // Free to every reader; the released grant cannot renew it, nor release it again.
    assert!(p.inspect(&name).await.expect("inspect").is_none());
    let page = p.list(&ListRequest::new(&name)).await.expect("list");
    assert!(page.leases.is_empty(), "{:?}", page.leases);
    assert_eq!(
        p.renew(&g1).await.expect_err("released").kind(),
        ErrorKind::Lost
    );
    assert!(!p.break_lease(&name).await.expect("break"), "nothing held");
    assert_eq!(
        get(&mut c, &key).await,
        Some(format!("~{}", g1.fencing_token))
    );
    // The next grant is above it; a break leaves the broken lease's token.
    let g2 = p
        .try_acquire(&req(&name, D))
        .await
        .expect("acquire")
        .expect("free");
    assert!(g2.fencing_token > g1.fencing_token);
    assert!(p.break_lease(&name).await.expect("break"));
    assert_eq!(
        get(&mut c, &key).await,
        Some(format!("~{}", g2.fencing_token))
    );
    // A tombstone far ahead of the server clock (a clock that stepped back): the next
    // token is exactly one above it, not the clock.
    let now_us = u64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_micros(),
    )
    .expect("µs");
    let ahead = now_us + 3_600_000_000;
    set(&mut c, &key, &format!("~{ahead}")).await;
    let g3 = p
        .try_acquire(&req(&name, D))
        .await
        .expect("acquire")
        .expect("free");
    assert_eq!(g3.fencing_token, ahead + 1);
    assert_eq!(
        p.inspect(&name)
            .await
            .expect("inspect")
            .expect("held")
            .fencing_token,
        ahead + 1
    );
    p.release(&g3).await.expect("release");
    assert_eq!(get(&mut c, &key).await, Some(format!("~{}", ahead + 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_another_format_are_refused_loudly_and_left_alone() {
    let Some(url) = service_env("LEASING_REDIS_URL") else {
        return;
    };
    let p = common::connect(&url).await;
    let mut c = raw(&url).await;
    // `1<token>`: a tombstone that a client older than the tombstone format marked
    // "waited" (its acquire's SETRANGE); a tombstone that is not a number; a value of
    // another program; an empty string.
    for value in ["11790000000000000", "~abc", "hello", "0no-separator", ""] {
        let name = unique("foreign");
        let key = format!("lease:{{{name}}}");
        set(&mut c, &key, value).await;
        let e = p
            .try_acquire(&req(&name, D))
            .await
            .expect_err("not a record of this version");
        assert_eq!(e.kind(), ErrorKind::Unexpected, "{value:?}: {e}");
        assert!(!e.is_retryable());
        assert!(
            e.to_string().contains("older than the tombstone format"),
            "{value:?}: {e}"
        );
        assert_eq!(e.lease_name(), Some(name.as_str()));
        assert_eq!(get(&mut c, &key).await.as_deref(), Some(value), "rewritten");
    }
    // A lease record of the previous version has this version's format: it is held,
    // and the contender marks it waited, as before.
    let name = unique("previous");
    let key = format!("lease:{{{name}}}");
    set(
        &mut c,
        &key,
        "0someid|1790000000000000|1790000000000|4:host",
    )
    .await;
    assert!(p
        .try_acquire(&req(&name, D))
        .await
        .expect("acquire")
        .is_none());
    assert_eq!(
        get(&mut c, &key).await.as_deref(),
        Some("1someid|1790000000000000|1790000000000|4:host")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_a_full_server_deletes_and_the_next_token_is_still_higher() {
    let Some((server, p)) = private_server(Duration::from_secs(5)).await else {
        return;
    };
    let url = server.url();
    let mut c = raw(&url).await;
    let name = unique("oom");
    let key = format!("lease:{{{name}}}");
    let g1 = p
        .try_acquire(&req(&name, D))
        .await
        .expect("acquire")
        .expect("free");
    // Full: every write that may grow memory is refused (noeviction, the default).
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .query_async(&mut c)
        .await
        .expect("config");
    let e = p
        .try_acquire(&req(&unique("oom-other"), D))
        .await
        .expect_err("full");
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.to_string().contains("OOM"), "{e}");
    // The release still works: the tombstone is refused, the lease deleted.
    p.release(&g1).await.expect("release on a full server");
    assert_eq!(get(&mut c, &key).await, None);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async(&mut c)
        .await
        .expect("config");
    // No tombstone: the server clock floors the next token.
    let g2 = p
        .try_acquire(&req(&name, D))
        .await
        .expect("acquire")
        .expect("free");
    assert!(g2.fencing_token > g1.fencing_token);
    assert!(p.break_lease(&name).await.expect("break"));
    drop(server);
}
