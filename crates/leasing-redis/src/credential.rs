//! Token credentials (Microsoft Entra ID) as redis-rs streaming credentials.

use crate::config::{refresh_delay, TokenCredential};
use redis::RedisResult;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
