//! Release notifications without fan-out cost.
//!
//! * Releases are announced per name, on `{prefix}{<name>}:released`, and only when a
//!   contender found the lease held (the acquire script marks the hash `waited`), so an
//!   uncontended acquire/release publishes nothing.
//! * A provider subscribes lazily: nothing while no [`broadcast::Receiver`] exists; the
//!   channels of the names its own `try_acquire` recently found held once
//!   [`release_notifications`](leasing_abstractions::LeaseProvider::release_notifications)
//!   hands out a receiver (the core asks only after an attempt found the name held); and it
//!   unsubscribes within [`CHECK_PERIOD`] of the last receiver being dropped.
//! * Once a channel is subscribed (also after a reconnect) the name is sent to the receivers
//!   once, so a release that happened before the subscription was active is not waited out:
//!   the waiter simply tries again.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// How often an active subscriber checks whether its receivers are gone.
pub(crate) const CHECK_PERIOD: Duration = Duration::from_millis(500);
/// A name not found held for this long is no longer subscribed (waiters try again at least
/// every 1.5 × `acquire_retry_interval`, and each failed try refreshes the name).
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(30);
/// Above this many remembered names, stale ones are dropped when a new one is added.
const PRUNE_ABOVE: usize = 256;

/// The release notifications of one provider, shared by the subscribers of its servers.
#[derive(Debug)]
pub(crate) struct Releases {
    tx: broadcast::Sender<String>,
    /// Names found held by this provider's `try_acquire`, with when that last happened.
    contended: Mutex<HashMap<String, Instant>>,
    /// Bumped when a subscriber may have something new to subscribe.
    changed: watch::Sender<()>,
}

impl Releases {
    pub(crate) fn new() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            contended: Mutex::new(HashMap::new()),
            changed: watch::channel(()).0,
        }
    }

    fn names(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // The map stays consistent whatever a panicking holder did (single inserts/removes).
        self.contended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `try_acquire` found `name` held.
    pub(crate) fn contended(&self, name: &str) {
        let now = Instant::now();
        let mut names = self.names();
        if let Some(seen) = names.get_mut(name) {
            *seen = now;
            return;
        }
        if names.len() >= PRUNE_ABOVE {
            names.retain(|_, seen| now.duration_since(*seen) < FORGET_AFTER);
        }
        names.insert(name.to_owned(), now);
        drop(names);
        if self.tx.receiver_count() > 0 {
            self.changed.send_replace(());
        }
    }

    /// A receiver; starts the subscriptions of the contended names.
    pub(crate) fn receiver(&self) -> broadcast::Receiver<String> {
        let rx = self.tx.subscribe();
        self.changed.send_replace(());
        rx
    }

    /// Wakes the waiters of `name` (a release announcement or a fresh subscription).
    pub(crate) fn wake(&self, name: String) {
        // No receiver left is not an error: the subscriber unsubscribes at its next check.
        let _ = self.tx.send(name);
    }

    /// The names that should be subscribed now: none while nobody listens.
    pub(crate) fn wanted(&self) -> HashSet<String> {
        if self.tx.receiver_count() == 0 {
            return HashSet::new();
        }
        let now = Instant::now();
        let mut names = self.names();
        names.retain(|_, seen| now.duration_since(*seen) < FORGET_AFTER);
        names.keys().cloned().collect()
    }

    /// A signal for one subscriber: changes whenever [`wanted`](Self::wanted) may have grown.
    pub(crate) fn watch(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.names().len()
    }
}

/// What a subscriber must change: channels to add and to drop.
pub(crate) fn plan(
    wanted: &HashSet<String>,
    subscribed: &HashSet<String>,
) -> (Vec<String>, Vec<String>) {
    let add = wanted.difference(subscribed).cloned().collect();
    let remove = subscribed.difference(wanted).cloned().collect();
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wants_names_only_while_someone_listens() {
        let r = Releases::new();
        let mut w = r.watch();
        w.borrow_and_update();
        r.contended("a");
        assert!(r.wanted().is_empty(), "no receiver, nothing to subscribe");
        assert!(!w.has_changed().unwrap(), "no receiver, no signal");
        let mut rx = r.receiver();
        assert!(w.has_changed().unwrap());
        w.borrow_and_update();
        assert_eq!(r.wanted(), HashSet::from(["a".to_owned()]));
        r.contended("b");
        assert!(w.has_changed().unwrap(), "a new name while listened to");
        w.borrow_and_update();
        r.contended("b");
        assert!(
            !w.has_changed().unwrap(),
            "a known name needs no new subscription"
        );
        r.wake("b".into());
        assert_eq!(rx.recv().await.unwrap(), "b");
        // Names not found held for FORGET_AFTER are dropped.
        tokio::time::advance(FORGET_AFTER).await;
        r.contended("c");
        assert_eq!(r.wanted(), HashSet::from(["c".to_owned()]));
        drop(rx);
        assert!(r.wanted().is_empty(), "the last receiver is gone");
        r.wake("c".into());
    }

    #[tokio::test(start_paused = true)]
    async fn the_name_map_stays_bounded() {
        let r = Releases::new();
        for i in 0..PRUNE_ABOVE {
            r.contended(&format!("n{i}"));
        }
        assert_eq!(r.remembered(), PRUNE_ABOVE);
        r.contended("fresh-but-full");
        assert_eq!(r.remembered(), PRUNE_ABOVE + 1, "recent names are kept");
        tokio::time::advance(FORGET_AFTER).await;
        r.contended("later");
        assert_eq!(
            r.remembered(),
            1,
            "stale names are dropped when a new one comes"
        );
    }

    #[test]
    fn plans_the_difference() {
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        let (mut add, remove) = plan(&set(&["a", "b"]), &set(&["b", "c"]));
        add.sort();
        assert_eq!(add, vec!["a".to_owned()]);
        assert_eq!(remove, vec!["c".to_owned()]);
    }
}
