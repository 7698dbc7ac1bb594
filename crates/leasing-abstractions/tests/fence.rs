#![allow(clippy::unwrap_used)]
//! The in-memory fenced resource: the contract of `leasing_abstractions::fence`.

use leasing_abstractions::fence::{
    check, Fence, FencedResource, FencedWrite, InMemoryFencedResource,
};
use leasing_abstractions::ErrorKind;

#[tokio::test]
async fn stale_tokens_are_refused_per_lease_name_and_key() {
    let r = InMemoryFencedResource::new();
    let f5 = Fence::new("job", 5);
    assert_eq!((f5.name(), f5.token()), ("job", 5));
    assert_eq!(r.read("k").await.unwrap(), None);
    assert_eq!(r.highest("k", "job").await.unwrap(), None);
    assert_eq!(r.write(&f5, "k", b"a").await.unwrap(), FencedWrite::Written);
    assert_eq!(r.write(&f5, "k", b"b").await.unwrap(), FencedWrite::Written);
    assert_eq!(
        r.write(&Fence::new("job", 4), "k", b"c").await.unwrap(),
        FencedWrite::Stale { highest: 5 }
    );
    assert_eq!(r.read("k").await.unwrap().as_deref(), Some(&b"b"[..]));
    // Another key, another lease: independent.
    assert_eq!(
        r.write(&Fence::new("job", 1), "k2", b"x").await.unwrap(),
        FencedWrite::Written
    );
    assert_eq!(
        r.write(&Fence::new("other", 1), "k", b"o").await.unwrap(),
        FencedWrite::Written
    );
    assert_eq!(r.highest("k", "job").await.unwrap(), Some(5));
    assert_eq!(r.highest("k", "other").await.unwrap(), Some(1));
    let e = r.write(&f5, "", b"x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("key"), "{e}");
    assert!(format!("{r:?}").contains("InMemoryFencedResource"));
    assert_eq!(check(None, 0), FencedWrite::Written);
    assert_eq!(check(Some(3), 3), FencedWrite::Written);
    assert_eq!(check(Some(3), 2), FencedWrite::Stale { highest: 3 });
}
