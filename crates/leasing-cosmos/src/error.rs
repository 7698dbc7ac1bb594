//! Cosmos DB status codes → [`LeaseError`] kinds, in one function.

use azure_data_cosmos::CosmosError;
use leasing_abstractions::{ErrorKind, LeaseError};
use std::time::Duration;

/// What the provider needs to know about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 404: the document (or database/container) does not exist.
    NotFound,
    /// 409: a document with this id already exists.
    Conflict,
    /// 412: the ETag no longer matches (someone else wrote the document).
    PreconditionFailed,
    /// Anything else: already a [`LeaseError`].
    Other,
}

/// A classified error: what the provider acts on, and what the caller sees.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub(crate) failure: Failure,
    pub(crate) error: LeaseError,
}

/// Status code, sub-status and `x-ms-retry-after-ms` of a Cosmos error.
pub(crate) fn parts(e: &CosmosError) -> (u16, Option<u16>, Option<Duration>) {
    let status = e.status();
    let code = u16::from(status.status_code());
    let sub = status.sub_status().map(|s| s.value());
    let retry_after = e
        .response()
        .and_then(|r| r.headers().retry_after_ms)
        .map(Duration::from_millis);
    (code, sub, retry_after)
}

/// Maps a Cosmos DB failure to a lease error: the ONE place status codes become kinds.
///
/// - 429 (throttled, with its retry-after), 408, 449 (retry with), 503, 500, 410 and
///   transport failures (no status from the wire): `ProviderUnavailable` (retryable);
/// - 412 (ETag mismatch): `Lost` (the caller turns it into "held by another" when
///   acquiring); 409: `Conflict`; 404: `Lost` for renewals (the document is gone);
/// - 401/403: `Unauthorized`; 400/413: `InvalidArgument`; anything else: `Unexpected`
///   (not retryable), on every operation.
///
/// The message carries the status, sub-status and what was being done, never a key or
/// token (the SDK's errors carry neither, and we do not format its request).
pub(crate) fn map_status(
    code: u16,
    sub: Option<u16>,
    retry_after: Option<Duration>,
    from_wire: bool,
    what: &str,
) -> Mapped {
    let sub_txt = sub.map(|s| format!("/{s}")).unwrap_or_default();
    let (failure, kind, text) = match code {
        404 => (Failure::NotFound, ErrorKind::Lost, "not found"),
        409 => (
            Failure::Conflict,
            ErrorKind::Conflict,
            "conflict: the document exists",
        ),
        412 => (
            Failure::PreconditionFailed,
            ErrorKind::Lost,
            "precondition failed: the lease document changed (another holder or a break)",
        ),
        401 => (
            Failure::Other,
            ErrorKind::Unauthorized,
            "unauthorized: the key or token was rejected",
        ),
        403 => (
            Failure::Other,
            ErrorKind::Unauthorized,
            "forbidden: the identity lacks permission on the account, database or container",
        ),
        400 | 413 => (
            Failure::Other,
            ErrorKind::InvalidArgument,
            "the service rejected the request as invalid",
        ),
        429 => (
            Failure::Other,
            ErrorKind::ProviderUnavailable,
            "throttled (request rate too large)",
        ),
        408 => (
            Failure::Other,
            ErrorKind::ProviderUnavailable,
            "request timed out",
        ),
        449 => (
            Failure::Other,
            ErrorKind::ProviderUnavailable,
            "retry with: a concurrent update conflicted on the service",
        ),
        500 | 502 | 503 | 504 | 410 => (
            Failure::Other,
            ErrorKind::ProviderUnavailable,
            "the service is unavailable",
        ),
        _ if !from_wire || code == 0 => (
            Failure::Other,
            ErrorKind::ProviderUnavailable,
            "the service could not be reached",
        ),
        _ => (
            Failure::Other,
            ErrorKind::Unexpected,
            "unexpected answer from the service",
        ),
    };
    let mut message = format!("cosmos db: {what}: {text} (status {code}{sub_txt})");
    if let Some(d) = retry_after {
        message.push_str(&format!("; retry after {} ms", d.as_millis()));
    }
    Mapped {
        failure,
        error: LeaseError::new(kind, message),
    }
}

/// [`map_status`] of a [`CosmosError`], keeping it as the source. A failure that never
/// reached the service (nothing listening, DNS, TLS) carries a status the SDK made up
/// (503 with a client sub-status such as 20010): it is reported as what it is, the
/// transport's reason, without that status.
pub(crate) fn map(e: CosmosError, what: &str) -> Mapped {
    let (code, sub, retry_after) = parts(&e);
    // Client-generated sub-statuses are 20000 and up.
    let transport = code == 0 || code == 503 || sub.is_some_and(|s| s >= 20_000);
    if !e.is_from_wire() && transport {
        let reason = root_cause(&e);
        return Mapped {
            failure: Failure::Other,
            error: LeaseError::unavailable(format!(
                "cosmos db: {what}: the service could not be reached: {reason}"
            ))
            .with_source(e),
        };
    }
    let mut m = map_status(code, sub, retry_after, e.is_from_wire(), what);
    m.error = m.error.with_source(e);
    m
}

/// The innermost cause's text (the transport's own words: "Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    if text.is_empty() {
        e.to_string()
    } else {
        text
    }
}

/// A call that did not answer within its deadline.
pub(crate) fn deadline(what: &str, limit: Duration) -> LeaseError {
    LeaseError::unavailable(format!(
        "cosmos db: {what}: no answer within the call timeout ({limit:?})"
    ))
}

/// Runs one SDK call, under `limit` if one is given (the fenced container's calls, made by
/// users outside the core; a provider call has none of its own: the core's deadline ends
/// it): its answer, or its error through `map` (after passing the request charge of the
/// failed call to `charge`), or the deadline error.
pub(crate) async fn bounded<T>(
    limit: Option<Duration>,
    what: &str,
    f: impl std::future::Future<Output = azure_data_cosmos::Result<T>>,
    charge: impl FnOnce(f64),
    map: impl FnOnce(CosmosError) -> Mapped,
) -> std::result::Result<T, Mapped> {
    let answer = match limit {
        Some(limit) => tokio::time::timeout(limit, f).await.map_err(|_| limit),
        None => Ok(f.await),
    };
    match answer {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            charge(
                e.response()
                    .and_then(|r| r.headers().request_charge)
                    .map_or(0.0, f64::from),
            );
            Err(map(e))
        }
        Err(limit) => Err(Mapped {
            failure: Failure::Other,
            error: deadline(what, limit),
        }),
    }
}

/// A document the provider cannot read back (written by something else).
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> LeaseError {
    LeaseError::new(
        ErrorKind::Unexpected,
        format!("cosmos db: {what}: the lease document is not one this provider wrote: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_data_cosmos::CosmosStatus;

    fn kind(code: u16) -> (Failure, ErrorKind, bool) {
        let m = map_status(code, None, None, true, "acquire");
        (m.failure, m.error.kind(), m.error.is_retryable())
    }

    #[test]
    fn every_documented_status_maps_to_its_kind() {
        assert_eq!(kind(404), (Failure::NotFound, ErrorKind::Lost, false));
        assert_eq!(kind(409).0, Failure::Conflict);
        assert_eq!(kind(412).0, Failure::PreconditionFailed);
        assert_eq!(kind(412).1, ErrorKind::Lost);
        for c in [401, 403] {
            assert_eq!(kind(c).1, ErrorKind::Unauthorized, "{c}");
            assert!(!kind(c).2);
        }
        for c in [400, 413] {
            assert_eq!(kind(c).1, ErrorKind::InvalidArgument, "{c}");
        }
        for c in [429, 408, 449, 500, 502, 503, 504, 410] {
            assert_eq!(
                kind(c),
                (Failure::Other, ErrorKind::ProviderUnavailable, true),
                "{c}"
            );
        }
        assert_eq!(kind(418).1, ErrorKind::Unexpected);
        let m = map_status(418, None, None, false, "renew");
        assert_eq!(m.error.kind(), ErrorKind::ProviderUnavailable);
        let m = map_status(0, None, None, true, "renew");
        assert_eq!(m.error.kind(), ErrorKind::ProviderUnavailable);
    }

    #[test]
    fn throttling_keeps_retry_after_and_substatus_in_the_message() {
        let m = map_status(
            429,
            Some(3200),
            Some(Duration::from_millis(1500)),
            true,
            "renew",
        );
        let text = m.error.to_string();
        assert!(text.contains("429/3200"), "{text}");
        assert!(text.contains("retry after 1500 ms"), "{text}");
        assert!(m.error.is_retryable());
    }

    #[test]
    fn sdk_errors_are_mapped_with_their_source() {
        let e = CosmosError::builder()
            .with_status(CosmosStatus::new(azure_core::http::StatusCode::from(412)))
            .with_message("precondition")
            .build();
        let m = map(e, "release");
        assert_eq!(m.failure, Failure::PreconditionFailed);
        assert!(std::error::Error::source(&m.error).is_some());
        // A transport failure the SDK reports as 503/20010 without a response.
        let e = CosmosError::builder()
            .with_status(CosmosStatus::new(azure_core::http::StatusCode::from(503)))
            .with_message("connection refused")
            .build();
        let m = map(e, "connect to http://127.0.0.1:1/");
        assert_eq!(m.error.kind(), ErrorKind::ProviderUnavailable);
        let text = m.error.to_string();
        assert!(
            text.contains("could not be reached: ") && text.contains("connection refused"),
            "{text}"
        );
        // The transport's own words come from the innermost cause, when it has any.
        #[derive(Debug)]
        struct Inner(&'static str);
        impl std::fmt::Display for Inner {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Inner {}
        let status = |code: u16| CosmosStatus::new(azure_core::http::StatusCode::from(code));
        let e = CosmosError::builder()
            .with_status(status(408).with_sub_status(20_001))
            .with_message("send failed")
            .with_source(Inner("Connection reset by peer"))
            .build();
        let text = map(e, "renew").error.to_string();
        assert!(
            text.ends_with("could not be reached: Connection reset by peer"),
            "{text}"
        );
        // An innermost cause without text: the error's own.
        let e = CosmosError::builder()
            .with_status(status(503))
            .with_message("no route")
            .with_source(Inner(""))
            .build();
        let text = map(e, "renew").error.to_string();
        assert!(text.contains("no route"), "{text}");
        // A synthetic error that is no transport failure keeps its status mapping.
        let e = CosmosError::builder()
            .with_status(status(400).with_sub_status(1001))
            .with_message("bad request")
            .build();
        assert_eq!(map(e, "acquire").error.kind(), ErrorKind::InvalidArgument);
        let d = deadline("renew", Duration::from_secs(2));
        assert!(d.is_retryable());
        assert_eq!(corrupt("inspect", "x").kind(), ErrorKind::Unexpected);
    }
}
