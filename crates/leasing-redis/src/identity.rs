//! Which server a node talks to, and the restart fence.
//!
//! After a connection failure, the next call first asks the server who it is (`INFO server
//! replication`: `run_id`, `uptime_in_seconds`, `role`, `master_replid`,
//! `second_repl_offset`). A different `run_id` or replication id than before means a
//! restart or a failover: everything this provider was granted there may be gone, so the
//! node's epoch advances and renewals of grants from an older epoch report `Lost` without
//! asking. With a restart fence `F`, a server grants nothing (`ProviderUnavailable`) while
//!
//! * its uptime is below `F` (a restart, possibly without persistence),
//! * or this provider saw another server at this address less than `F` ago,
//! * or it was promoted from a replica (`second_repl_offset` ≠ -1) less than `F` before
//!   the first client noticed (a marker key `{prefix}promoted:<replication id>` records
//!   when, on the server's clock, so every client fences until the same moment).
//!
//! This is the one-server path. In cluster mode the fence is decided inside the acquire
//! script instead (`ClusterFence` in `node.rs`, `scripts/cluster_fence.lua`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// What `INFO server replication` says about a server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ServerInfo {
    pub(crate) run_id: String,
    pub(crate) replid: String,
    pub(crate) uptime: Duration,
    pub(crate) master: bool,
    pub(crate) promoted: bool,
}

impl ServerInfo {
    pub(crate) fn parse(info: &str) -> Self {
        let mut s = Self {
            master: true,
            ..Self::default()
        };
        for line in info.lines() {
            let Some((k, v)) = line.trim_end().split_once(':') else {
                continue;
            };
            match k {
                "run_id" => s.run_id = v.to_owned(),
                "master_replid" => s.replid = v.to_owned(),
                "uptime_in_seconds" => {
                    s.uptime = Duration::from_secs(v.parse().unwrap_or(0));
                }
                "role" => s.master = v == "master",
                "second_repl_offset" => s.promoted = v != "-1",
                _ => {}
            }
        }
        s
    }
}

#[derive(Debug)]
struct State {
    /// The server seen last (`run_id`, replication id).
    seen: Option<(String, String)>,
    /// Bumped whenever the server changes.
    epoch: u64,
    /// Ask the server who it is before the next call.
    check: bool,
    /// No grants before this instant.
    fenced_until: Option<Instant>,
    /// INFO is not allowed (ACL, renamed command): identity checks are off.
    disabled: bool,
}

/// The identity and fence state of one node.
#[derive(Debug)]
pub(crate) struct Identity {
    state: Mutex<State>,
    pub(crate) fence: Duration,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The server this node knew (or the first one seen).
    Same,
    /// Another server than before: a restart or a failover.
    Changed,
}

impl Identity {
    pub(crate) fn new(fence: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                seen: None,
                epoch: 0,
                check: true,
                fenced_until: None,
                disabled: false,
            }),
            fence,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain fields only: a panicking holder leaves them consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the server must be asked who it is before the next call.
    pub(crate) fn check_due(&self) -> bool {
        let s = self.state();
        s.check && !s.disabled
    }

    /// A connection failed: the next call checks the server first.
    pub(crate) fn suspect(&self) {
        self.state().check = true;
    }

    /// INFO is refused by the server: no identity checks, no fence.
    pub(crate) fn disable(&self) {
        let mut s = self.state();
        s.disabled = true;
        s.check = false;
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Records what the server said; `promoted_for` is how long ago (server clock) its
    /// promotion was first noticed, when it was promoted.
    pub(crate) fn record(&self, info: &ServerInfo, promoted_for: Option<Duration>) -> Seen {
        let now = Instant::now();
        let mut s = self.state();
        s.check = false;
        let id = (info.run_id.clone(), info.replid.clone());
        let seen = match &s.seen {
            Some(prev) if *prev != id => Seen::Changed,
            _ => Seen::Same,
        };
        if seen == Seen::Changed {
            s.epoch += 1;
        }
        s.seen = Some(id);
        if !self.fence.is_zero() {
            let mut remaining = self.fence.saturating_sub(info.uptime);
            if seen == Seen::Changed {
                remaining = self.fence;
            }
            if let Some(ago) = promoted_for {
                remaining = remaining.max(self.fence.saturating_sub(ago));
            }
            if !remaining.is_zero() {
                let until = now + remaining;
                s.fenced_until = Some(s.fenced_until.map_or(until, |u| u.max(until)));
            }
        }
        seen
    }

    /// How long this node still grants nothing.
    pub(crate) fn fenced_for(&self) -> Option<Duration> {
        let until = self.state().fenced_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\nuptime_in_seconds:12\r\n\r\n# Replication\r\nrole:master\r\nmaster_replid:r1\r\nsecond_repl_offset:-1\r\n";

    #[test]
    fn parses_info() {
        let i = ServerInfo::parse(INFO);
        assert_eq!(i.run_id, "abc");
        assert_eq!(i.replid, "r1");
        assert_eq!(i.uptime, Duration::from_secs(12));
        assert!(i.master);
        assert!(!i.promoted);
        let r = ServerInfo::parse("role:slave\nsecond_repl_offset:100\nuptime_in_seconds:x\n");
        assert!(!r.master);
        assert!(r.promoted);
        assert_eq!(r.uptime, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn fences_young_changed_and_promoted_servers() {
        let info = ServerInfo::parse(INFO);
        // Off: nothing fenced, but changes still advance the epoch.
        let off = Identity::new(Duration::ZERO);
        assert!(off.check_due());
        assert_eq!(off.record(&info, None), Seen::Same);
        assert!(!off.check_due());
        assert_eq!(off.fenced_for(), None);
        let other = ServerInfo {
            run_id: "def".into(),
            ..info.clone()
        };
        off.suspect();
        assert_eq!(off.record(&other, None), Seen::Changed);
        assert_eq!(off.epoch(), 1);
        assert_eq!(off.fenced_for(), None);

        let f = Identity::new(Duration::from_secs(30));
        f.record(&info, None);
        assert_eq!(f.fenced_for(), Some(Duration::from_secs(18)), "uptime 12 s");
        f.record(&other, None);
        assert_eq!(
            f.fenced_for(),
            Some(Duration::from_secs(30)),
            "another server"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(f.fenced_for(), None);
        let old = ServerInfo {
            uptime: Duration::from_secs(3600),
            ..other.clone()
        };
        f.record(&old, Some(Duration::from_secs(25)));
        assert_eq!(
            f.fenced_for(),
            Some(Duration::from_secs(5)),
            "promoted 25 s ago"
        );
        f.record(&old, Some(Duration::from_secs(60)));
        assert_eq!(
            f.fenced_for(),
            Some(Duration::from_secs(5)),
            "never shortened"
        );
        f.disable();
        assert!(!f.check_due());
        f.suspect();
        assert!(!f.check_due());
    }
}
