//! The Redis fenced resource against real redis-server (single and Cluster): the recipe
//! suite's fenced-resource contract, tokens past 2^53, and bad keys.

mod common;

use common::service_env;
use leasing_abstractions::fence::{Fence, FencedResource, FencedWrite};
use leasing_abstractions::{ErrorKind, LeaseProvider};
use leasing_redis::{RedisFencedResource, RedisLeaseProvider};
use leasing_testkit::conformance::Subject;
use leasing_testkit::recipes;
use std::sync::Arc;

async fn single() -> Option<Arc<RedisLeaseProvider>> {
    let url = service_env("LEASING_REDIS_URL")?;
    Some(Arc::new(
        RedisLeaseProvider::builder()
            .url(&url)
            .key_prefix("fenced:")
            .build()
            .await
            .expect("connect"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_server_refuses_stale_writes() {
    let Some(p) = single().await else { return };
    let resource = RedisFencedResource::new(&p);
    let q: Arc<dyn LeaseProvider> = single().await.expect("again");
    recipes::fenced_resource(&Subject::new(p, q), &resource).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_refuses_stale_writes() {
    let Some(urls) = service_env("LEASING_REDIS_CLUSTER_URLS") else {
        return;
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    let build = || async {
        Arc::new(
            RedisLeaseProvider::builder()
                .cluster_urls(&urls)
                .key_prefix("fenced:")
                .build()
                .await
                .expect("connect"),
        )
    };
    let p = build().await;
    let resource = RedisFencedResource::new(&p);
    let q: Arc<dyn LeaseProvider> = build().await;
    recipes::fenced_resource(&Subject::new(p, q), &resource).await;
}

/// Tokens are compared exactly, also where a Lua number (a double) would not tell them
/// apart.
#[tokio::test]
async fn tokens_past_two_to_the_53_compare_exactly() {
    let Some(p) = single().await else { return };
    let r = RedisFencedResource::new(&p);
    let key = common::unique("big");
    let big = (1u64 << 60) + 1;
    assert_eq!(
        r.write(&Fence::new("lease", big), &key, b"a")
            .await
            .unwrap(),
        FencedWrite::Written
    );
    // big - 1 is the same double as big: only a string comparison refuses it.
    assert_eq!(
        r.write(&Fence::new("lease", big - 1), &key, b"b")
            .await
            .unwrap(),
        FencedWrite::Stale { highest: big }
    );
    assert_eq!(
        r.write(&Fence::new("lease", 9), &key, b"c").await.unwrap(),
        FencedWrite::Stale { highest: big }
    );
    assert_eq!(
        r.write(&Fence::new("lease", u64::MAX), &key, b"d")
            .await
            .unwrap(),
        FencedWrite::Written
    );
    assert_eq!(r.highest(&key, "lease").await.unwrap(), Some(u64::MAX));
    assert_eq!(r.read(&key).await.unwrap().as_deref(), Some(&b"d"[..]));
    assert!(r.item_key(&key).starts_with("fenced:item:{"));
    assert!(format!("{r:?}").contains("fenced:"));
}

#[tokio::test]
async fn bad_keys_and_names_are_refused_before_any_call() {
    let Some(p) = single().await else { return };
    let r = RedisFencedResource::new(&p);
    for (key, name, field) in [
        ("", "lease", "key"),
        ("a{b", "lease", "key"),
        ("k", "bad name", "name"),
    ] {
        let e = r.write(&Fence::new(name, 1), key, b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    assert_eq!(
        r.read("").await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        r.highest("}", "lease").await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}
