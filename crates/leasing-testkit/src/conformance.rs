//! The provider conformance suite (the guarantees of docs/guarantees.md).

use futures::future::join_all;
use leasing_abstractions::{
    AcquireOptions, AcquireRequest, ErrorKind, LeaseDuration, LeaseError, LeaseExpiry, LeaseGrant,
    LeaseManager, LeaseOptions, LeaseProvider, ListRequest, Metadata,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a conformance check runs against.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The provider under test.
    pub provider: Arc<dyn LeaseProvider>,
    /// A second, independently built instance on the same backend (a fresh client).
    pub fresh: Arc<dyn LeaseProvider>,
    /// Prefix that makes this run's lease names unique.
    pub run_id: String,
    /// Duration used by the checks that wait for expiry; defaults to the provider's
    /// minimum, at least 1 s (a loaded CI machine must be able to renew within a third of
    /// it).
    pub short_duration: Duration,
    /// Concurrent acquirers in the mutual-exclusion check. Default 16.
    pub contenders: usize,
    /// Secrets the provider was configured with; none may appear in its `Debug`.
    pub secrets: Vec<String>,
}

impl Subject {
    /// A subject over `provider`, with `fresh` a second instance on the same backend.
    pub fn new(provider: Arc<dyn LeaseProvider>, fresh: Arc<dyn LeaseProvider>) -> Self {
        let min = provider.capabilities().min_duration;
        Self {
            provider,
            fresh,
            run_id: format!("conf-{}", uuid::Uuid::new_v4().simple()),
            short_duration: min.max(Duration::from_secs(1)),
            contenders: 16,
            secrets: Vec::new(),
        }
    }

    /// Sets the secrets that must not appear in `Debug`.
    pub fn with_secrets(mut self, secrets: impl IntoIterator<Item = String>) -> Self {
        self.secrets = secrets.into_iter().collect();
        self
    }

    /// Sets the expiry-test duration.
    pub fn with_short_duration(mut self, d: Duration) -> Self {
        self.short_duration = d;
        self
    }

    /// A unique lease name for `test`.
    pub fn name(&self, test: &str) -> String {
        format!("{}-{test}-{}", self.run_id, uuid::Uuid::new_v4().simple())
    }

    fn long(&self) -> LeaseDuration {
        let caps = self.provider.capabilities();
        LeaseDuration::Finite(Duration::from_secs(30).clamp(caps.min_duration, caps.max_duration))
    }

    fn request(&self, name: &str) -> AcquireRequest {
        AcquireRequest::new(name, self.long(), Metadata::new())
    }
}

async fn acquire(p: &dyn LeaseProvider, req: &AcquireRequest, what: &str) -> LeaseGrant {
    match p.try_acquire(req).await {
        Ok(Some(g)) => g,
        Ok(None) => panic!("{what}: {:?} should be free but is held", req.name),
        Err(e) => panic!("{what}: acquiring {:?} failed: {e}", req.name),
    }
}

/// Guarantee 1: of N concurrent `try_acquire` on one free name, exactly one wins; the
/// others get `None`, not an error.
pub async fn mutual_exclusion(s: &Subject) {
    let name = s.name("mutex");
    let req = s.request(&name);
    let results = join_all((0..s.contenders).map(|i| {
        let p = if i % 2 == 0 { &s.provider } else { &s.fresh };
        let req = req.clone();
        async move { p.try_acquire(&req).await }
    }))
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(Some(g)) => winners.push(g),
            Ok(None) => {}
            Err(e) => panic!("mutual exclusion: a contender failed instead of losing: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "mutual exclusion: {} of {} contenders won {name:?}",
        winners.len(),
        s.contenders
    );
    let info = s
        .provider
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("held");
    assert_eq!(
        info.fencing_token, winners[0].fencing_token,
        "mutual exclusion: inspect shows another holder"
    );
    s.provider.release(&winners[0]).await.expect("release");
}

/// Guarantee 2: fencing tokens for one name strictly increase from grant to grant,
/// through release, break, expiry and a fresh provider instance.
pub async fn fencing_tokens_increase(s: &Subject) {
    let name = s.name("fencing");
    let req = s.request(&name);
    let mut last = 0u64;
    let mut check = |g: &LeaseGrant, how: &str| {
        assert!(
            g.fencing_token > last,
            "fencing: token {} after {how} is not above {last}",
            g.fencing_token
        );
        last = g.fencing_token;
    };
    let g = acquire(s.provider.as_ref(), &req, "fencing").await;
    check(&g, "first grant");
    s.provider.release(&g).await.expect("release");
    let g = acquire(s.fresh.as_ref(), &req, "fencing").await;
    check(&g, "release, on a fresh instance");
    assert!(
        s.provider.break_lease(&name).await.expect("break"),
        "fencing: break found nothing to break"
    );
    let g = acquire(s.provider.as_ref(), &req, "fencing").await;
    check(&g, "break");
    s.provider.release(&g).await.expect("release");
    let short = AcquireRequest::new(&name, s.short_duration, Metadata::new());
    let g = acquire(s.fresh.as_ref(), &short, "fencing").await;
    check(&g, "release");
    let g2 = wait_acquire(s.provider.as_ref(), &short, s.short_duration * 20).await;
    check(&g2, "expiry");
    s.provider.release(&g2).await.expect("release");
}

async fn wait_acquire(p: &dyn LeaseProvider, req: &AcquireRequest, limit: Duration) -> LeaseGrant {
    let started = Instant::now();
    loop {
        if let Some(g) = p.try_acquire(req).await.expect("try_acquire while waiting") {
            return g;
        }
        assert!(
            started.elapsed() < limit,
            "{:?} never became free within {limit:?}",
            req.name
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Guarantee 3a: a released name is acquirable at once, by another instance too.
pub async fn release_frees_at_once(s: &Subject) {
    let name = s.name("release");
    let req = s.request(&name);
    let g = acquire(s.provider.as_ref(), &req, "release").await;
    assert!(
        s.fresh
            .try_acquire(&req)
            .await
            .expect("try_acquire")
            .is_none(),
        "release: a held name was granted twice"
    );
    s.provider.release(&g).await.expect("release");
    assert!(
        s.provider.inspect(&name).await.expect("inspect").is_none(),
        "release: inspect still shows a holder"
    );
    let g2 = acquire(s.fresh.as_ref(), &req, "release: re-acquire at once").await;
    s.fresh.release(&g2).await.expect("release");
}

/// Guarantee 3b: an abandoned lease becomes acquirable after its duration, never before
/// duration − drift (measured from the grant's send instant, so never too early).
pub async fn abandoned_expires_after_duration(s: &Subject) {
    let name = s.name("expiry");
    let d = s.short_duration;
    let req = AcquireRequest::new(&name, d, Metadata::new());
    let g = acquire(s.provider.as_ref(), &req, "expiry").await;
    let floor = d.saturating_sub(leasing_abstractions::clock_drift(d));
    let g2 = wait_acquire(s.fresh.as_ref(), &req, d * 20).await;
    let waited = g.sent_at.elapsed();
    assert!(
        waited >= floor,
        "expiry: re-acquired after {waited:?}, before duration − drift = {floor:?}"
    );
    assert!(
        g2.fencing_token > g.fencing_token,
        "expiry: token did not increase"
    );
    s.fresh.release(&g2).await.expect("release");
}

/// Guarantee: renewing keeps a lease past its duration; renewing after a takeover is
/// `Lost`, not a transient error, and does not disturb the new holder.
pub async fn renew_extends_and_detects_takeover(s: &Subject) {
    let name = s.name("renew");
    let d = s.short_duration;
    let req = AcquireRequest::new(&name, d, Metadata::new());
    let g = acquire(s.provider.as_ref(), &req, "renew").await;
    // Renew every third of the duration for 1.5 durations: the lease must never lapse.
    let until = Instant::now() + d + d / 2;
    while Instant::now() < until {
        tokio::time::sleep(d / 3).await;
        s.provider.renew(&g).await.expect("renew of a held lease");
        assert!(
            s.fresh
                .try_acquire(&req)
                .await
                .expect("try_acquire")
                .is_none(),
            "renew: a renewed lease was granted to another"
        );
    }
    assert!(s.provider.break_lease(&name).await.expect("break"));
    let taker = acquire(s.fresh.as_ref(), &req, "renew: takeover").await;
    let err = s
        .provider
        .renew(&g)
        .await
        .expect_err("renew after takeover must fail");
    assert_eq!(
        err.kind(),
        ErrorKind::Lost,
        "renew after takeover: expected Lost, got {err}"
    );
    s.fresh
        .renew(&taker)
        .await
        .expect("the new holder still renews");
    s.fresh.release(&taker).await.expect("release");
    let err = s
        .provider
        .renew(&taker)
        .await
        .expect_err("renew after release must fail");
    assert_eq!(
        err.kind(),
        ErrorKind::Lost,
        "renew after release: expected Lost, got {err}"
    );
}

/// Guarantee: release is idempotent and harmless to a new holder.
pub async fn release_is_idempotent_and_harmless(s: &Subject) {
    let name = s.name("idem");
    let req = s.request(&name);
    let g = acquire(s.provider.as_ref(), &req, "idempotent release").await;
    s.provider.release(&g).await.expect("first release");
    s.provider
        .release(&g)
        .await
        .expect("second release of the same grant must be Ok");
    let holder = acquire(s.fresh.as_ref(), &req, "idempotent release: new holder").await;
    s.provider
        .release(&g)
        .await
        .expect("stale release must be Ok");
    let info = s
        .fresh
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("the new holder must survive a stale release");
    assert_eq!(
        info.fencing_token, holder.fencing_token,
        "a stale release disturbed the new holder"
    );
    s.fresh
        .renew(&holder)
        .await
        .expect("the new holder still renews");
    s.fresh.release(&holder).await.expect("release");
}

/// Guarantee: metadata round-trips exactly through `inspect`, non-ASCII included, with
/// acquisition and expiry times.
pub async fn metadata_round_trip(s: &Subject) {
    let name = s.name("meta");
    let mut md = Metadata::new();
    md.insert("region".into(), "westeurope".into());
    md.insert("owner_Name".into(), "Zoë Ångström — 日本語 ✓ 🚀".into());
    md.insert("empty".into(), String::new());
    md.insert("spaces".into(), "  leading and trailing  ".into());
    md.insert("symbols".into(), "a=b&c;d,e%20\"quoted\"\n\ttab".into());
    let req = AcquireRequest::new(&name, s.long(), md.clone());
    let before = std::time::SystemTime::now();
    let g = acquire(s.provider.as_ref(), &req, "metadata").await;
    assert_eq!(
        g.metadata, md,
        "metadata: the grant does not carry the metadata"
    );
    let info = s
        .fresh
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("held");
    assert_eq!(
        info.metadata, md,
        "metadata did not round-trip through inspect"
    );
    assert_eq!(info.fencing_token, g.fencing_token);
    assert_eq!(info.name, name);
    let skew = Duration::from_secs(5);
    assert!(
        info.acquired_at + skew >= before,
        "inspect: acquired_at is in the past beyond clock skew"
    );
    match info.expires_at {
        LeaseExpiry::At(expires) => assert!(
            expires > info.acquired_at,
            "inspect: expires_at is not after acquired_at"
        ),
        LeaseExpiry::Unknown => {}
        LeaseExpiry::Never => panic!("inspect: a finite lease is shown as infinite"),
    }
    s.provider.release(&g).await.expect("release");
}

/// Guarantee: inspect shows the holder or `None`; break frees a held name and reports
/// whether there was anything to break.
pub async fn inspect_and_break(s: &Subject) {
    let name = s.name("break");
    assert!(
        s.provider.inspect(&name).await.expect("inspect").is_none(),
        "inspect of a free name must be None"
    );
    assert!(
        !s.provider.break_lease(&name).await.expect("break"),
        "break of a free name must be false"
    );
    let req = s.request(&name);
    let g = acquire(s.provider.as_ref(), &req, "break").await;
    let info = s
        .fresh
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("held");
    assert_eq!(info.fencing_token, g.fencing_token);
    if let Some(id) = &info.lease_id {
        assert_eq!(id, &g.lease_id, "inspect shows another lease id");
    }
    assert!(
        s.fresh.break_lease(&name).await.expect("break"),
        "break of a held name must be true"
    );
    assert!(
        s.provider.inspect(&name).await.expect("inspect").is_none(),
        "a broken lease is still shown"
    );
    let err = s.provider.renew(&g).await.expect_err("renew after break");
    assert_eq!(err.kind(), ErrorKind::Lost);
    let g2 = acquire(s.fresh.as_ref(), &req, "break: re-acquire").await;
    s.fresh.release(&g2).await.expect("release");
}

/// Guarantee 5: bad input is `InvalidArgument` naming the rule, raised before any write.
///
/// The core validates every request before it calls a provider, so this goes through a
/// [`LeaseManager`] over the provider: what it checks is that the provider's declared
/// capabilities (bounds, granularity) are what the backend needs, and that nothing is
/// written for a rejected request.
pub async fn rejects_bad_input(s: &Subject) {
    let caps = s.provider.capabilities();
    let manager = LeaseManager::new(
        Arc::clone(&s.provider),
        LeaseOptions::default().with_default_lease_duration(s.long()),
    )
    .expect("a manager with default options");
    let good = s.name("bad");
    let mut bad_key = Metadata::new();
    bad_key.insert("not a key".into(), "v".into());
    let mut big = Metadata::new();
    big.insert(
        "k".into(),
        "v".repeat(leasing_abstractions::MAX_METADATA_VALUE_BYTES + 1),
    );
    let opts = AcquireOptions::new;
    let mut cases = vec![
        ("empty name", String::new(), opts(), "name"),
        ("long name", "n".repeat(257), opts(), "name"),
        (
            "ill-formed name",
            format!("{good} with spaces"),
            opts(),
            "name",
        ),
        ("non-ASCII name", format!("{good}-é"), opts(), "name"),
        (
            "bad metadata key",
            good.clone(),
            opts().metadata(bad_key),
            "metadata",
        ),
        (
            "oversized metadata",
            good.clone(),
            opts().metadata(big),
            "metadata",
        ),
        (
            "zero duration",
            good.clone(),
            opts().duration(Duration::ZERO),
            "lease_duration",
        ),
        (
            "over-long duration",
            good.clone(),
            opts().duration(caps.max_duration + Duration::from_secs(1)),
            "lease_duration",
        ),
        (
            "too-short duration",
            good.clone(),
            opts().duration(
                caps.min_duration
                    .saturating_sub(caps.duration_granularity.max(Duration::from_millis(1))),
            ),
            "lease_duration",
        ),
    ];
    if !caps.infinite_leases {
        cases.push((
            "infinite duration",
            good.clone(),
            opts().duration(LeaseDuration::Infinite),
            "lease_duration",
        ));
    }
    if caps.duration_granularity > Duration::from_millis(1) {
        cases.push((
            "duration between two granules",
            good.clone(),
            opts().duration(between_granules(
                caps.min_duration,
                caps.duration_granularity,
            )),
            "lease_duration",
        ));
    }
    for (what, name, options, field) in cases {
        let err: LeaseError = match manager.try_acquire_with(&name, options).await {
            Err(e) => e,
            Ok(g) => panic!("bad input ({what}) was accepted: {g:?}"),
        };
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidArgument,
            "bad input ({what}): wrong kind: {err}"
        );
        assert_eq!(
            err.field(),
            Some(field),
            "bad input ({what}): error names {:?}, not {field}: {err}",
            err.field()
        );
    }
    for bad_name in ["", "has space"] {
        let e = manager
            .inspect(bad_name)
            .await
            .expect_err("inspect of a bad name");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = manager
            .break_lease(bad_name)
            .await
            .expect_err("break of a bad name");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
    assert!(
        s.provider.inspect(&good).await.expect("inspect").is_none(),
        "bad input wrote something for {good:?}"
    );
}

/// Half a granule past the first whole granule at or above `min`: a duration no multiple
/// of `granule` (`min + granule / 2` is one when `min` is an odd number of half granules).
fn between_granules(min: Duration, granule: Duration) -> Duration {
    let g = granule.as_nanos();
    let whole = min.as_nanos().div_ceil(g) * g + g / 2;
    Duration::from_nanos(u64::try_from(whole).unwrap_or(u64::MAX))
}

/// Listing (for providers that declare [`listing`](leasing_abstractions::ProviderCapabilities::listing)):
/// every held lease under a prefix is listed once, under its own name, across pages;
/// released ones are not; other prefixes are not.
pub async fn listing(s: &Subject) {
    if !s.provider.capabilities().listing {
        return;
    }
    let prefix = format!("{}-list-{}/", s.run_id, uuid::Uuid::new_v4().simple());
    let names: Vec<String> = ["a", "b/c", "d:e", "f%g", "h"]
        .iter()
        .map(|n| format!("{prefix}{n}"))
        .collect();
    let mut grants = Vec::new();
    for n in &names {
        grants.push(acquire(s.provider.as_ref(), &s.request(n), "listing").await);
    }
    let other = acquire(
        s.provider.as_ref(),
        &s.request(&format!("{}-other", prefix.trim_end_matches('/'))),
        "listing: other prefix",
    )
    .await;
    let released = grants.pop().expect("five grants");
    s.provider.release(&released).await.expect("release");
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let page = s
            .fresh
            .list(&ListRequest::new(&prefix).with_limit(2).with_cursor(cursor))
            .await
            .expect("list");
        assert!(
            !page.leases.is_empty() || page.cursor.is_none(),
            "listing: an empty page with a cursor"
        );
        let on_page = page.leases.len();
        for info in page.leases {
            let g = grants
                .iter()
                .find(|g| g.name == info.name)
                .unwrap_or_else(|| {
                    panic!(
                        "listing: {:?} is not a held lease under the prefix",
                        info.name
                    )
                });
            assert_eq!(info.fencing_token, g.fencing_token, "listing: wrong token");
            seen.push(info.name);
        }
        assert!(
            on_page <= 2,
            "listing: {on_page} leases on a page limited to 2"
        );
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    seen.sort();
    let mut want: Vec<String> = grants.iter().map(|g| g.name.clone()).collect();
    want.sort();
    assert_eq!(
        seen, want,
        "listing: not every held lease listed exactly once"
    );
    for g in grants.iter().chain([&other]) {
        s.provider.release(g).await.expect("release");
    }
}

/// Guarantee 6: no configured secret appears in `Debug` of the provider.
pub async fn no_secret_in_debug(s: &Subject) {
    for p in [&s.provider, &s.fresh] {
        let dbg = format!("{p:?} {p:#?}");
        for secret in s.secrets.iter().filter(|x| !x.is_empty()) {
            assert!(
                !dbg.contains(secret.as_str()),
                "a secret appears in the provider's Debug output"
            );
        }
    }
}

/// Runs every check above, one after another.
pub async fn run_all(s: &Subject) {
    rejects_bad_input(s).await;
    no_secret_in_debug(s).await;
    mutual_exclusion(s).await;
    release_frees_at_once(s).await;
    release_is_idempotent_and_harmless(s).await;
    metadata_round_trip(s).await;
    inspect_and_break(s).await;
    listing(s).await;
    fencing_tokens_increase(s).await;
    abandoned_expires_after_duration(s).await;
    renew_extends_and_detects_takeover(s).await;
}
