//! Service answers to lease errors, in one place.

use leasing_abstractions::{ErrorKind, LeaseError};
use leasing_azure::{chain, redact};
use std::fmt;

/// The operation a service error answered (the core's), which decides what some codes
/// mean (a 409 on renew is a lost lease; on acquire it is someone else's). `Connect` is the
/// build's container check.
pub(crate) use leasing_abstractions::Operation as Op;

/// What an azure_core error says, with secrets removed: the status and `x-ms-error-code`
/// of a service answer, or the redacted text of a transport failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The service answered with an unexpected status.
    Status { status: u16, code: Option<String> },
    /// No answer: connection refused, reset, I/O error, timeout.
    Transport { connect: bool, text: String },
    /// A credential could not produce a token.
    Credential(String),
    /// Anything else the SDK reports (bad URL, unreadable header).
    Other(String),
}

impl Failure {
    pub(crate) fn from_azure(e: &azure_core::Error) -> Self {
        use azure_core::error::ErrorKind as K;
        match e.kind() {
            K::HttpResponse {
                status, error_code, ..
            } => Failure::Status {
                status: u16::from(*status),
                code: error_code.clone(),
            },
            K::Connection => Failure::Transport {
                connect: true,
                text: redact(&chain(e)),
            },
            K::Io => Failure::Transport {
                connect: false,
                text: redact(&chain(e)),
            },
            K::Credential => Failure::Credential(redact(&chain(e))),
            _ => Failure::Other(redact(&chain(e))),
        }
    }

    /// The service's error code, if it gave one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Failure::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status { status, code } => {
                write!(
                    f,
                    "HTTP {status} {}",
                    code.as_deref().unwrap_or("(no error code)")
                )
            }
            Failure::Transport { text, .. } | Failure::Credential(text) | Failure::Other(text) => {
                f.write_str(text)
            }
        }
    }
}

impl std::error::Error for Failure {}

/// Maps a failed call to the core's error kinds: the one place that reads status codes
/// and `x-ms-error-code`s.
///
/// - lease held by someone else: `Conflict` (acquire answers `None` before getting here);
/// - this grant is no longer the holder (renew: mismatched, broken, missing lease or blob):
///   `Lost`;
/// - 401/403: `Unauthorized`; 400 (e.g. `InvalidHeaderValue` for a bad duration):
///   `InvalidArgument`;
/// - 408, 429, 5xx, no answer at all, deadline passed: `ProviderUnavailable` (retryable);
/// - 404 to the build's container check: `Configuration` (no such account);
/// - anything else: `Unexpected`, on every operation (not retryable).
pub(crate) fn map_failure(op: Op, failure: Failure) -> LeaseError {
    let kind = match (&failure, failure.status(), failure.code()) {
        (Failure::Transport { .. }, ..) => ErrorKind::ProviderUnavailable,
        (Failure::Credential(_), ..) => ErrorKind::Unauthorized,
        (_, Some(401 | 403), _) => ErrorKind::Unauthorized,
        (_, Some(408 | 429 | 500..=599), _) => ErrorKind::ProviderUnavailable,
        (_, Some(409 | 412 | 404), Some(code)) if op == Op::Renew && loses_lease(code) => {
            ErrorKind::Lost
        }
        (_, Some(404), _) if op == Op::Renew => ErrorKind::Lost,
        (_, Some(409), Some("LeaseAlreadyPresent")) => ErrorKind::Conflict,
        (_, Some(400), _) => ErrorKind::InvalidArgument,
        (_, Some(404), _) if op == Op::Connect => ErrorKind::Configuration,
        _ => ErrorKind::Unexpected,
    };
    let message = match op {
        Op::Acquire => format!("blob acquire failed: {failure}"),
        Op::Renew => format!("blob renew failed: {failure}"),
        Op::Release => format!("blob release failed: {failure}"),
        Op::Inspect => format!("blob inspect failed: {failure}"),
        Op::Break => format!("blob break failed: {failure}"),
        Op::List => format!("blob list failed: {failure}"),
        Op::Connect => format!("blob container setup failed: {failure}"),
        _ => format!("blob {op} failed: {failure}"),
    };
    let err = LeaseError::new(kind, message);
    match kind {
        // `invalid_argument` errors name a field; the service does not say which was bad.
        ErrorKind::InvalidArgument => {
            LeaseError::invalid_argument("request", err.message().to_owned()).with_source(failure)
        }
        _ => err.with_source(failure),
    }
}

/// Error codes that mean the presented lease id no longer holds the blob.
fn loses_lease(code: &str) -> bool {
    matches!(
        code,
        "LeaseIdMismatchWithLeaseOperation"
            | "LeaseIsBrokenAndCannotBeRenewed"
            | "LeaseNotPresentWithLeaseOperation"
            | "LeaseIdMismatchWithBlobOperation"
            | "LeaseNotPresentWithBlobOperation"
            | "LeaseIdMissing"
            | "LeaseLost"
            | "BlobNotFound"
            | "ContainerNotFound"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str) -> Failure {
        Failure::Status {
            status,
            code: (!code.is_empty()).then(|| code.to_owned()),
        }
    }

    #[test]
    fn one_table_for_every_answer() {
        use ErrorKind::*;
        let cases = [
            (
                Op::Renew,
                status(409, "LeaseIdMismatchWithLeaseOperation"),
                Lost,
            ),
            (
                Op::Renew,
                status(409, "LeaseIsBrokenAndCannotBeRenewed"),
                Lost,
            ),
            (Op::Renew, status(412, "LeaseIdMissing"), Lost),
            (Op::Renew, status(404, "BlobNotFound"), Lost),
            (Op::Renew, status(404, ""), Lost),
            (Op::Renew, status(409, "SomethingElse"), Unexpected),
            (Op::Acquire, status(409, "LeaseAlreadyPresent"), Conflict),
            (Op::Acquire, status(412, "ConditionNotMet"), Unexpected),
            (
                Op::Acquire,
                status(400, "InvalidHeaderValue"),
                InvalidArgument,
            ),
            (
                Op::Acquire,
                status(403, "AuthenticationFailed"),
                Unauthorized,
            ),
            (Op::Inspect, status(401, ""), Unauthorized),
            (Op::Release, status(503, "ServerBusy"), ProviderUnavailable),
            (Op::Break, status(500, ""), ProviderUnavailable),
            (Op::List, status(429, ""), ProviderUnavailable),
            (Op::Inspect, status(408, ""), ProviderUnavailable),
            (Op::Release, status(418, ""), Unexpected),
            (Op::Connect, status(418, ""), Unexpected),
            (Op::Connect, status(404, "ResourceNotFound"), Configuration),
            (Op::Inspect, status(404, ""), Unexpected),
            (Op::FencedWrite, status(418, ""), Unexpected),
            (
                Op::Renew,
                Failure::Transport {
                    connect: true,
                    text: "refused".into(),
                },
                ProviderUnavailable,
            ),
            (
                Op::Acquire,
                Failure::Credential("no token".into()),
                Unauthorized,
            ),
            (Op::Acquire, Failure::Other("odd".into()), Unexpected),
        ];
        for (op, failure, kind) in cases {
            let text = failure.to_string();
            let e = map_failure(op, failure);
            assert_eq!(e.kind(), kind, "{op:?} {text}");
            assert!(e.message().contains(&text), "{e}");
        }
        let e = map_failure(Op::Acquire, status(400, ""));
        assert_eq!(e.field(), Some("request"));
        assert!(e.message().contains("(no error code)"));
        assert_eq!(status(409, "x").code(), Some("x"));
        assert_eq!(Failure::Other("y".into()).code(), None);
        assert_eq!(Failure::Other("y".into()).status(), None);
    }

    #[test]
    fn azure_errors_are_read_without_secrets() {
        use azure_core::error::ErrorKind as K;
        let e = azure_core::Error::with_message(
            K::Connection,
            "connect to http://h/?sig=SECRET failed",
        );
        let f = Failure::from_azure(&e);
        assert!(matches!(f, Failure::Transport { connect: true, .. }));
        assert!(!f.to_string().contains("SECRET"));
        let io = std::io::Error::other("reset");
        let e = azure_core::Error::new(K::Io, io);
        assert!(
            matches!(Failure::from_azure(&e), Failure::Transport { connect: false, ref text } if text.contains("reset"))
        );
        let e = azure_core::Error::with_message(K::Credential, "no az");
        assert!(matches!(Failure::from_azure(&e), Failure::Credential(_)));
        let e = azure_core::Error::with_message(K::DataConversion, "bad");
        assert!(matches!(Failure::from_azure(&e), Failure::Other(_)));
        let e = azure_core::Error::new(
            K::HttpResponse {
                status: azure_core::http::StatusCode::Conflict,
                error_code: Some("LeaseAlreadyPresent".into()),
                raw_response: None,
            },
            std::io::Error::other("x"),
        );
        assert_eq!(Failure::from_azure(&e), status(409, "LeaseAlreadyPresent"));
    }
}
