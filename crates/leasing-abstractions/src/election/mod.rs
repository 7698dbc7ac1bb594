//! Leader election on a lease: at most one leader per name at a time, fenced by the
//! lease's token, and told it no longer leads at its safety deadline, before the backend
//! can let any other candidate win.
//!
//! ```
//! # use leasing_abstractions::{election::Election, InMemoryLeaseProvider, LeaseManager, LeaseOptions};
//! # use std::{sync::Arc, time::Duration};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> leasing_abstractions::Result<()> {
//! let manager = LeaseManager::new(Arc::new(InMemoryLeaseProvider::new()), LeaseOptions::default())?;
//! let election = Election::builder(&manager, "scheduler")
//!     .identity("worker-1")
//!     .lease_duration(Duration::from_secs(15))
//!     .build()?;
//! let leadership = election.campaign().await?; // waits until elected
//! assert_eq!(election.leader().await?.unwrap().identity.as_deref(), Some("worker-1"));
//! // Do the leader's work, stopping when the lead is lost:
//! tokio::select! {
//!     reason = leadership.lost() => eprintln!("no longer the leader: {reason}"),
//!     () = async { /* work, passing leadership.fencing_token() to what it writes */ } => {}
//! }
//! leadership.resign().await?; // hands over at once
//! # Ok(()) }
//! ```
//!
//! How it behaves when things go wrong:
//!
//! - A leader that cannot renew (backend down, network cut, process paused) stops being
//!   the leader at its *safety deadline*: `min(duration × threshold, duration − drift)`
//!   after its last successful renewal was sent, on the local monotonic clock. Then
//!   [`Leadership::lost`] resolves, its [`cancellation_token`](Leadership::cancellation_token)
//!   is cancelled and an [`ElectionEvent::Lost`] is sent. The backend keeps the name for
//!   the whole duration, so no other candidate can be elected before that.
//! - A process paused past its deadline resumes to [`Leadership::is_leader`] `== false`;
//!   what it wrote meanwhile carries an old fencing token, which a fenced resource
//!   refuses once the next leader has written (see `docs/recipes.md`).
//! - [`ElectionEvent::Lost`] and [`ElectionEvent::Resigned`] are sent only for a term
//!   this candidate won: a candidate that never led never hears "stopped leading".

use crate::contract::{LeaseExpiry, LeaseInfo};
use crate::error::{LeaseError, Result};
use crate::health::{HealthReport, HealthStatus};
use crate::lease::{Lease, LeaseShared, LeaseState, LostReason};
use crate::manager::LeaseManager;
use crate::metadata::{validate_metadata, Metadata};
use crate::options::{AcquireOptions, LeaseDuration};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

mod builder;
mod term;

pub use builder::ElectionBuilder;
use term::AbortOnDrop;
pub use term::{LeaderWatch, Leadership, Term};

/// The metadata key under which a candidate's identity is stored with its lease.
pub const IDENTITY_KEY: &str = "identity";

/// A leader election for one name, shared by the candidates of this process (cheap to
/// clone). Build it with [`Election::builder`].
#[derive(Clone)]
pub struct Election {
    inner: Arc<Inner>,
}

struct Inner {
    manager: LeaseManager,
    name: String,
    identity: String,
    duration: Duration,
    retry_period: Duration,
    metadata: Metadata,
    recampaign: bool,
    events: broadcast::Sender<ElectionEvent>,
    /// The lease of the term this process leads (or led last), while its handle lives.
    current: Mutex<Weak<LeaseShared>>,
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.inner.name)
            .field("identity", &self.inner.identity)
            .field("lease_duration", &self.inner.duration)
            .field("retry_period", &self.inner.retry_period)
            .field("recampaign", &self.inner.recampaign)
            .finish_non_exhaustive()
    }
}

/// The current leader as the backend reports it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's identity ([`IDENTITY_KEY`] in its metadata), if it set one.
    pub identity: Option<String>,
    /// The fencing token of its term: strictly greater than every earlier term's.
    pub fencing_token: u64,
    /// The lease id of its term, when the backend exposes it.
    pub lease_id: Option<String>,
    /// When its term began.
    pub acquired_at: SystemTime,
    /// When its term ends unless renewed (as the backend knows it).
    pub expires_at: LeaseExpiry,
    /// The metadata stored with its lease.
    pub metadata: Metadata,
}

impl Leader {
    /// Whether `other` describes the same term (identity, token and lease id; the expiry
    /// moves with every renewal).
    pub fn same_term(&self, other: &Leader) -> bool {
        self.fencing_token == other.fencing_token
            && self.lease_id == other.lease_id
            && self.identity == other.identity
    }
}

impl From<LeaseInfo> for Leader {
    fn from(info: LeaseInfo) -> Self {
        Self {
            identity: info.metadata.get(IDENTITY_KEY).cloned(),
            fencing_token: info.fencing_token,
            lease_id: info.lease_id,
            acquired_at: info.acquired_at,
            expires_at: info.expires_at,
            metadata: info.metadata,
        }
    }
}

/// What happened to this process's candidacy, on [`Election::events`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ElectionEvent {
    /// This candidate became the leader.
    Elected {
        /// The term's fencing token.
        fencing_token: u64,
    },
    /// This candidate's term ended by [`Leadership::resign`] or by dropping the handle.
    Resigned {
        /// The term's fencing token.
        fencing_token: u64,
    },
    /// This candidate stopped leading without resigning: at its safety deadline at the
    /// latest, before another candidate can be elected.
    Lost {
        /// The term's fencing token.
        fencing_token: u64,
        /// Why.
        reason: LostReason,
    },
}

impl Election {
    /// A builder for an election of `name` among the candidates using `manager`'s
    /// provider (the name is a lease name).
    pub fn builder(manager: &LeaseManager, name: impl Into<String>) -> ElectionBuilder {
        ElectionBuilder {
            manager: manager.clone(),
            name: name.into(),
            identity: None,
            lease_duration: None,
            retry_period: None,
            metadata: Metadata::new(),
            recampaign: true,
        }
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// The lease duration of a term.
    pub fn lease_duration(&self) -> Duration {
        self.inner.duration
    }

    /// The pause between a follower's attempts.
    pub fn retry_period(&self) -> Duration {
        self.inner.retry_period
    }

    fn acquire_options(&self) -> AcquireOptions {
        AcquireOptions::new()
            .duration(self.inner.duration)
            .metadata(self.inner.metadata.clone())
            .retry_interval(self.inner.retry_period)
    }

    /// Waits until this candidate is the leader (woken by release notifications where the
    /// backend has them, else every retry period), without a time limit; transient
    /// backend failures are retried.
    ///
    /// # Errors
    /// A failure that waiting cannot fix (`Unauthorized`, `Configuration`…).
    ///
    /// # Cancellation safety
    /// Cancel-safe: dropping the future leaves nothing held.
    pub async fn campaign(&self) -> Result<Leadership> {
        let lease = self
            .inner
            .manager
            .acquire_with(&self.inner.name, self.acquire_options().timeout(None))
            .await?;
        Ok(self.elected(lease))
    }

    /// One attempt: the leadership if no one leads, `None` if someone does.
    ///
    /// # Errors
    /// The backend's error.
    ///
    /// # Cancellation safety
    /// As [`campaign`](Self::campaign).
    pub async fn try_campaign(&self) -> Result<Option<Leadership>> {
        let lease = self
            .inner
            .manager
            .try_acquire_with(
                &self.inner.name,
                self.acquire_options().timeout(Some(Duration::ZERO)),
            )
            .await?;
        Ok(lease.map(|l| self.elected(l)))
    }

    /// The current leader as the backend reports it now; `None` if no one leads.
    ///
    /// # Errors
    /// The backend's error.
    pub async fn leader(&self) -> Result<Option<Leader>> {
        Ok(self
            .inner
            .manager
            .inspect(&self.inner.name)
            .await?
            .map(Leader::from))
    }

    /// Leader changes from now on, for followers and dashboards: asks the backend every
    /// retry period, at once when a release is announced or when this process's own
    /// candidacy changes. The watch stops asking when every clone of it is dropped.
    ///
    /// # Errors
    /// The backend's error on the first look (later errors keep the last known leader and
    /// are logged at debug level).
    pub async fn observe(&self) -> Result<LeaderWatch> {
        let first = self.leader().await?;
        let (tx, rx) = watch::channel(first);
        let this = self.clone();
        let task = tokio::spawn(async move { this.poll_leader(tx).await });
        Ok(LeaderWatch {
            rx,
            _task: Arc::new(AbortOnDrop(task)),
        })
    }

    async fn poll_leader(&self, tx: watch::Sender<Option<Leader>>) {
        let name = &self.inner.name;
        let mut releases = self.inner.manager.provider().release_notifications(name);
        let mut local = self.inner.events.subscribe();
        let mut rng = fastrand::Rng::new();
        loop {
            let pause = crate::options::scale(self.inner.retry_period, 0.5 + rng.f64());
            let released = async {
                match releases.as_mut() {
                    Some(rx) => loop {
                        match rx.recv().await {
                            Ok(n) if n == *name => return,
                            Ok(_) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => return,
                            Err(broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(pause) => {}
                () = released => {}
                _ = local.recv() => {}
            }
            match self.leader().await {
                Ok(now) => {
                    tx.send_if_modified(|known| {
                        let same = match (known.as_ref(), now.as_ref()) {
                            (Some(a), Some(b)) => a.same_term(b),
                            (None, None) => true,
                            _ => false,
                        };
                        if !same {
                            known.clone_from(&now);
                        }
                        !same
                    });
                }
                Err(e) => {
                    tracing::debug!(election = %name, error = %e, "observing the leader failed; keeping the last known")
                }
            }
        }
    }

    /// Runs `lead` whenever this candidate is the leader: campaigns, calls `lead` with the
    /// term, and drops its future at the moment the lead is lost (the safety deadline at
    /// the latest), then campaigns again (unless built with `recampaign(false)`). When
    /// `lead` finishes on its own, resigns and returns.
    ///
    /// # Errors
    /// A campaign failure that waiting cannot fix; with `recampaign(false)`, `Lost` when the
    /// lead is lost; the release error of the final resignation.
    pub async fn run<F, Fut>(&self, mut lead: F) -> Result<()>
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let leadership = self.campaign().await?;
            let token = leadership.fencing_token();
            let term = Term {
                fencing_token: token,
                lease_id: leadership.lease.lease_id().to_owned(),
                token: leadership.cancellation_token(),
            };
            tokio::select! {
                biased;
                reason = leadership.lost() => {
                    if !self.inner.recampaign {
                        return Err(LeaseError::lost(format!(
                            "leadership of {} (fencing token {}) lost: {reason}",
                            self.inner.name, token
                        ))
                        .with_lease_name(&self.inner.name));
                    }
                }
                () = lead(term) => return leadership.resign().await,
            }
        }
    }

    /// Events of this process's candidacy from now on.
    pub fn events(&self) -> broadcast::Receiver<ElectionEvent> {
        self.inner.events.subscribe()
    }

    /// Healthy while following or leading, Degraded while the leader's renewals fail,
    /// Unhealthy when this process's term is past its safety deadline (lost) while its
    /// [`Leadership`] handle is still alive: code holding it may still be acting as the
    /// leader. Records the status in `leasing.health.status{check="election"}`.
    pub fn check_health(&self) -> HealthReport {
        let current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        let state = current.as_ref().map(|s| {
            s.check_deadline();
            s.state()
        });
        let report = match state {
            Some(LeaseState::Lost) => HealthReport::new(
                HealthStatus::Unhealthy,
                "this process's term is past its safety deadline and its leadership handle is still alive",
            ),
            Some(LeaseState::AtRisk) => {
                HealthReport::new(HealthStatus::Degraded, "leading; renewals failing")
            }
            Some(LeaseState::Held) => HealthReport::new(HealthStatus::Healthy, "leading"),
            Some(LeaseState::Released) | None => {
                HealthReport::new(HealthStatus::Healthy, "following")
            }
        };
        self.inner
            .manager
            .metrics()
            .health("election", report.status);
        let report = report
            .with("election", &self.inner.name)
            .with("identity", &self.inner.identity);
        match current {
            Some(s) => report.with("fencing_token", s.grant.fencing_token),
            None => report,
        }
    }

    fn elected(&self, lease: Lease) -> Leadership {
        let inner = &self.inner;
        let token = lease.fencing_token();
        let shared = Arc::clone(lease.shared());
        *inner.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&shared);
        inner.manager.metrics().election(&inner.name, "elected");
        let _ = inner.events.send(ElectionEvent::Elected {
            fencing_token: token,
        });
        tracing::info!(election = %inner.name, identity = %inner.identity, fencing_token = token, "elected");
        // Watches the term's end, so that the event and the metrics come at the deadline
        // itself whether or not anyone is looking at the handle.
        let watcher = Arc::clone(inner);
        tokio::spawn(async move {
            let end = shared.wait_end().await;
            drop(shared);
            let (result, event) = match end {
                Some(reason) => {
                    tracing::warn!(election = %watcher.name, fencing_token = token, "stopped leading: {reason}");
                    (
                        "lost",
                        ElectionEvent::Lost {
                            fencing_token: token,
                            reason,
                        },
                    )
                }
                None => (
                    "resigned",
                    ElectionEvent::Resigned {
                        fencing_token: token,
                    },
                ),
            };
            watcher.manager.metrics().election(&watcher.name, result);
            let _ = watcher.events.send(event);
        });
        Leadership {
            lease,
            identity: inner.identity.clone(),
        }
    }
}
