//! The error contract: the same situation is the same [`ErrorKind`], with the same
//! retryability, on every backend and every operation.
//!
//! | situation | kind | retryable |
//! |---|---|---|
//! | nothing answers at the endpoint (refused, closed, silent) | `ProviderUnavailable` | yes |
//! | the backend refuses the credentials | `Unauthorized` | no |
//! | the backend answers something the provider has no rule for | `Unexpected` | no |
//! | the name is held by someone else (`try_acquire` answers `Ok(None)`; a bounded `acquire` times out with this as its source) | `Conflict` | yes |
//! | the grant is gone (expired and taken, broken, the backend forgot it) on renew | `Lost` | no |
//!
//! A backend test provokes each situation with a provider built for it and hands the
//! build's result to [`check_situation`]: an error at build must be the situation's kind;
//! a provider that builds must fail every operation that way. [`check_conflict_and_lost`]
//! checks the last two rows on a healthy provider.

use leasing_abstractions::{
    AcquireRequest, ErrorKind, LeaseError, LeaseGrant, LeaseManager, LeaseOptions, LeaseProvider,
    ListRequest, Metadata,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// A situation of the contract's table that a backend test can provoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Situation {
    /// Nothing answers at the endpoint.
    Unavailable,
    /// The backend refuses the credentials.
    Unauthorized,
    /// The backend answers something the provider has no rule for.
    UnexpectedReply,
}

impl Situation {
    /// The kind and retryability every backend reports for it.
    pub fn expected(self) -> (ErrorKind, bool) {
        match self {
            Situation::Unavailable => (ErrorKind::ProviderUnavailable, true),
            Situation::Unauthorized => (ErrorKind::Unauthorized, false),
            Situation::UnexpectedReply => (ErrorKind::Unexpected, false),
        }
    }
}

/// Asserts that `error`, met in `situation` during `what`, is the situation's kind and
/// retryability.
///
/// # Panics
/// When it is not, naming the situation, the operation and the error.
pub fn assert_reported(situation: Situation, what: &str, error: &LeaseError) {
    let (kind, retryable) = situation.expected();
    assert_eq!(
        error.kind(),
        kind,
        "{situation:?} during {what} must be {kind:?}: {error}"
    );
    assert_eq!(
        error.is_retryable(),
        retryable,
        "{situation:?} during {what} must {}be retryable: {error}",
        if retryable { "" } else { "not " }
    );
}

/// Checks a provider built for `situation`: a failed build must be reported as the
/// situation says; a provider that built must fail acquire, renew, release, inspect,
/// break and (when it lists) list that way. Returns where the situation was met: `"build"`
/// or `"every operation"`.
///
/// # Panics
/// When an error is of another kind or retryability, or an operation succeeds.
pub async fn check_situation<P: LeaseProvider>(
    situation: Situation,
    built: leasing_abstractions::Result<P>,
) -> &'static str {
    let provider = match built {
        Err(e) => {
            assert_reported(situation, "build", &e);
            return "build";
        }
        Ok(p) => p,
    };
    let name = format!("errors-{}", uuid::Uuid::new_v4().simple());
    let request = AcquireRequest::new(&name, Duration::from_secs(30), Metadata::new());
    let e = provider
        .try_acquire(&request)
        .await
        .expect_err("try_acquire must fail");
    assert_reported(situation, "try_acquire", &e);
    let grant = LeaseGrant::new(
        &request,
        "not-a-lease",
        1,
        SystemTime::now(),
        Instant::now(),
    );
    let e = provider.renew(&grant).await.expect_err("renew must fail");
    assert_reported(situation, "renew", &e);
    let e = provider
        .release(&grant)
        .await
        .expect_err("release must fail");
    assert_reported(situation, "release", &e);
    let e = provider
        .inspect(&name)
        .await
        .expect_err("inspect must fail");
    assert_reported(situation, "inspect", &e);
    let e = provider
        .break_lease(&name)
        .await
        .expect_err("break_lease must fail");
    assert_reported(situation, "break_lease", &e);
    if provider.capabilities().listing {
        let e = provider
            .list(&ListRequest::new(""))
            .await
            .expect_err("list must fail");
        assert_reported(situation, "list", &e);
    }
    "every operation"
}

/// The last two rows of the table on a healthy provider: a held name is `Ok(None)` to
/// `try_acquire` and a `Timeout` whose source is a retryable `Conflict` to a bounded
/// acquire; a broken lease renews as a `Lost` that is not retryable.
///
/// # Panics
/// When either is reported otherwise.
pub async fn check_conflict_and_lost(provider: Arc<dyn LeaseProvider>) {
    let name = format!("errors-{}", uuid::Uuid::new_v4().simple());
    let request = AcquireRequest::new(&name, Duration::from_secs(30), Metadata::new());
    let grant = provider
        .try_acquire(&request)
        .await
        .expect("acquire")
        .expect("a fresh name is free");
    assert!(
        provider.try_acquire(&request).await.expect("try").is_none(),
        "a held name is Ok(None) to try_acquire"
    );
    let manager = LeaseManager::new(
        Arc::clone(&provider),
        LeaseOptions::default()
            .with_acquire_timeout(Duration::from_millis(300))
            .with_default_lease_duration(Duration::from_secs(30)),
    )
    .expect("manager");
    let e = manager.acquire(&name).await.expect_err("held");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let cause = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<LeaseError>())
        .unwrap_or_else(|| panic!("the timeout's source is what the attempts met: {e:?}"));
    assert_eq!(cause.kind(), ErrorKind::Conflict, "{cause}");
    assert!(cause.is_retryable(), "a Conflict is retryable: {cause}");
    assert!(provider.break_lease(&name).await.expect("break"), "broken");
    let e = provider
        .renew(&grant)
        .await
        .expect_err("a broken lease does not renew");
    assert_eq!(e.kind(), ErrorKind::Lost, "{e}");
    assert!(!e.is_retryable(), "Lost is final: {e}");
}
