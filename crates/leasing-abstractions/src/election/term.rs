//! A term as the leader ([`Leadership`], [`Term`]) and a watch on the current leader.

use super::*;

/// This process's term as the leader. Dropping it resigns (the lease is released).
#[must_use = "dropping a Leadership resigns at once; bind it for as long as you lead"]
pub struct Leadership {
    pub(super) lease: Lease,
    pub(super) identity: String,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("election", &self.lease.name())
            .field("identity", &self.identity)
            .field("fencing_token", &self.lease.fencing_token())
            .field("state", &self.lease.state())
            .finish()
    }
}

impl Leadership {
    /// The term's fencing token: pass it with every write the leader makes, and have the
    /// resource refuse tokens smaller than the largest it has seen.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this candidate still leads, answered from the safety deadline at the moment
    /// of asking (see [`Lease::is_held`]).
    pub fn is_leader(&self) -> bool {
        self.lease.is_held()
    }

    /// Resolves when the lead is lost (at the safety deadline at the latest), with the
    /// reason; never if the candidate resigns instead. Cancel-safe.
    pub async fn lost(&self) -> LostReason {
        self.lease.lost().await
    }

    /// A token cancelled when the term ends (lost, resigned or dropped); each call returns
    /// a new child token.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.lease.cancellation_token()
    }

    /// The lease behind the term (its state, events, remaining validity).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Hands the lead over at once: releases the lease, which wakes waiting candidates
    /// where the backend has release notifications.
    ///
    /// # Errors
    /// The release error; the term counts as ended either way (the backend expires the
    /// lease after its duration).
    pub async fn resign(self) -> Result<()> {
        self.lease.release().await
    }
}

/// One term as [`Election::run`] hands it to the leader's work.
#[derive(Debug, Clone)]
pub struct Term {
    pub(super) fencing_token: u64,
    pub(super) lease_id: String,
    pub(super) token: CancellationToken,
}

impl Term {
    /// The term's fencing token.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// The lease id of the term.
    pub fn lease_id(&self) -> &str {
        &self.lease_id
    }

    /// A token cancelled when the term ends (for work spawned by the leader).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.token.child_token()
    }
}

/// Leader changes of an election; see [`Election::observe`]. Clones share one poller.
#[derive(Debug, Clone)]
pub struct LeaderWatch {
    pub(super) rx: watch::Receiver<Option<Leader>>,
    pub(super) _task: Arc<AbortOnDrop>,
}

impl LeaderWatch {
    /// The leader as last seen.
    pub fn current(&self) -> Option<Leader> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change of leader (a new term, or no leader) and returns it.
    ///
    /// # Cancellation safety
    /// Cancel-safe: a change that arrives while the future is dropped is returned by the
    /// next call.
    pub async fn changed(&mut self) -> Option<Leader> {
        // The sender lives in the poller, which runs while this watch (holding its
        // abort guard) exists, so `changed` cannot fail here.
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.rx.borrow_and_update().clone()
    }
}

#[derive(Debug)]
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
