//! The conformance checks against in-memory providers with one quirk each: a provider
//! that bends the contract only where it allows (coarse durations, no listing, an opaque
//! `inspect`, a lazy listing cursor) passes; one that breaks a rule fails the check of
//! that rule, with a message naming it.

use leasing_abstractions::provider::ProviderLayer;
use leasing_abstractions::BoxFuture;
use leasing_abstractions::{
    AcquireRequest, InMemoryLeaseProvider, LeaseError, LeaseExpiry, LeaseGrant, LeaseInfo,
    LeasePage, LeaseProvider, ListRequest, ProviderCapabilities, Result,
};
use leasing_testkit::conformance::{self, Subject};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quirk {
    /// Durations in whole granules of 100 ms from 600 ms; no infinite leases, no listing.
    Coarse,
    /// Granules of 100 ms from 150 ms: the minimum is no whole granule.
    OddMinimum,
    /// `inspect` shows no lease id and an unknown expiry (as Azure Blob does).
    Opaque,
    /// A cursor after every full page, so that a listing may end on an empty page.
    LazyCursor,
    /// Broken: an empty page that still has a cursor.
    EmptyPageWithCursor,
    /// Broken: lists a name nobody acquired.
    ListsAStranger,
    /// Broken: ignores the page limit (lists every lease on the first page).
    IgnoresTheLimit,
    /// Broken: `inspect` shows a finite lease as infinite.
    ShowsFiniteAsInfinite,
    /// Broken: never grants anything.
    NeverGrants,
    /// Broken: every acquisition fails.
    AcquireFails,
    /// Broken: every other acquisition fails instead of losing.
    FlakyAcquire,
    /// Broken: declares wider bounds once the narrow ones were read, and grants what
    /// reaches it.
    Widens,
    /// Broken: as `Widens`, but rejects what reaches it, naming the wrong field.
    WidensAndBlamesTheName,
}

#[derive(Debug)]
struct Quirky {
    inner: InMemoryLeaseProvider,
    quirk: Quirk,
    /// Acquisition attempts so far.
    attempts: AtomicU64,
    /// How many more `capabilities` calls see the narrow bounds (`Widens…` only).
    narrow_calls: AtomicU64,
    /// Shows in `Debug`.
    password: String,
}

impl Quirky {
    fn new(quirk: Quirk) -> Arc<Self> {
        Arc::new(Self {
            inner: InMemoryLeaseProvider::new(),
            quirk,
            attempts: AtomicU64::new(0),
            narrow_calls: AtomicU64::new(u64::MAX),
            password: "hunter2".into(),
        })
    }
}

fn narrow() -> ProviderCapabilities {
    ProviderCapabilities::new(Duration::from_millis(10), Duration::from_secs(60))
}

impl ProviderLayer for Quirky {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.inner
    }

    fn capabilities(&self) -> ProviderCapabilities {
        let granules = Duration::from_millis(100);
        match self.quirk {
            Quirk::Coarse => {
                ProviderCapabilities::new(Duration::from_millis(600), Duration::from_secs(60))
                    .with_duration_granularity(granules)
            }
            Quirk::OddMinimum => {
                ProviderCapabilities::new(Duration::from_millis(150), Duration::from_secs(60))
                    .with_duration_granularity(granules)
            }
            Quirk::Widens | Quirk::WidensAndBlamesTheName => {
                let left = self.narrow_calls.load(Ordering::SeqCst);
                self.narrow_calls
                    .store(left.saturating_sub(1), Ordering::SeqCst);
                if left > 0 {
                    narrow()
                } else {
                    ProviderCapabilities::new(Duration::from_millis(10), Duration::from_secs(3600))
                }
            }
            _ => self.inner.capabilities(),
        }
    }

    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        match self.quirk {
            Quirk::NeverGrants => Box::pin(async { Ok(None) }),
            Quirk::AcquireFails => Box::pin(async { Err(LeaseError::unavailable("down")) }),
            Quirk::FlakyAcquire if attempt % 2 == 1 => {
                Box::pin(async { Err(LeaseError::unavailable("flaky")) })
            }
            Quirk::WidensAndBlamesTheName => Box::pin(async {
                Err(LeaseError::invalid_argument(
                    "name",
                    "blamed for the duration",
                ))
            }),
            _ => self.inner.try_acquire(request),
        }
    }

    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move {
            let info = self.inner.inspect(name).await?;
            Ok(info.map(|mut info| {
                match self.quirk {
                    Quirk::Opaque => {
                        info.lease_id = None;
                        info.expires_at = LeaseExpiry::Unknown;
                    }
                    Quirk::ShowsFiniteAsInfinite => info.expires_at = LeaseExpiry::Never,
                    _ => {}
                }
                info
            }))
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(async move {
            if self.quirk == Quirk::IgnoresTheLimit {
                let all = request.clone().with_limit(usize::MAX);
                return self.inner.list(&all).await;
            }
            let mut page = self.inner.list(request).await?;
            match self.quirk {
                Quirk::LazyCursor
                    if page.cursor.is_none() && page.leases.len() == request.limit =>
                {
                    page.cursor = page.leases.last().map(|l| l.name.clone());
                }
                Quirk::EmptyPageWithCursor => {
                    page.leases.clear();
                    page.cursor = Some("more".into());
                }
                Quirk::ListsAStranger => {
                    let mut stranger = page.leases[0].clone();
                    stranger.name = format!("{}-stranger", request.prefix);
                    page.leases.push(stranger);
                }
                _ => {}
            }
            Ok(page)
        })
    }
}

leasing_abstractions::provider_layer!(Quirky);

/// A subject over `p`, with `p` as the fresh instance too (they share one store).
fn subject(p: &Arc<Quirky>) -> Subject {
    let provider: Arc<dyn LeaseProvider> = p.clone();
    Subject::new(Arc::clone(&provider), provider)
}

/// The panic message of `check`, which must panic.
async fn failure(check: impl Future<Output = ()> + Send + 'static) -> String {
    let panic = tokio::spawn(check)
        .await
        .expect_err("the check passed a provider that breaks its rule")
        .into_panic();
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&'static str>()
            .map(|s| s.to_string())
            .expect("a panic with a message"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coarse_durations_without_listing_pass_the_whole_suite() {
    let s = subject(&Quirky::new(Quirk::Coarse));
    assert_eq!(s.short_duration, Duration::from_secs(1), "at least 1 s");
    // Infinite and between-granule durations are among the bad inputs checked.
    let s = s.with_short_duration(Duration::from_millis(600));
    conformance::run_all(&s).await;
}

#[tokio::test]
async fn a_minimum_of_no_whole_granule_passes_the_bad_input_check() {
    // Half a granule past the 150 ms minimum is 200 ms, a whole granule; the check must
    // probe 250 ms instead.
    conformance::rejects_bad_input(&subject(&Quirky::new(Quirk::OddMinimum))).await;
}

#[tokio::test]
async fn an_opaque_inspect_passes() {
    let s = subject(&Quirky::new(Quirk::Opaque));
    conformance::inspect_and_break(&s).await;
    conformance::metadata_round_trip(&s).await;
}

#[tokio::test]
async fn a_listing_that_ends_on_an_empty_page_passes() {
    let p = Quirky::new(Quirk::LazyCursor);
    // The quirk: a full last page has a cursor, to an empty page.
    let req = AcquireRequest::new("lazy/a", Duration::from_secs(30), Default::default());
    let g = p.try_acquire(&req).await.unwrap().unwrap();
    let first = p
        .list(&ListRequest::new("lazy/").with_limit(1))
        .await
        .unwrap();
    assert_eq!(
        (first.leases.len(), first.cursor.as_deref()),
        (1, Some("lazy/a"))
    );
    let next = ListRequest::new("lazy/")
        .with_limit(1)
        .with_cursor(first.cursor);
    let last = p.list(&next).await.unwrap();
    assert_eq!((last.leases.len(), last.cursor), (0, None));
    p.release(&g).await.unwrap();
    // The check pages two at a time through four leases: it meets that empty page.
    let s = subject(&p);
    conformance::listing(&s).await;
    let left = p.list(&ListRequest::new(&s.run_id)).await.unwrap();
    assert!(left.leases.is_empty(), "the check left leases held");
}

#[tokio::test]
async fn an_empty_page_with_a_cursor_fails_the_listing_check() {
    let s = subject(&Quirky::new(Quirk::EmptyPageWithCursor));
    let msg = failure(async move { conformance::listing(&s).await }).await;
    assert!(
        msg.contains("listing: an empty page with a cursor"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_listed_stranger_fails_the_listing_check() {
    let s = subject(&Quirky::new(Quirk::ListsAStranger));
    let msg = failure(async move { conformance::listing(&s).await }).await;
    assert!(msg.contains("-stranger\" is not a held lease"), "{msg}");
}

#[tokio::test]
async fn a_page_over_its_limit_fails_the_listing_check() {
    let s = subject(&Quirky::new(Quirk::IgnoresTheLimit));
    let msg = failure(async move { conformance::listing(&s).await }).await;
    assert!(msg.contains("leases on a page limited to 2"), "{msg}");
}

#[tokio::test]
async fn a_finite_lease_shown_as_infinite_fails_the_metadata_check() {
    let s = subject(&Quirky::new(Quirk::ShowsFiniteAsInfinite));
    let msg = failure(async move { conformance::metadata_round_trip(&s).await }).await;
    assert!(msg.contains("a finite lease is shown as infinite"), "{msg}");
}

#[tokio::test]
async fn a_free_name_not_granted_fails() {
    let s = subject(&Quirky::new(Quirk::NeverGrants));
    let msg = failure(async move { conformance::release_frees_at_once(&s).await }).await;
    assert!(msg.starts_with("release: \"conf-"), "{msg}");
    assert!(msg.ends_with("should be free but is held"), "{msg}");
}

#[tokio::test]
async fn a_failed_acquisition_fails() {
    let s = subject(&Quirky::new(Quirk::AcquireFails));
    let msg = failure(async move { conformance::fencing_tokens_increase(&s).await }).await;
    assert!(msg.starts_with("fencing: acquiring \"conf-"), "{msg}");
    assert!(msg.contains("failed: "), "{msg}");
    assert!(msg.contains("down"), "{msg}");
}

#[tokio::test]
async fn a_contender_that_fails_instead_of_losing_fails_mutual_exclusion() {
    let s = subject(&Quirky::new(Quirk::FlakyAcquire));
    let msg = failure(async move { conformance::mutual_exclusion(&s).await }).await;
    assert!(
        msg.contains("mutual exclusion: a contender failed instead of losing"),
        "{msg}"
    );
    assert!(msg.contains("flaky"), "{msg}");
}

#[tokio::test]
async fn bad_input_that_reaches_the_provider_and_is_granted_fails() {
    let p = Quirky::new(Quirk::Widens);
    let s = subject(&p);
    // Only the check's own look at the capabilities sees the narrow bounds.
    p.narrow_calls.store(1, Ordering::SeqCst);
    let msg = failure(async move { conformance::rejects_bad_input(&s).await }).await;
    assert!(
        msg.starts_with("bad input (over-long duration) was accepted"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_input_rejected_under_another_field_fails() {
    let p = Quirky::new(Quirk::WidensAndBlamesTheName);
    let s = subject(&p);
    p.narrow_calls.store(1, Ordering::SeqCst);
    let msg = failure(async move { conformance::rejects_bad_input(&s).await }).await;
    assert!(
        msg.contains(
            "bad input (over-long duration): error names Some(\"name\"), not lease_duration"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn secrets_are_looked_for_in_debug() {
    // Configured secrets the provider's Debug does not show pass; empty ones are ignored.
    let p = Quirky::new(Quirk::Opaque);
    let s = subject(&p).with_secrets(["s3cret".to_string(), String::new()]);
    assert_eq!(s.secrets, ["s3cret", ""]);
    conformance::no_secret_in_debug(&s).await;
    // The password shows in Debug.
    assert!(format!("{p:?}").contains(&p.password));
    let s = subject(&p).with_secrets([p.password.clone()]);
    let msg = failure(async move { conformance::no_secret_in_debug(&s).await }).await;
    assert_eq!(msg, "a secret appears in the provider's Debug output");
}
