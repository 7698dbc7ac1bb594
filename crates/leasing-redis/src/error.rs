//! Mapping of redis-rs errors to the core's [`ErrorKind`]s, in one function.

use leasing_abstractions::{ErrorKind, LeaseError};
use redis::{RedisError, ServerErrorKind};

/// Which operation failed (the core's: it decides the kind of a non-transient failure
/// and names the operation in messages).
pub(crate) use leasing_abstractions::Operation as Op;

/// The kind a redis error is reported as:
///
/// | redis error | kind |
/// |---|---|
/// | I/O, refused, dropped connection, timeout, `LOADING`, `BUSY` (a script or module is running), `OOM` (`maxmemory` reached with `noeviction`), `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `MOVED`/`ASK` | `ProviderUnavailable` (retryable) |
/// | `NOAUTH`, `WRONGPASS`, authentication failure, `NOPERM` (also inside the `Io` error of a cluster's initial connection) | `Unauthorized` |
/// | invalid client configuration (bad URL, TLS setup); while connecting, a peer that does not speak RESP (`Parse`: an HTTP port) or an `ERR` reply to the set-up (`SELECT` of a database that does not exist) | `Configuration` |
/// | an unparseable reply on an established connection | `ProviderUnavailable` (retryable) |
/// | anything else (`WRONGTYPE`, an unknown `ERR`, a reply of the wrong shape) | `Unexpected`, on every operation (not retryable) |
pub(crate) fn classify(err: &RedisError, op: Op) -> ErrorKind {
    let code = err.code().unwrap_or("");
    if matches!(code, "NOAUTH" | "WRONGPASS") {
        return ErrorKind::Unauthorized;
    }
    // Transient server states without a redis-rs kind of their own: the server is busy
    // running a script (`BUSY`), or out of memory under `noeviction` (`OOM`; the script
    // failed at its first write, so nothing was written).
    if matches!(code, "BUSY" | "OOM") {
        return ErrorKind::ProviderUnavailable;
    }
    // redis-rs' cluster client reports failing to connect to every seed as `Io`, keeping
    // the node's error only in the text ("… - Password authentication failed -
    // AuthenticationFailed").
    if err.kind() == redis::ErrorKind::Io
        && err.detail().is_some_and(|d| {
            ["AuthenticationFailed", "WRONGPASS", "NOAUTH", "NoPerm"]
                .iter()
                .any(|c| d.contains(c))
        })
    {
        return ErrorKind::Unauthorized;
    }
    match err.kind() {
        redis::ErrorKind::AuthenticationFailed
        | redis::ErrorKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Unauthorized,
        // While connecting: the peer does not speak RESP (an HTTP port, a TLS port without
        // TLS), or the server refused the set-up (`SELECT` of a database that does not
        // exist): wrong settings, not an outage.
        redis::ErrorKind::Parse | redis::ErrorKind::Server(ServerErrorKind::ResponseError)
            if op == Op::Connect =>
        {
            ErrorKind::Configuration
        }
        // Later, an unparseable reply means the stream is broken: reconnect and retry.
        redis::ErrorKind::Parse => ErrorKind::ProviderUnavailable,
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
        // (redis-rs 1.8 reports timeouts, refused and dropped connections as `Io`.)
        _ => ErrorKind::Unexpected,
    }
}

/// A [`LeaseError`] for `err` during `op` on `name`. The redis error is kept as the source;
/// its text never carries the password (redis-rs redacts credentials and we never put the
/// URL in a message).
pub(crate) fn map_err(err: RedisError, op: Op, name: Option<&str>) -> LeaseError {
    let kind = classify(&err, op);
    // The code (or client-side kind), then the server's or the OS's reason.
    let text = err.to_string();
    let code = kind_text(&err);
    let reason = text
        .strip_prefix(code.as_str())
        .map(|r| r.trim_start_matches([':', '-', ' ']))
        .unwrap_or(&text)
        .trim()
        // redis-rs renders a bare code as `BUSY: "BUSY"`.
        .trim_matches('"');
    let message = if reason.is_empty() || reason == code {
        format!("redis {} failed: {code}", op.as_str())
    } else {
        format!("redis {} failed: {code}: {reason}", op.as_str())
    };
    let mut e = LeaseError::new(kind, message);
    if let Some(name) = name {
        e = e.with_lease_name(name);
    }
    e.with_source(RedactedRedisError(err.to_string()))
}

/// `e` with the server it concerns (redacted URL) named in its message.
pub(crate) fn at_server(e: LeaseError, server: &str) -> LeaseError {
    let mut out = LeaseError::new(e.kind(), format!("{} (server {server})", e.message()));
    if let Some(name) = e.lease_name() {
        out = out.with_lease_name(name);
    }
    out.with_source(e)
}

/// A failed cluster start-up; seeds that are plain servers are a configuration error
/// (redis-rs reports it only as text).
pub(crate) fn cluster_connect_error(e: RedisError) -> LeaseError {
    if e.to_string().contains("cluster support disabled") {
        LeaseError::configuration(
            "cluster_urls",
            "the seeds are not Redis Cluster nodes (cluster support disabled); use url() for one server",
        )
    } else {
        map_err(e, Op::Connect, None)
    }
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

    /// A server error exactly as redis-rs parses it off the wire.
    fn wire(reply: &str) -> RedisError {
        redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .expect("parse")
            .extract_error()
            .expect_err("an error reply")
    }

    fn io(kind: std::io::ErrorKind) -> RedisError {
        std::io::Error::new(kind, "io").into()
    }

    #[test]
    fn maps_server_replies_and_io_failures() {
        use ErrorKind::*;
        let cases: Vec<(RedisError, Op, ErrorKind)> = vec![
            (
                wire("LOADING Redis is loading the dataset in memory"),
                Op::Acquire,
                ProviderUnavailable,
            ),
            (
                wire("TRYAGAIN Multiple keys request during rehashing of slot"),
                Op::Renew,
                ProviderUnavailable,
            ),
            (
                wire("CLUSTERDOWN The cluster is down"),
                Op::Acquire,
                ProviderUnavailable,
            ),
            (
                wire("MASTERDOWN Link with MASTER is down"),
                Op::Release,
                ProviderUnavailable,
            ),
            (
                wire("READONLY You can't write against a read only replica."),
                Op::Renew,
                ProviderUnavailable,
            ),
            (
                wire("MOVED 3999 127.0.0.1:6381"),
                Op::Acquire,
                ProviderUnavailable,
            ),
            (
                wire("ASK 3999 127.0.0.1:6381"),
                Op::Acquire,
                ProviderUnavailable,
            ),
            (
                wire("NOPERM User u has no permissions to run the 'evalsha' command"),
                Op::Acquire,
                Unauthorized,
            ),
            (
                wire("NOAUTH Authentication required."),
                Op::Renew,
                Unauthorized,
            ),
            (
                wire("WRONGPASS invalid username-password pair or user is disabled."),
                Op::Connect,
                Unauthorized,
            ),
            (
                wire("WRONGTYPE Operation against a key holding the wrong kind of value"),
                Op::Renew,
                Unexpected,
            ),
            (
                wire("WRONGTYPE Operation against a key holding the wrong kind of value"),
                Op::Acquire,
                Unexpected,
            ),
            (
                wire("NOSCRIPT No matching script."),
                Op::Inspect,
                Unexpected,
            ),
            (
                wire("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."),
                Op::Acquire,
                ProviderUnavailable,
            ),
            (
                wire("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."),
                Op::Renew,
                ProviderUnavailable,
            ),
            (
                wire("OOM command not allowed when used memory > 'maxmemory'."),
                Op::Acquire,
                ProviderUnavailable,
            ),
            (
                wire("OOM command not allowed when used memory > 'maxmemory'."),
                Op::Renew,
                ProviderUnavailable,
            ),
            (
                io(std::io::ErrorKind::TimedOut),
                Op::Renew,
                ProviderUnavailable,
            ),
            (
                io(std::io::ErrorKind::BrokenPipe),
                Op::Release,
                ProviderUnavailable,
            ),
            (
                io(std::io::ErrorKind::ConnectionReset),
                Op::Inspect,
                ProviderUnavailable,
            ),
            (
                (redis::ErrorKind::ClusterConnectionNotFound, "gone").into(),
                Op::Acquire,
                ProviderUnavailable,
            ),
            (
                (redis::ErrorKind::UnexpectedReturnType, "type").into(),
                Op::Renew,
                Unexpected,
            ),
            (
                wire("ERR DB index is out of range"),
                Op::Connect,
                Configuration,
            ),
            (wire("ERR unknown"), Op::Acquire, Unexpected),
            (
                (redis::ErrorKind::Parse, "not RESP").into(),
                Op::Connect,
                Configuration,
            ),
            (
                (redis::ErrorKind::Parse, "not RESP").into(),
                Op::Renew,
                ProviderUnavailable,
            ),
        ];
        for (err, op, want) in cases {
            assert_eq!(classify(&err, op), want, "{err} during {op:?}");
            let mapped = map_err(err, op, None);
            assert_eq!(mapped.kind(), want);
            assert_eq!(mapped.lease_name(), None);
            assert!(mapped.to_string().contains(op.as_str()), "{mapped}");
        }
        // The message names the server's code, or the client-side kind, then the reason.
        let m = map_err(wire("READONLY x"), Op::Renew, None).to_string();
        assert!(m.contains("failed: READONLY"), "{m}");
        let m = map_err(io(std::io::ErrorKind::TimedOut), Op::Renew, None).to_string();
        assert!(m.contains("failed: Io"), "{m}");
        let refused: RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused").into();
        let m = map_err(refused, Op::Connect, None).message().to_owned();
        assert!(
            m.contains("Connection refused"),
            "the reason is in the message: {m}"
        );
        // A code alone: nothing after it.
        let bare = redis::make_extension_error("BUSY".to_owned(), None);
        let m = map_err(bare, Op::Acquire, None).message().to_owned();
        assert!(m.contains("failed: BUSY"), "{m}");
        // The server named, the lease kept.
        let e = at_server(
            LeaseError::unavailable("down").with_lease_name("job"),
            "redis://h:1",
        );
        assert_eq!(e.message(), "down (server redis://h:1)");
        assert_eq!(e.lease_name(), Some("job"));
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        let e = at_server(LeaseError::unavailable("down"), "redis://h:1");
        assert_eq!(e.lease_name(), None);
        let m = map_err(server("ERR"), Op::Connect, None)
            .message()
            .to_owned();
        assert!(
            m.contains("detail"),
            "the server's reason is in the message: {m}"
        );
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
        assert_eq!(classify(&server("ERR"), Op::Renew), ErrorKind::Unexpected);
        assert_eq!(classify(&server("ERR"), Op::Inspect), ErrorKind::Unexpected);
        let cfg: RedisError = (redis::ErrorKind::InvalidClientConfig, "bad url").into();
        assert_eq!(classify(&cfg, Op::Connect), ErrorKind::Configuration);
        let auth: RedisError = (redis::ErrorKind::AuthenticationFailed, "no").into();
        assert_eq!(classify(&auth, Op::Connect), ErrorKind::Unauthorized);
        // The cluster client's initial connection: the node's error survives only as text.
        let initial = |detail: &str| -> RedisError {
            (
                redis::ErrorKind::Io,
                "Failed to create initial connections",
                detail.to_owned(),
            )
                .into()
        };
        assert_eq!(
            classify(
                &initial("Io: Password authentication failed - AuthenticationFailed"),
                Op::Connect
            ),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            classify(
                &initial("Io: Connection refused (os error 111)"),
                Op::Connect
            ),
            ErrorKind::ProviderUnavailable
        );
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
            Op::List,
        ] {
            assert!(!op.as_str().is_empty());
        }
    }
}
