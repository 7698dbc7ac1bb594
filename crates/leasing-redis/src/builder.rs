//! The builder of the single-server and Cluster provider, and the setters it shares with
//! Redlock's.

use crate::config::{env_var, RedisConfig, CLUSTER_URLS_ENV, URL_ENV};
use leasing_abstractions::{LeaseError, Result};

macro_rules! common_setters {
    () => {
        /// Applies [`RESTART_FENCE_ENV`](crate::config::RESTART_FENCE_ENV) when set; a
        /// malformed value is kept as the error `build` returns.
        pub(crate) fn with_env_fence(mut self, var: &dyn Fn(&str) -> Option<String>) -> Self {
            match $crate::config::env_restart_fence(var) {
                Ok(Some(f)) => self.config.restart_fence = f,
                Ok(None) => {}
                Err(e) => self.env_error = Some(e),
            }
            self
        }

        /// Prefix of every key (default `lease:`); must not contain `{` or `}`.
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// // One prefix per application sharing the servers (the same on both builders):
        /// let redis = RedisLeaseProvider::builder().key_prefix("billing:lease:");
        /// let redlock = RedlockLeaseProvider::builder().key_prefix("billing:lease:");
        /// assert_eq!(redis.config().key_prefix, "billing:lease:");
        /// assert_eq!(redlock.config().key_prefix, "billing:lease:");
        /// ```
        pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
            self.config.key_prefix = prefix.into();
            self
        }

        /// ACL username.
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// // An ACL user that may run the lease scripts (placeholder password):
        /// let redis = RedisLeaseProvider::builder().username("leasing").password("not-a-real-password");
        /// let redlock = RedlockLeaseProvider::builder().username("leasing").password("not-a-real-password");
        /// assert_eq!(redis.config().username.as_deref(), Some("leasing"));
        /// assert_eq!(redlock.config().username.as_deref(), Some("leasing"));
        /// ```
        pub fn username(mut self, username: impl Into<String>) -> Self {
            self.config.username = Some(username.into());
            self
        }

        /// Password (never printed).
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// // Read it from your secret store; this one is a placeholder.
        /// let redis = RedisLeaseProvider::builder().password("not-a-real-password");
        /// let redlock = RedlockLeaseProvider::builder().password("not-a-real-password");
        /// assert!(redis.config().password.is_some() && redlock.config().password.is_some());
        /// assert!(!format!("{redis:?} {redlock:?}").contains("not-a-real-password"));
        /// ```
        pub fn password(mut self, password: impl Into<String>) -> Self {
            self.config.password = Some(password.into());
            self
        }

        /// PEM of the CA that signed the server's certificate (for `rediss://`).
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// // Typically `include_bytes!("internal-ca.pem")` or bytes from your secret store:
        /// let pem = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n";
        /// let redis = RedisLeaseProvider::builder().url("rediss://cache.internal:6380").ca_cert_pem(*pem);
        /// let redlock = RedlockLeaseProvider::builder().ca_cert_pem(*pem);
        /// assert_eq!(redis.config().ca_cert_pem.as_deref(), Some(&pem[..]));
        /// assert_eq!(redlock.config().ca_cert_pem.as_deref(), Some(&pem[..]));
        /// ```
        pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
            self.config.ca_cert_pem = Some(pem.into());
            self
        }

        /// Reads the CA PEM from a file.
        ///
        /// # Errors
        /// `Configuration` (field `ca_file`) if the file cannot be read.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// let redis = RedisLeaseProvider::builder()
        ///     .url("rediss://cache.internal:6380")
        ///     .ca_file("/etc/ssl/certs/internal-ca.pem")?;
        /// let redlock = RedlockLeaseProvider::builder().ca_file("/etc/ssl/certs/internal-ca.pem")?;
        /// # Ok::<(), leasing_abstractions::LeaseError>(())
        /// ```
        pub fn ca_file(
            mut self,
            path: impl AsRef<std::path::Path>,
        ) -> leasing_abstractions::Result<Self> {
            let pem = std::fs::read(path.as_ref()).map_err(|e| {
                leasing_abstractions::LeaseError::configuration(
                    "ca_file",
                    format!("cannot read {:?}: {e}", path.as_ref()),
                )
            })?;
            self.config.ca_cert_pem = Some(pem);
            Ok(self)
        }

        /// Token authentication (Microsoft Entra ID): re-authenticates before the token expires.
        ///
        /// # Examples
        ///
        /// ```
        /// # use leasing_abstractions::{BoxError, BoxFuture};
        /// # use leasing_redis::{AccessToken, TokenCredential};
        /// # #[derive(Debug)]
        /// # struct EntraIdToken;
        /// # impl TokenCredential for EntraIdToken {
        /// #     fn get_token(&self) -> BoxFuture<'_, Result<AccessToken, BoxError>> {
        /// #         Box::pin(async { Err("not in this example".into()) })
        /// #     }
        /// # }
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// use std::sync::Arc;
        /// // `EntraIdToken`: your `TokenCredential`, e.g. over `azure_identity`.
        /// let redis = RedisLeaseProvider::builder()
        ///     .url("rediss://mycache.redis.cache.windows.net:6380")
        ///     .credential(Arc::new(EntraIdToken));
        /// let redlock = RedlockLeaseProvider::builder().credential(Arc::new(EntraIdToken));
        /// assert!(redis.config().credential.is_some() && redlock.config().credential.is_some());
        /// ```
        pub fn credential(
            mut self,
            credential: std::sync::Arc<dyn $crate::TokenCredential>,
        ) -> Self {
            self.config.credential = Some(credential);
            self
        }

        /// The transport's response timeout: the most one Redis command waits for its reply
        /// (default 2 s; a reply that takes longer fails the command, `ProviderUnavailable`).
        /// Not a per-call deadline: the core hands every provider call its deadline (the
        /// time left before a lease's safety deadline, the acquire timeout,
        /// `LeaseOptions::call_timeout` for operator calls) and drops the call when it
        /// passes. Redlock caps each server's share of an acquire at
        /// `min(call_timeout, ttl / 10)`.
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// use std::time::Duration;
        /// let redis = RedisLeaseProvider::builder().call_timeout(Duration::from_millis(500));
        /// let redlock = RedlockLeaseProvider::builder().call_timeout(Duration::from_millis(500));
        /// assert_eq!(redis.config().call_timeout, Duration::from_millis(500));
        /// assert_eq!(redlock.config().call_timeout, Duration::from_millis(500));
        /// ```
        pub fn call_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.config.call_timeout = timeout;
            self
        }

        /// Deadline for establishing a connection (default 2 s).
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// use std::time::Duration;
        /// // A server in another region, where connecting takes longer:
        /// let redis = RedisLeaseProvider::builder().connect_timeout(Duration::from_secs(5));
        /// let redlock = RedlockLeaseProvider::builder().connect_timeout(Duration::from_secs(5));
        /// assert_eq!(redis.config().connect_timeout, Duration::from_secs(5));
        /// assert_eq!(redlock.config().connect_timeout, Duration::from_secs(5));
        /// ```
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.config.connect_timeout = timeout;
            self
        }

        /// How long before a token's expiry it is replaced (default 2 min; halved
        /// lifetimes are used for tokens shorter than twice this).
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// use std::time::Duration;
        /// // Replace each access token five minutes before it expires:
        /// let redis = RedisLeaseProvider::builder().refresh_before_expiry(Duration::from_secs(300));
        /// let redlock = RedlockLeaseProvider::builder().refresh_before_expiry(Duration::from_secs(300));
        /// assert_eq!(redis.config().refresh_before_expiry, Duration::from_secs(300));
        /// assert_eq!(redlock.config().refresh_before_expiry, Duration::from_secs(300));
        /// ```
        pub fn refresh_before_expiry(mut self, before: std::time::Duration) -> Self {
            self.config.refresh_before_expiry = before;
            self
        }

        /// Most grants renewed in one pipelined round trip (default 256).
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// let redis = RedisLeaseProvider::builder().max_renew_batch(64);
        /// let redlock = RedlockLeaseProvider::builder().max_renew_batch(64);
        /// assert_eq!(redis.config().max_renew_batch, 64);
        /// assert_eq!(redlock.config().max_renew_batch, 64);
        /// ```
        pub fn max_renew_batch(mut self, n: usize) -> Self {
            self.config.max_renew_batch = n;
            self
        }

        /// How long a name's fencing counter outlives its last grant (default 1 day);
        /// see [`RedisConfig::fence_retention`].
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// use std::time::Duration;
        /// // Names reused weekly keep their fencing counter between uses:
        /// let week = Duration::from_secs(7 * 24 * 60 * 60);
        /// let redis = RedisLeaseProvider::builder().fence_retention(week);
        /// let redlock = RedlockLeaseProvider::builder().fence_retention(week);
        /// assert_eq!(redis.config().fence_retention, week);
        /// assert_eq!(redlock.config().fence_retention, week);
        /// ```
        pub fn fence_retention(mut self, retention: std::time::Duration) -> Self {
            self.config.fence_retention = retention;
            self
        }

        /// Restart fence (default off); see [`RedisConfig::restart_fence`]. Set it to at
        /// least the longest lease duration in use.
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// use std::time::Duration;
        /// // The longest lease in use is 30 s:
        /// let redis = RedisLeaseProvider::builder().restart_fence(Duration::from_secs(30));
        /// let redlock = RedlockLeaseProvider::builder().restart_fence(Duration::from_secs(30));
        /// assert_eq!(redis.config().restart_fence, Duration::from_secs(30));
        /// assert_eq!(redlock.config().restart_fence, Duration::from_secs(30));
        /// ```
        pub fn restart_fence(mut self, fence: std::time::Duration) -> Self {
            self.config.restart_fence = fence;
            self
        }

        /// The configuration so far.
        ///
        /// # Examples
        ///
        /// ```
        /// use leasing_redis::{RedisLeaseProvider, RedlockLeaseProvider};
        /// let redis = RedisLeaseProvider::builder().url("redis://app:not-a-real-password@cache.internal:6379");
        /// let redlock = RedlockLeaseProvider::builder().key_prefix("billing:");
        /// assert_eq!(redis.config().key_prefix, "lease:"); // the default until set
        /// assert_eq!(redlock.config().key_prefix, "billing:");
        /// // Its `Debug` is safe to log: the URL's password is hidden.
        /// assert!(!format!("{:?}", redis.config()).contains("not-a-real-password"));
        /// ```
        pub fn config(&self) -> &$crate::config::RedisConfig {
            &self.config
        }
    };
}
pub(crate) use common_setters;

/// Builds a [`RedisLeaseProvider`](crate::RedisLeaseProvider).
///
/// ```no_run
/// # async fn f() -> leasing_abstractions::Result<()> {
/// use leasing_redis::RedisLeaseProvider;
/// let provider = RedisLeaseProvider::builder()
///     .url("redis://127.0.0.1:6379")
///     .key_prefix("lease:")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RedisLeaseProviderBuilder {
    pub(crate) config: RedisConfig,
    /// What `from_env()` found wrong, returned by `build`.
    pub(crate) env_error: Option<LeaseError>,
}

impl RedisLeaseProviderBuilder {
    /// A builder with the defaults (`redis://127.0.0.1:6379`, prefix `lease:`).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_redis::RedisLeaseProviderBuilder;
    /// let builder = RedisLeaseProviderBuilder::new();
    /// assert_eq!(builder.config().url, "redis://127.0.0.1:6379");
    /// assert_eq!(builder.config().key_prefix, "lease:");
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder from the environment: the URL from `LEASING_REDIS_URL` (unset is a
    /// `Configuration` error at build naming it: no silent default server) and the restart
    /// fence from `LEASING_REDIS_RESTART_FENCE` (e.g. `30s`; see
    /// [`restart_fence`](Self::restart_fence)).
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_redis::RedisLeaseProviderBuilder;
    /// use std::time::Duration;
    /// // Usually set by the deployment:
    /// std::env::set_var("LEASING_REDIS_URL", "redis://cache.internal:6379");
    /// std::env::set_var("LEASING_REDIS_RESTART_FENCE", "30s");
    /// let builder = RedisLeaseProviderBuilder::from_env();
    /// assert_eq!(builder.config().url, "redis://cache.internal:6379");
    /// assert_eq!(builder.config().restart_fence, Duration::from_secs(30));
    /// ```
    pub fn from_env() -> Self {
        Self::from_vars(&env_var)
    }

    pub(crate) fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut b = Self::new();
        match var(URL_ENV) {
            Some(url) => b = b.url(url),
            None => {
                b.env_error = Some(LeaseError::configuration(
                    URL_ENV,
                    format!("{URL_ENV} is not set: set it to the server's URL, e.g. redis://127.0.0.1:6379"),
                ));
            }
        }
        b.with_env_fence(var)
    }

    /// A builder in cluster mode whose node URLs come from the comma-separated
    /// `LEASING_REDIS_CLUSTER_URLS` (no cluster URLs, and so a configuration error at
    /// build, when it is unset), and the restart fence from `LEASING_REDIS_RESTART_FENCE`.
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_redis::RedisLeaseProviderBuilder;
    /// use std::time::Duration;
    /// // Usually set by the deployment:
    /// std::env::set_var("LEASING_REDIS_CLUSTER_URLS", "redis://node-a:7000,redis://node-b:7000");
    /// std::env::set_var("LEASING_REDIS_RESTART_FENCE", "30s");
    /// let builder = RedisLeaseProviderBuilder::cluster_from_env();
    /// assert_eq!(builder.config().cluster_urls, ["redis://node-a:7000", "redis://node-b:7000"]);
    /// assert_eq!(builder.config().restart_fence, Duration::from_secs(30));
    /// ```
    pub fn cluster_from_env() -> Self {
        Self::new()
            .cluster_urls(env_var(CLUSTER_URLS_ENV).unwrap_or_default().split(','))
            .with_env_fence(&env_var)
    }

    /// The server URL, `redis://[user:password@]host[:port][/db]` or `rediss://…`.
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_redis::RedisLeaseProvider;
    /// // Database 2, with a placeholder password in the URL:
    /// let url = "redis://app:not-a-real-password@cache.internal:6379/2";
    /// let builder = RedisLeaseProvider::builder().url(url);
    /// assert_eq!(builder.config().url, url);
    /// assert!(!format!("{builder:?}").contains("not-a-real-password")); // `Debug` hides it
    /// ```
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// Redis Cluster mode: URLs of some nodes of one cluster (`redis://[user:password@]host:port`
    /// or `rediss://…`, all with the same scheme and credentials); the other nodes are
    /// discovered from them. Replaces [`url`](Self::url). Blank entries are ignored; an
    /// empty list means single-server mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_redis::RedisLeaseProvider;
    /// // Seeds: the other nodes of the cluster are discovered from them.
    /// let builder = RedisLeaseProvider::builder()
    ///     .cluster_urls(["redis://node-a:7000", "redis://node-b:7000", "redis://node-c:7000"]);
    /// assert_eq!(builder.config().cluster_urls.len(), 3);
    /// ```
    pub fn cluster_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.cluster_urls = crate::config::url_list(urls);
        self
    }

    common_setters!();

    /// Validates the configuration, connects, and starts the release-notification
    /// subscriber (ended when the provider is dropped).
    ///
    /// # Errors
    /// `Configuration` naming the field; `ProviderUnavailable` if the server cannot be
    /// reached; `Unauthorized` if it rejects the credentials.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// let provider = leasing_redis::RedisLeaseProvider::builder()
    ///     .url("redis://cache.internal:6379")
    ///     .restart_fence(std::time::Duration::from_secs(30))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<crate::RedisLeaseProvider> {
        if let Some(e) = self.env_error {
            return Err(e);
        }
        crate::RedisLeaseProvider::from_config(self.config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_env_duration, warn_if_unfenced, RESTART_FENCE_ENV};
    use std::time::Duration;

    #[test]
    fn builder_setters() {
        let b = RedisLeaseProviderBuilder::new()
            .url("redis://h")
            .key_prefix("p:")
            .username("u")
            .password("p")
            .ca_cert_pem(b"x".to_vec())
            .call_timeout(Duration::from_millis(5))
            .connect_timeout(Duration::from_millis(6))
            .refresh_before_expiry(Duration::from_secs(1))
            .max_renew_batch(3);
        let c = b.config();
        assert_eq!(c.url, "redis://h");
        assert_eq!(c.key_prefix, "p:");
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.call_timeout, Duration::from_millis(5));
        assert_eq!(c.connect_timeout, Duration::from_millis(6));
        assert_eq!(c.max_renew_batch, 3);
        let e = RedisLeaseProviderBuilder::new()
            .ca_file("/nonexistent/ca.pem")
            .unwrap_err();
        assert_eq!(e.field(), Some("ca_file"));
        let _ = RedisLeaseProviderBuilder::from_env();
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn from_env_reads_the_url_and_the_restart_fence_and_has_no_default_server() {
        let b = RedisLeaseProviderBuilder::from_vars(&vars(&[
            (URL_ENV, "redis://h:1"),
            (RESTART_FENCE_ENV, "30s"),
        ]));
        assert!(b.env_error.is_none());
        assert_eq!(b.config.url, "redis://h:1");
        assert_eq!(b.config.restart_fence, Duration::from_secs(30));
        let b = RedisLeaseProviderBuilder::from_vars(&vars(&[(RESTART_FENCE_ENV, "1500ms")]));
        assert_eq!(b.config.restart_fence, Duration::from_millis(1500));
        let e = b.env_error.expect("no URL is an error, not 127.0.0.1:6379");
        assert_eq!(e.field(), Some(URL_ENV));
        let b = RedisLeaseProviderBuilder::from_vars(&vars(&[
            (URL_ENV, "redis://h"),
            (RESTART_FENCE_ENV, "soon"),
        ]));
        let e = b.env_error.expect("a malformed fence is an error");
        assert_eq!(e.field(), Some(RESTART_FENCE_ENV));
        assert!(e.message().contains("\"soon\""), "{e}");
        for (s, d) in [
            ("0", Some(Duration::ZERO)),
            ("2m", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            ("0.5s", Some(Duration::from_millis(500))),
            ("5", None),
            ("s", None),
            ("-1s", None),
        ] {
            assert_eq!(parse_env_duration(s), d, "{s}");
        }
    }

    /// One warning when the fence is off, none when it is set.
    #[test]
    fn an_unfenced_provider_warns() {
        let logs = leasing_testkit::logs::Captured::default();
        let _g = logs.install();
        warn_if_unfenced(&RedisConfig::default());
        let fenced = RedisConfig {
            restart_fence: Duration::from_secs(30),
            ..RedisConfig::default()
        };
        warn_if_unfenced(&fenced);
        let seen = logs.at(tracing::Level::WARN);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("restart fence is off"), "{seen:?}");
        assert!(seen[0].contains(RESTART_FENCE_ENV), "{seen:?}");
    }

    #[tokio::test]
    async fn a_bad_environment_fails_the_build_naming_the_variable() {
        let mut b = RedisLeaseProviderBuilder::new();
        b.env_error = Some(LeaseError::configuration(URL_ENV, "not set"));
        let e = b.build().await.unwrap_err();
        assert_eq!(e.field(), Some(URL_ENV));
        let e = crate::RedlockLeaseProviderBuilder::new()
            .with_env_fence(&vars(&[(RESTART_FENCE_ENV, "x")]))
            .urls(["redis://a", "redis://b", "redis://c"])
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.field(), Some(RESTART_FENCE_ENV));
    }

    #[test]
    fn cluster_urls_are_trimmed_validated_and_redacted() {
        let b = RedisLeaseProviderBuilder::new()
            .url("http://ignored-in-cluster-mode")
            .cluster_urls([" redis://u:hunter2@a:1 ", "", "redis://u:hunter2@b:2"]);
        let c = b.config();
        assert_eq!(
            c.cluster_urls,
            vec!["redis://u:hunter2@a:1", "redis://u:hunter2@b:2"]
        );
        // The single-server url is not used, nor validated, in cluster mode.
        c.validate().unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("redis://***@b:2"), "{d}");
        let bad = RedisConfig {
            cluster_urls: vec!["redis://a:1".into(), "tcp://b:2".into()],
            ..RedisConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), Some("url"));
        let mixed = RedisConfig {
            cluster_urls: vec!["redis://a:1".into(), "rediss://b:2".into()],
            ..RedisConfig::default()
        };
        let want = if cfg!(feature = "tls") {
            "cluster_urls"
        } else {
            "url"
        };
        assert_eq!(mixed.validate().unwrap_err().field(), Some(want));
        let ca_without_tls = RedisConfig {
            cluster_urls: vec!["redis://a:1".into()],
            ca_cert_pem: Some(b"pem".to_vec()),
            ..RedisConfig::default()
        };
        assert_eq!(
            ca_without_tls.validate().unwrap_err().field(),
            Some("ca_cert_pem")
        );
        assert!(RedisLeaseProviderBuilder::new()
            .cluster_urls(Vec::<String>::new())
            .config()
            .cluster_urls
            .is_empty());
    }
}
