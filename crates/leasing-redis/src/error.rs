//! Mapping of redis-rs errors to the core's [`ErrorKind`]s, in one function.

use leasing_abstractions::{ErrorKind, LeaseError};
use redis::{RedisError, ServerErrorKind};

/// Which lease operation failed; decides the kind of a non-transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Connect,
    Acquire,
    Renew,
    Release,
    Inspect,
    Break,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Connect => "connect",
            Op::Acquire => "acquire",
            Op::Renew => "renew",
            Op::Release => "release",
            Op::Inspect => "inspect",
            Op::Break => "break",
        }
    }
}

/// The kind a redis error is reported as:
///
/// | redis error | kind |
/// |---|---|
/// | I/O, refused, dropped connection, timeout, `LOADING`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `MOVED`/`ASK` | `ProviderUnavailable` (retryable) |
/// | `NOAUTH`, `WRONGPASS`, authentication failure, `NOPERM` | `Unauthorized` |
/// | invalid client configuration (bad URL, TLS setup) | `Configuration` |
/// | anything else | `Renewal` while renewing, `Acquisition` otherwise |
pub(crate) fn classify(err: &RedisError, op: Op) -> ErrorKind {
    let code = err.code().unwrap_or("");
    if matches!(code, "NOAUTH" | "WRONGPASS") {
        return ErrorKind::Unauthorized;
    }
    match err.kind() {
        redis::ErrorKind::AuthenticationFailed
        | redis::ErrorKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Unauthorized,
        redis::ErrorKind::InvalidClientConfig => ErrorKind::Configuration,
        redis::ErrorKind::Io | redis::ErrorKind::ClusterConnectionNotFound => {
            ErrorKind::ProviderUnavailable
        }
        redis::ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => ErrorKind::ProviderUnavailable,
        _ if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal() =>
        {
            ErrorKind::ProviderUnavailable
        }
        _ if op == Op::Renew => ErrorKind::Renewal,
        _ => ErrorKind::Acquisition,
    }
}

/// A [`LeaseError`] for `err` during `op` on `name`. The redis error is kept as the source;
/// its text never carries the password (redis-rs redacts credentials and we never put the
/// URL in a message).
pub(crate) fn map_err(err: RedisError, op: Op, name: Option<&str>) -> LeaseError {
    let kind = classify(&err, op);
    let mut e = LeaseError::new(
        kind,
        format!("redis {} failed: {}", op.as_str(), kind_text(&err)),
    );
    if let Some(name) = name {
        e = e.with_lease_name(name);
    }
    e.with_source(RedactedRedisError(err.to_string()))
}

/// A call that did not answer within its deadline.
pub(crate) fn timeout(op: Op, name: Option<&str>, after: std::time::Duration) -> LeaseError {
    let mut e = LeaseError::unavailable(format!(
        "redis {} did not answer within {after:?}",
        op.as_str()
    ));
    if let Some(name) = name {
        e = e.with_lease_name(name);
    }
    e
}

fn kind_text(err: &RedisError) -> String {
    match err.code() {
        Some(code) => code.to_owned(),
        None => format!("{:?}", err.kind()),
    }
}

/// The redis error's text as the source, so the chain survives `Clone` of the core error.
#[derive(Debug)]
struct RedactedRedisError(String);

impl std::fmt::Display for RedactedRedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedactedRedisError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> RedisError {
        redis::make_extension_error(code.to_owned(), Some("detail".to_owned()))
    }

    #[test]
    fn maps_every_class() {
        let io: RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert_eq!(classify(&io, Op::Acquire), ErrorKind::ProviderUnavailable);
        assert_eq!(
            classify(&server("NOAUTH"), Op::Acquire),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            classify(&server("WRONGPASS"), Op::Renew),
            ErrorKind::Unauthorized
        );
        assert_eq!(classify(&server("ERR"), Op::Renew), ErrorKind::Renewal);
        assert_eq!(
            classify(&server("ERR"), Op::Inspect),
            ErrorKind::Acquisition
        );
        let cfg: RedisError = (redis::ErrorKind::InvalidClientConfig, "bad url").into();
        assert_eq!(classify(&cfg, Op::Connect), ErrorKind::Configuration);
        let auth: RedisError = (redis::ErrorKind::AuthenticationFailed, "no").into();
        assert_eq!(classify(&auth, Op::Connect), ErrorKind::Unauthorized);
        let e = map_err(server("ERR"), Op::Break, Some("n"));
        assert_eq!(e.lease_name(), Some("n"));
        assert!(e.to_string().contains("break"));
        assert!(std::error::Error::source(&e).is_some());
        let t = timeout(Op::Renew, Some("n"), std::time::Duration::from_millis(5));
        assert_eq!(t.kind(), ErrorKind::ProviderUnavailable);
        assert_eq!(
            timeout(Op::Inspect, None, std::time::Duration::ZERO).lease_name(),
            None
        );
        for op in [
            Op::Connect,
            Op::Acquire,
            Op::Renew,
            Op::Release,
            Op::Inspect,
            Op::Break,
        ] {
            assert!(!op.as_str().is_empty());
        }
    }
}
