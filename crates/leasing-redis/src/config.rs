//! Configuration of the Redis providers: the redacting config, its validation and the
//! environment it is read from.

use crate::credential::TokenCredential;
use leasing_abstractions::{LeaseError, Result};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Environment variable [`RedisLeaseProviderBuilder::from_env`](crate::RedisLeaseProviderBuilder::from_env) reads the URL from.
pub const URL_ENV: &str = "LEASING_REDIS_URL";
/// Environment variable [`RedisLeaseProviderBuilder::cluster_from_env`](crate::RedisLeaseProviderBuilder::cluster_from_env) reads the
/// comma-separated cluster node URLs from.
pub const CLUSTER_URLS_ENV: &str = "LEASING_REDIS_CLUSTER_URLS";

/// The restart fence (see [`RedisConfig::restart_fence`]) every `from_env()` reads: a
/// duration such as `30s`, `1500ms` or `2m`; `0` turns the fence off.
pub const RESTART_FENCE_ENV: &str = "LEASING_REDIS_RESTART_FENCE";
/// URL used when [`URL_ENV`] is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// Default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "lease:";
/// Default deadline of one Redis call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default deadline for establishing a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time before a token's expiry at which it is replaced.
pub const DEFAULT_REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(120);
/// Default of [`RedisConfig::fence_retention`]: a name's fencing counter is deleted one day
/// after its last grant.
pub const DEFAULT_FENCE_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest duration any option takes; longer values (`Duration::MAX` included) are
/// saturated to it when the provider is built.
pub const MAX_OPTION_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Everything a Redis provider is built from. `Debug` leaves out the password and token
/// and the userinfo of the URL.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL (may carry `user:password@`). Not used in cluster mode.
    pub url: String,
    /// Redis Cluster mode when not empty: `redis://` or `rediss://` URLs of some nodes of
    /// one cluster (seeds; the others are discovered). Replaces [`url`](Self::url).
    pub cluster_urls: Vec<String>,
    /// Prefix of every key (default `lease:`); must not contain `{` or `}`.
    pub key_prefix: String,
    /// ACL user (overrides the URL's).
    pub username: Option<String>,
    /// Password (overrides the URL's).
    pub password: Option<String>,
    /// PEM of the CA that signed the server certificate, for `rediss://`.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Token credential; takes precedence over username and password.
    pub credential: Option<Arc<dyn TokenCredential>>,
    /// The transport's response timeout: the most one command waits for its reply (default
    /// 2 s). Not a call's deadline: the core hands every provider call its own deadline and
    /// drops the call when it passes; this bounds a command where no deadline is given (a
    /// provider or fenced resource called directly). Redlock also caps each server's share
    /// of an acquire at it.
    pub call_timeout: Duration,
    /// Deadline for establishing a connection.
    pub connect_timeout: Duration,
    /// How long before a token expires it is replaced.
    pub refresh_before_expiry: Duration,
    /// Most grants renewed in one pipelined round trip.
    pub max_renew_batch: usize,
    /// How long a name's fencing counter (`{prefix}{<name>}:fence`) outlives the name's
    /// last grant (default 1 day). A name unused for longer leaves no key behind; its next
    /// token still rises, floored at the server clock in µs (see the crate docs).
    pub fence_retention: Duration,
    /// Restart fence (default zero: off). When not zero, a server that restarted less than
    /// this long ago (`uptime_in_seconds`), that is not the server this provider saw before
    /// at its address (a changed `run_id` or replication id), or that was promoted from a
    /// replica, grants nothing until this long after the restart or promotion: set it to at
    /// least the longest lease duration in use, and no lease granted before a restart
    /// without persistence or a failover can overlap one granted after it. In cluster
    /// mode the check runs inside the acquire script on the master that grants: a node
    /// up for less than this, or promoted from a replica less than this before a name of
    /// the name's hash slot was first acquired there, refuses (`ProviderUnavailable`); the user needs `INFO`
    /// (an ACL that refuses it fails every acquire with `Unexpected`, loudly, rather than
    /// turning the fence off as on one server).
    pub restart_fence: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            cluster_urls: Vec::new(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            username: None,
            password: None,
            ca_cert_pem: None,
            credential: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            refresh_before_expiry: DEFAULT_REFRESH_BEFORE_EXPIRY,
            max_renew_batch: 256,
            fence_retention: DEFAULT_FENCE_RETENTION,
            restart_fence: Duration::ZERO,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field(
                "cluster_urls",
                &self
                    .cluster_urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("key_prefix", &self.key_prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "ca_cert_pem",
                &self
                    .ca_cert_pem
                    .as_ref()
                    .map(|p| format!("{} bytes", p.len())),
            )
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<token credential>"),
            )
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("refresh_before_expiry", &self.refresh_before_expiry)
            .field("max_renew_batch", &self.max_renew_batch)
            .field("fence_retention", &self.fence_retention)
            .field("restart_fence", &self.restart_fence)
            .finish()
    }
}

/// The URL with any `userinfo@` replaced by `***@` (also when the scheme is missing, as
/// in a mistyped `user:password@host`).
pub(crate) fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |s| s + 3);
    match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

impl RedisConfig {
    /// The configuration with every duration saturated at [`MAX_OPTION_DURATION`], so
    /// that no arithmetic on them can overflow (`Duration::MAX` means "as long as
    /// possible", never a panic).
    pub(crate) fn saturated(mut self) -> Self {
        for d in [
            &mut self.call_timeout,
            &mut self.connect_timeout,
            &mut self.refresh_before_expiry,
            &mut self.fence_retention,
            &mut self.restart_fence,
        ] {
            *d = (*d).min(MAX_OPTION_DURATION);
        }
        self
    }

    /// Checks every field; errors name the field and the rule.
    ///
    /// # Errors
    /// `Configuration` naming the field.
    pub fn validate(&self) -> Result<()> {
        let urls = if self.cluster_urls.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            self.cluster_urls.as_slice()
        };
        for url in urls {
            validate_url(url)?;
        }
        let tls = urls[0].starts_with("rediss://");
        if urls.iter().any(|u| u.starts_with("rediss://") != tls) {
            return Err(LeaseError::configuration(
                "cluster_urls",
                "mixes redis:// and rediss:// nodes",
            ));
        }
        if self.key_prefix.contains(['{', '}']) {
            return Err(LeaseError::configuration(
                "key_prefix",
                "must not contain '{' or '}' (they delimit the cluster hash tag)",
            ));
        }
        if self.call_timeout.is_zero() {
            return Err(LeaseError::configuration(
                "call_timeout",
                "must be greater than zero",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(LeaseError::configuration(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.fence_retention < Duration::from_millis(1) {
            return Err(LeaseError::configuration(
                "fence_retention",
                "must be at least 1 ms",
            ));
        }
        if self.max_renew_batch == 0 {
            return Err(LeaseError::configuration(
                "max_renew_batch",
                "must be at least 1",
            ));
        }
        if self.ca_cert_pem.is_some() && !tls {
            return Err(LeaseError::configuration(
                "ca_cert_pem",
                "a CA is only used with a rediss:// url",
            ));
        }
        Ok(())
    }
}

pub(crate) fn validate_url(url: &str) -> Result<()> {
    if url.starts_with("redis://") {
        return Ok(());
    }
    if url.starts_with("rediss://") {
        if cfg!(feature = "tls") {
            return Ok(());
        }
        return Err(LeaseError::configuration(
            "url",
            "rediss:// needs the `tls` feature of leasing-redis (`redis-tls` of distributed-leasing)",
        ));
    }
    Err(LeaseError::configuration(
        "url",
        format!(
            "must start with redis:// or rediss://, got {:?}",
            redact_url(url)
        ),
    ))
}

/// A duration as the environment gives it: `1500ms`, `30s`, `2m`, `1h`, or `0`.
pub(crate) fn parse_env_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" if n == 0.0 => 0.0,
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// The restart fence from [`RESTART_FENCE_ENV`], if set.
pub(crate) fn env_restart_fence(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<Duration>> {
    match var(RESTART_FENCE_ENV) {
        None => Ok(None),
        Some(v) => parse_env_duration(&v).map(Some).ok_or_else(|| {
            LeaseError::configuration(
                RESTART_FENCE_ENV,
                format!("{v:?} is not a duration (30s, 1500ms, 2m; 0 turns the fence off)"),
            )
        }),
    }
}

/// Reads a variable as `from_env()` does: unset and blank are the same.
pub(crate) fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// Says once per provider built without a restart fence what that risks.
pub(crate) fn warn_if_unfenced(config: &RedisConfig) {
    if config.restart_fence.is_zero() {
        tracing::warn!(
            "the Redis restart fence is off: after a restart without persistence or a failover \
             to a replica that missed a write, Redis can grant a name whose holder still \
             believes it holds it. Set restart_fence (or {RESTART_FENCE_ENV}) to the longest \
             lease duration in use unless every server persists each write (appendfsync always) \
             and has no replicas; see docs/providers/redis.md"
        );
    }
}

/// A list of URLs, trimmed, without blank entries.
pub(crate) fn url_list<I, S>(urls: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    urls.into_iter()
        .map(|u| u.as_ref().trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::AccessToken;
    use leasing_abstractions::ErrorKind;
    use std::time::SystemTime;

    #[test]
    fn debug_redacts_secrets() {
        let mut c = RedisConfig {
            url: "redis://user:hunter2@host:6379/0".into(),
            password: Some("s3cret".into()),
            ca_cert_pem: Some(b"pem".to_vec()),
            ..RedisConfig::default()
        };
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(!d.contains("s3cret"), "{d}");
        assert!(d.contains("redis://***@host:6379/0"));
        c.url = "redis://host".into();
        assert!(format!("{c:?}").contains("redis://host"));
        let t = AccessToken::new("u", "tok-secret", SystemTime::now());
        assert!(!format!("{t:?}").contains("tok-secret"));
    }

    #[test]
    fn validation_names_fields() {
        let ok = RedisConfig::default();
        ok.validate().unwrap();
        let cases: Vec<(RedisConfig, &str)> = vec![
            (
                RedisConfig {
                    url: "http://x".into(),
                    ..ok.clone()
                },
                "url",
            ),
            (
                RedisConfig {
                    key_prefix: "a{".into(),
                    ..ok.clone()
                },
                "key_prefix",
            ),
            (
                RedisConfig {
                    call_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "call_timeout",
            ),
            (
                RedisConfig {
                    connect_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "connect_timeout",
            ),
            (
                RedisConfig {
                    max_renew_batch: 0,
                    ..ok.clone()
                },
                "max_renew_batch",
            ),
            (
                RedisConfig {
                    ca_cert_pem: Some(vec![1]),
                    ..ok.clone()
                },
                "ca_cert_pem",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Configuration);
            assert_eq!(e.field(), Some(field));
        }
        // A mistyped URL is reported without its password.
        let e = validate_url("user:hunter2@host:6379").unwrap_err();
        assert_eq!(e.field(), Some("url"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("***@host:6379"), "{e}");
        let tls = validate_url("rediss://localhost:1");
        assert_eq!(tls.is_ok(), cfg!(feature = "tls"));
    }
}
