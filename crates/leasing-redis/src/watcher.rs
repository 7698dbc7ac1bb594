//! Learning of a restart at once: an idle pub/sub connection per server that notices the
//! moment the server closes it (a restart, a crash, a failover that drops clients).
//!
//! While the server is away the node is told to check who the server is before its next
//! call. As soon as the server answers again, the core is asked to renew every lease now
//! ([`LeaseProvider::renew_now_signals`](leasing_abstractions::LeaseProvider::renew_now_signals)):
//! each renewal first asks the server who it is, and a grant made by the server that went
//! away is reported `Lost` within a round trip of its return, instead of at the next
//! scheduled renewal (up to a renewal interval later). A network partition closes nothing,
//! so it is left to the renewals' own deadlines, as before.

use crate::config::RedisConfig;
use crate::identity::Identity;
use crate::subscriber::pubsub;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The first pause between attempts to reach a server that went away …
const MIN_PAUSE: Duration = Duration::from_millis(10);
/// … doubling up to this: how late, at most, a return is noticed.
const MAX_PAUSE: Duration = Duration::from_millis(25);

/// Watches the server at `url` for as long as the task runs.
pub(crate) async fn watch(
    config: RedisConfig,
    url: String,
    identity: Arc<Identity>,
    renew_now: broadcast::Sender<()>,
) {
    let mut away = false;
    let mut pause = MIN_PAUSE;
    loop {
        match pubsub(&config, &url).await {
            Ok(conn) => {
                // The connection's reader runs all the time, so its end is noticed at once;
                // nothing is subscribed (and nothing ever arrives).
                pause = MIN_PAUSE;
                if away {
                    identity.suspect();
                    tracing::debug!("a Redis server is back: renewing every lease now");
                    // No receiver (no manager yet) is fine: nothing to renew.
                    let _ = renew_now.send(());
                }
                let mut messages = conn.into_on_message();
                while messages.next().await.is_some() {}
                identity.suspect();
                away = true;
            }
            Err(e) => {
                tracing::trace!(error = %e, "a Redis server is not answering the watcher");
                identity.suspect();
                away = true;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
