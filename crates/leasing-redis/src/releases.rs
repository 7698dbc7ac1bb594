//! Release notifications without fan-out cost.
//!
//! * Releases are announced per name, on `{prefix}{<name>}:released`, and only when a
//!   contender found the lease held (the acquire script marks the hash `waited`), so an
//!   uncontended acquire/release publishes nothing.
//! * A provider subscribes lazily, per name: a name's channel is subscribed while a
//!   [`broadcast::Receiver`] handed out by
//!   [`release_notifications(name)`](leasing_abstractions::LeaseProvider::release_notifications)
//!   for it lives (the core asks only after an attempt found the name held), and
//!   unsubscribed within [`CHECK_PERIOD`] of the last one being dropped.
//! * Once a channel is subscribed (also after a reconnect) the name is sent to its
//!   receivers once, so a release that happened before the subscription was active is not
//!   waited out: the waiter simply tries again.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How often an active subscriber checks whether its receivers are gone.
pub(crate) const CHECK_PERIOD: Duration = Duration::from_millis(500);

/// The release notifications of one provider, shared by the subscribers of its servers.
#[derive(Debug)]
pub(crate) struct Releases {
    /// One channel per name somebody waits for.
    names: Mutex<HashMap<String, broadcast::Sender<String>>>,
    /// Bumped when a subscriber may have something new to subscribe.
    changed: watch::Sender<()>,
}

impl Releases {
    pub(crate) fn new() -> Self {
        Self {
            names: Mutex::new(HashMap::new()),
            changed: watch::channel(()).0,
        }
    }

    fn names(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<String>>> {
        // The map stays consistent whatever a panicking holder did (single inserts/removes).
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver of `name`'s releases; starts its subscription.
    pub(crate) fn receiver(&self, name: &str) -> broadcast::Receiver<String> {
        let rx = self
            .names()
            .entry(name.to_owned())
            .or_insert_with(|| broadcast::channel(16).0)
            .subscribe();
        self.changed.send_replace(());
        rx
    }

    /// Wakes the waiters of `name` (a release announcement or a fresh subscription).
    pub(crate) fn wake(&self, name: String) {
        if let Some(tx) = self.names().get(&name) {
            // Receivers gone meanwhile: the subscriber unsubscribes at its next check.
            let _ = tx.send(name);
        }
    }

    /// The names that should be subscribed now: those with a live receiver.
    pub(crate) fn wanted(&self) -> HashSet<String> {
        let mut names = self.names();
        names.retain(|_, tx| tx.receiver_count() > 0);
        names.keys().cloned().collect()
    }

    /// A signal for one subscriber: changes whenever [`wanted`](Self::wanted) may have grown.
    pub(crate) fn watch(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
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

    #[tokio::test]
    async fn wants_exactly_the_names_with_live_receivers() {
        let r = Releases::new();
        let mut w = r.watch();
        w.borrow_and_update();
        assert!(r.wanted().is_empty(), "nobody waits, nothing to subscribe");
        r.wake("a".into()); // nobody to wake: not an error
        let mut a = r.receiver("a");
        assert!(
            w.has_changed().unwrap(),
            "a new waiter signals the subscribers"
        );
        w.borrow_and_update();
        let b1 = r.receiver("b");
        let b2 = r.receiver("b");
        assert_eq!(r.wanted(), HashSet::from(["a".to_owned(), "b".to_owned()]));
        r.wake("a".into());
        assert_eq!(a.recv().await.unwrap(), "a");
        assert!(a.try_recv().is_err(), "a's receiver hears only a");
        drop(b1);
        assert!(r.wanted().contains("b"), "b still has a waiter");
        drop(b2);
        assert_eq!(
            r.wanted(),
            HashSet::from(["a".to_owned()]),
            "the last receiver of b is gone"
        );
        drop(a);
        assert!(r.wanted().is_empty());
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
