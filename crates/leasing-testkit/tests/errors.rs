#![allow(clippy::unwrap_used)]
//! The error-contract checks on in-memory providers that fail the way each situation
//! says, and on ones that do not (the checks must catch them).

use leasing_abstractions::provider::ProviderLayer;
use leasing_abstractions::{
    AcquireRequest, BoxFuture, ErrorKind, InMemoryLeaseProvider, LeaseError, LeaseGrant, LeaseInfo,
    LeasePage, LeaseProvider, ListRequest, ProviderCapabilities, Result,
};
use leasing_testkit::errors::{
    assert_reported, check_conflict_and_lost, check_situation, Situation,
};
use std::sync::Arc;

/// Fails every operation with `error`; `listing` says whether it lists.
#[derive(Debug)]
struct Failing {
    inner: InMemoryLeaseProvider,
    error: LeaseError,
    listing: bool,
}

impl ProviderLayer for Failing {
    fn inner(&self) -> &dyn LeaseProvider {
        &self.inner
    }
    fn capabilities(&self) -> ProviderCapabilities {
        self.inner.capabilities().with_listing(self.listing)
    }
    fn try_acquire<'a>(
        &'a self,
        _: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
    fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
    fn release<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
    fn inspect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
    fn break_lease<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
    fn list<'a>(&'a self, _: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
}
leasing_abstractions::provider_layer!(Failing);

fn failing(kind: ErrorKind, listing: bool) -> Failing {
    Failing {
        inner: InMemoryLeaseProvider::new(),
        error: LeaseError::new(kind, "as scripted"),
        listing,
    }
}

#[tokio::test]
async fn providers_that_fail_as_the_table_says_pass() {
    for (situation, kind) in [
        (Situation::Unavailable, ErrorKind::ProviderUnavailable),
        (Situation::Unauthorized, ErrorKind::Unauthorized),
        (Situation::UnexpectedReply, ErrorKind::Unexpected),
    ] {
        for listing in [true, false] {
            let at = check_situation(situation, Ok(failing(kind, listing))).await;
            assert_eq!(at, "every operation");
        }
        let at =
            check_situation::<Failing>(situation, Err(LeaseError::new(kind, "at build"))).await;
        assert_eq!(at, "build");
    }
}

#[tokio::test]
#[should_panic(expected = "UnexpectedReply during try_acquire must be Unexpected")]
async fn a_provider_reporting_another_kind_is_caught() {
    check_situation(
        Situation::UnexpectedReply,
        Ok(failing(ErrorKind::ProviderUnavailable, true)),
    )
    .await;
}

#[tokio::test]
#[should_panic(expected = "Unavailable during build must be ProviderUnavailable")]
async fn a_build_error_of_another_kind_is_caught() {
    check_situation::<Failing>(
        Situation::Unavailable,
        Err(LeaseError::new(ErrorKind::Configuration, "no")),
    )
    .await;
}

#[test]
#[should_panic(expected = "must not be retryable")]
fn a_retryable_unexpected_error_is_caught() {
    let e = LeaseError::new(ErrorKind::Unexpected, "x").with_temporary(true);
    assert_reported(Situation::UnexpectedReply, "renew", &e);
}

#[tokio::test]
#[should_panic(expected = "try_acquire must fail")]
async fn a_provider_that_succeeds_in_the_situation_is_caught() {
    check_situation(Situation::Unavailable, Ok(InMemoryLeaseProvider::new())).await;
}

#[tokio::test]
async fn the_in_memory_provider_reports_conflict_and_lost_as_the_table_says() {
    check_conflict_and_lost(Arc::new(InMemoryLeaseProvider::new())).await;
}
