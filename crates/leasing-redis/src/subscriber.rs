//! The release subscriber: one pub/sub connection per server (or per cluster) that follows
//! [`Releases::wanted`].

use crate::config::RedisConfig;
use crate::connection::client;
use crate::error::{map_err, timeout, Op};
use crate::releases::{plan, Releases, CHECK_PERIOD};
use futures::StreamExt;
use leasing_abstractions::{Backoff, LeaseError, Result};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The channel a release of `name` is announced on (hash-tagged like the lease's keys).
pub(crate) fn channel(prefix: &str, name: &str) -> String {
    format!("{prefix}{{{name}}}:released")
}

/// The pauses before a new subscription attempt: from 50 ms after a dropped subscription
/// or the first failure, doubling up to 1 s while attempts fail, jittered.
const PAUSES: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// Keeps one server's subscriptions equal to [`Releases::wanted`]: no connection until a
/// waiter asks, reconnecting (with a fresh token when a credential is configured) whenever
/// the subscription drops while wanted.
///
/// `urls` are alternatives (the nodes of a cluster, where a PUBLISH on any node reaches
/// all): after a failure or a dropped subscription the next one is tried.
pub(crate) async fn subscriber(config: RedisConfig, urls: Vec<String>, releases: Arc<Releases>) {
    let mut changed = releases.watch();
    let mut attempt = 0u32;
    // Never empty: one URL, or the cluster's seeds (validated non-empty).
    let mut next = 0;
    loop {
        while releases.wanted().is_empty() {
            // The sender lives in `releases`, which this task holds: this cannot fail.
            let _ = changed.changed().await;
        }
        let url = &urls[next % urls.len()];
        next += 1;
        match pubsub(&config, url).await {
            Ok(conn) => {
                attempt = 0;
                serve(conn, &config.key_prefix, &releases, &mut changed).await;
                tracing::debug!("release subscription dropped; reconnecting when wanted");
            }
            Err(e) => tracing::debug!(error = %e, "release subscription failed; retrying"),
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(PAUSES.random(attempt)).await;
    }
}

/// Subscribes and unsubscribes as waiters come and go, forwarding announcements, until the
/// connection drops.
async fn serve(
    conn: redis::aio::PubSub,
    prefix: &str,
    releases: &Releases,
    changed: &mut watch::Receiver<()>,
) {
    let (mut sink, mut stream) = conn.split();
    let mut subscribed: HashSet<String> = HashSet::new();
    loop {
        let (add, remove) = plan(&releases.wanted(), &subscribed);
        if !add.is_empty() {
            let channels: Vec<String> = add.iter().map(|n| channel(prefix, n)).collect();
            if sink.subscribe(&channels).await.is_err() {
                return;
            }
            for name in add {
                // Anything released before the subscription was active went unheard:
                // its waiters try again now.
                releases.wake(name.clone());
                subscribed.insert(name);
            }
        }
        if !remove.is_empty() {
            let channels: Vec<String> = remove.iter().map(|n| channel(prefix, n)).collect();
            if sink.unsubscribe(&channels).await.is_err() {
                return;
            }
            for name in &remove {
                subscribed.remove(name);
            }
        }
        // While subscribed, look every CHECK_PERIOD for receivers that are gone (dropping a
        // receiver signals nothing); idle, only a new waiter or the connection matters.
        let check = tokio::time::sleep(if subscribed.is_empty() {
            Duration::MAX / 4
        } else {
            CHECK_PERIOD
        });
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    if let Ok(name) = msg.get_payload::<String>() {
                        releases.wake(name);
                    }
                }
                None => return,
            },
            _ = changed.changed() => {}
            () = check => {}
        }
    }
}

pub(crate) async fn pubsub(config: &RedisConfig, url: &str) -> Result<redis::aio::PubSub> {
    let auth = match &config.credential {
        Some(c) => Some(
            c.get_token()
                .await
                .map(|t| (t.username, t.token))
                .map_err(|e| {
                    LeaseError::new(
                        leasing_abstractions::ErrorKind::Unauthorized,
                        format!("token credential failed: {e}"),
                    )
                })?,
        ),
        None => None,
    };
    let client = client(config, url, auth)?;
    let limit = config.connect_timeout;
    match tokio::time::timeout(limit, client.get_async_pubsub()).await {
        Ok(r) => r.map_err(|e| map_err(e, Op::Connect, None)),
        Err(_) => Err(timeout(Op::Connect, None, limit)),
    }
}
