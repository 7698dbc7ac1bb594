//! Token credentials (Microsoft Entra ID) as redis-rs streaming credentials.

use leasing_abstractions::{BoxError, BoxFuture};
use redis::RedisResult;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A credential for token authentication (Microsoft Entra ID on Azure Cache for Redis):
/// the username (the identity's object id) and an access token used as the password.
#[derive(Clone)]
pub struct AccessToken {
    /// The user the token authenticates (for Entra ID: the object id of the identity).
    pub username: String,
    /// The token, sent as the `AUTH` password. Never printed.
    pub token: String,
    /// When the token stops being accepted.
    pub expires_at: SystemTime,
}

impl AccessToken {
    /// A token for `username` valid until `expires_at`.
    pub fn new(
        username: impl Into<String>,
        token: impl Into<String>,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            username: username.into(),
            token: token.into(),
            expires_at,
        }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("username", &self.username)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A source of access tokens. Connections authenticate with the current token and
/// re-authenticate with a fresh one [`refresh_before_expiry`](crate::RedisLeaseProviderBuilder::refresh_before_expiry)
/// before it expires; a reconnect asks for a fresh token too.
///
/// For Microsoft Entra ID, implement it over `azure_identity`'s `TokenCredential` with the
/// scope `https://redis.azure.com/.default` and the identity's object id as the username.
///
/// (The method returns a boxed future rather than using `async_trait`, like the core's
/// provider trait, so branch coverage of implementations can be measured.)
pub trait TokenCredential: Send + Sync + fmt::Debug + 'static {
    /// A token that is valid now.
    fn get_token(&self) -> BoxFuture<'_, std::result::Result<AccessToken, BoxError>>;
}
/// When to fetch the next token for one that expires at `expires_at`.
pub(crate) fn refresh_delay(expires_at: SystemTime, before: Duration, now: SystemTime) -> Duration {
    let remaining = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
    let wait = if remaining > before.saturating_mul(2) {
        remaining - before
    } else {
        remaining / 2
    };
    wait.max(Duration::from_millis(100))
}

/// Adapts a [`TokenCredential`] to redis-rs' streaming credentials: the first token at
/// once, then a fresh one `refresh_before_expiry` before each expires.
pub(crate) struct CredentialStream {
    pub(crate) credential: Arc<dyn TokenCredential>,
    pub(crate) before: Duration,
}

impl redis::StreamingCredentialsProvider for CredentialStream {
    fn subscribe(
        &self,
    ) -> Pin<Box<dyn futures::Stream<Item = RedisResult<redis::BasicAuth>> + Send + 'static>> {
        let credential = self.credential.clone();
        let before = self.before;
        Box::pin(futures::stream::unfold(None::<Duration>, move |wait| {
            let credential = credential.clone();
            async move {
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
                match credential.get_token().await {
                    Ok(t) => {
                        let next = refresh_delay(t.expires_at, before, SystemTime::now());
                        Some((Ok(redis::BasicAuth::new(t.username, t.token)), Some(next)))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "token credential failed; retrying in 1 s");
                        let err: redis::RedisError = (
                            redis::ErrorKind::AuthenticationFailed,
                            "token credential failed",
                            e.to_string(),
                        )
                            .into();
                        Some((Err(err), Some(Duration::from_secs(1))))
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_timing() {
        let now = SystemTime::now();
        let before = Duration::from_secs(10);
        assert_eq!(
            refresh_delay(now + Duration::from_secs(60), before, now),
            Duration::from_secs(50)
        );
        assert_eq!(
            refresh_delay(now + Duration::from_secs(4), before, now),
            Duration::from_secs(2)
        );
        assert_eq!(refresh_delay(now, before, now), Duration::from_millis(100));
    }
}
