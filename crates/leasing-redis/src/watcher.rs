//! Learning of a restart at once: an idle pub/sub connection per server that notices the
//! moment the server closes it (a restart, a crash, a failover that drops clients).
//!
//! While the server is away the node is told to check who the server is before its next
//! call. As soon as the server answers again, the node's command connection is refreshed
//! (a `PING` on it: the connection manager learns of a dead connection only from a command
//! that fails on it, and reconnects then) and the core is asked to renew every lease now
//! ([`LeaseProvider::renew_now_signals`](leasing_abstractions::LeaseProvider::renew_now_signals)):
//! each renewal first asks the server who it is, on a live connection, and a grant made by
//! the server that went away is reported `Lost` within a round trip of its return, instead
//! of at the next scheduled renewal (up to a renewal interval later), or at the core's
//! next retry when the renewal had met the dead connection. A network partition closes
//! nothing, so it is left to the renewals' deadlines.

use crate::config::RedisConfig;
use crate::identity::Identity;
use crate::subscriber::pubsub;
use futures::StreamExt;
use leasing_abstractions::Backoff;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The pauses between attempts to reach a server that went away: from 10 ms, doubling up
/// to 25 ms (how late, at most, a return is noticed), jittered.
const PAUSES: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(25));

/// Watches the server at `url` for as long as the task runs; `commands` is the node's
/// command connection.
pub(crate) async fn watch(
    config: RedisConfig,
    url: String,
    identity: Arc<Identity>,
    renew_now: broadcast::Sender<()>,
    mut commands: ConnectionManager,
) {
    let mut away = false;
    let mut attempt = 0u32;
    loop {
        match pubsub(&config, &url).await {
            Ok(conn) => {
                // The connection's reader runs all the time, so its end is noticed at once;
                // nothing is subscribed (and nothing ever arrives).
                attempt = 0;
                if away {
                    identity.suspect();
                    // Fails when the command connection is the dead one (the manager then
                    // reconnects, and the renewals below wait for that connection).
                    let _ = redis::cmd("PING")
                        .query_async::<String>(&mut commands)
                        .await;
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
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(PAUSES.random(attempt)).await;
    }
}
