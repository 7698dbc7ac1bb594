//! Redlock's builder: the server list, the settings shared with the single-server builder,
//! and the build that needs a majority to answer.

use super::*;

/// Environment variable [`RedlockLeaseProviderBuilder::from_env`] reads the URLs from
/// (comma-separated).
pub const URLS_ENV: &str = "LEASING_REDLOCK_URLS";

/// Builds a [`RedlockLeaseProvider`].
#[derive(Clone, Default)]
#[must_use]
pub struct RedlockLeaseProviderBuilder {
    urls: Vec<String>,
    config: RedisConfig,
    /// What `from_env()` found wrong, returned by `build`.
    env_error: Option<LeaseError>,
}

/// Passwords in the URLs are redacted, as in [`RedisConfig`]'s `Debug`.
impl std::fmt::Debug for RedlockLeaseProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|u| crate::config::redact_url(u))
            .collect();
        f.debug_struct("RedlockLeaseProviderBuilder")
            .field("urls", &urls)
            .field("config", &self.config)
            .field("env_error", &self.env_error)
            .finish()
    }
}

impl RedlockLeaseProviderBuilder {
    /// A builder without servers.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// use leasing_redis::RedlockLeaseProviderBuilder;
    /// let provider = RedlockLeaseProviderBuilder::new()
    ///     .urls(["redis://lock-a:6379", "redis://lock-b:6379", "redis://lock-c:6379"])
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder over the comma-separated URLs of `LEASING_REDLOCK_URLS`, with the
    /// restart fence from `LEASING_REDIS_RESTART_FENCE`.
    ///
    /// # Examples
    ///
    /// ```
    /// use leasing_redis::RedlockLeaseProviderBuilder;
    /// use std::time::Duration;
    /// // Usually set by the deployment:
    /// std::env::set_var("LEASING_REDLOCK_URLS", "redis://lock-a,redis://lock-b,redis://lock-c");
    /// std::env::set_var("LEASING_REDIS_RESTART_FENCE", "30s");
    /// let builder = RedlockLeaseProviderBuilder::from_env();
    /// assert_eq!(builder.config().restart_fence, Duration::from_secs(30));
    /// ```
    pub fn from_env() -> Self {
        Self::new()
            .urls(
                crate::config::env_var(URLS_ENV)
                    .unwrap_or_default()
                    .split(','),
            )
            .with_env_fence(&crate::config::env_var)
    }

    /// The servers (independent instances, not replicas). Every client must use the same
    /// set; order does not matter (they are sorted).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// // Five independent servers (not replicas): a lease needs three of them.
    /// let servers = ["redis://lock-a:6379", "redis://lock-b:6379", "redis://lock-c:6379",
    ///                "redis://lock-d:6379", "redis://lock-e:6379"];
    /// let provider = leasing_redis::RedlockLeaseProvider::builder().urls(servers).build().await?;
    /// assert_eq!(provider.quorum(), 3);
    /// # Ok(()) }
    /// ```
    pub fn urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.urls = crate::config::url_list(urls);
        self
    }

    common_setters!();

    /// Validates the configuration and creates one lazily connected client per server,
    /// then pings every server in parallel within the connect timeout: settings a server
    /// refuses are found now, and a majority must answer. A minority down at start-up
    /// does not stop the build (that is what Redlock is for: the operations report it and
    /// the server is used once it is back).
    ///
    /// # Errors
    /// `Configuration` for no servers, a duplicate or malformed URL, a bad field, or a
    /// server that refuses the settings (a database index it does not have);
    /// `ProviderUnavailable` when fewer than a majority answered, naming each server that
    /// did not and why.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> leasing_abstractions::Result<()> {
    /// let provider = leasing_redis::RedlockLeaseProvider::builder()
    ///     .urls(["redis://lock-a:6379", "redis://lock-b:6379", "redis://lock-c:6379"])
    ///     .restart_fence(std::time::Duration::from_secs(30))
    ///     .build()
    ///     .await?;
    /// assert_eq!(provider.quorum(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<RedlockLeaseProvider> {
        let provider = self.connect_lazily().await?;
        let limit = provider.config.connect_timeout;
        let probes =
            futures::future::try_join_all(provider.nodes.iter().map(|n| n.probe(limit))).await?;
        let down: Vec<String> = probes
            .iter()
            .zip(&provider.urls)
            .filter_map(|(p, url)| p.as_ref().map(|e| format!("{url}: {e}")))
            .collect();
        // A minority down is what Redlock is for; no majority answering fails the build now,
        // like a dead server on every other backend.
        let answered = provider.nodes.len() - down.len();
        if answered < provider.quorum {
            // Every server that failed failed the same way (refused the credentials,
            // answered something unexpected): that is the error; else "unavailable".
            let mut kinds = probes.iter().flatten().map(LeaseError::kind);
            let first = kinds.next().unwrap_or(ErrorKind::ProviderUnavailable);
            let kind = if kinds.all(|k| k == first) {
                first
            } else {
                ErrorKind::ProviderUnavailable
            };
            return Err(LeaseError::new(kind, format!(
                "only {answered} of {} Redis servers answered within {limit:?}, a majority ({}) is needed: {}",
                provider.nodes.len(),
                provider.quorum,
                down.join("; ")
            )));
        }
        Ok(provider)
    }

    /// Validates and creates the clients, without asking any server anything.
    pub(super) async fn connect_lazily(mut self) -> Result<RedlockLeaseProvider> {
        if let Some(e) = self.env_error.take() {
            return Err(e);
        }
        if self.urls.is_empty() {
            return Err(LeaseError::configuration(
                "urls",
                "at least one server is needed (an odd number ≥ 3 is recommended)",
            ));
        }
        self.urls.sort();
        if self.urls.windows(2).any(|w| w[0] == w[1]) {
            return Err(LeaseError::configuration(
                "urls",
                "the same server is listed twice",
            ));
        }
        self.config.url = self.urls[0].clone();
        self.config = self.config.saturated();
        self.config.validate()?;
        crate::config::warn_if_unfenced(&self.config);
        let releases = Arc::new(Releases::new());
        let renew_now = broadcast::channel(crate::provider::RENEW_NOW_CAPACITY).0;
        let mut nodes = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            nodes.push(Arc::new(
                Node::connect(&self.config, url, releases.clone(), &renew_now, true).await?,
            ));
        }
        Ok(RedlockLeaseProvider {
            quorum: nodes.len() / 2 + 1,
            nodes,
            urls: self.urls.iter().map(|u| redact_url(u)).collect(),
            config: self.config,
            owner: leasing_abstractions::owner_id(),
            releases,
            renew_now,
        })
    }
}
