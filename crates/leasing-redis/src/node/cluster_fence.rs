//! The restart fence of a Redis Cluster: decided in the acquire script, per hash slot.

use super::*;

/// The restart fence in Redis Cluster mode.
///
/// On one server the fence is decided by the client (`INFO` after a connection failure,
/// see [`Identity`]). That does not carry over to a cluster: redis-rs' cluster connection
/// hides which node answers, and after a failover a redirected command sees no error, so an
/// `INFO` sent before the acquire may reach another node than the acquire itself. Instead
/// the check runs inside the acquire script (`cluster_fence.lua` prepended to
/// `acquire.lua`), atomically on the master that grants: `INFO` is allowed in scripts
/// (not `noscript`; checked on Redis 7.0). Its promotion marker is per hash slot
/// (`{prefix}{<slot tag>}:promoted`, `<replid>|<first notice ms>`, see [`slot_tag`]): a
/// cluster script may only touch keys of its keys' slot, so a server-wide marker as on
/// one server is out of reach, but every name of a slot shares the slot's marker. Per
/// slot, the fence after a promotion starts when a name of that slot is first acquired
/// there: never earlier than the promotion, so never shorter than on one server, and a
/// name first used long after the promotion in a slot already in use is not fenced again.
///
/// Only used when the fence is on: with it off, cluster acquires run the plain script
/// (no `INFO`, no extra key), so the default costs nothing extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClusterFence {
    /// The fence (ms).
    pub(super) fence_ms: u64,
    /// How long a promotion marker outlives the last acquire in its slot on the node (ms):
    /// the fencing counter's retention, at least the fence. An expired marker only fences
    /// the slot once more at its next acquire (first notice again), which is safe.
    pub(super) marker_ttl_ms: u64,
}

impl ClusterFence {
    pub(super) fn new(config: &RedisConfig) -> Option<Self> {
        if config.restart_fence.is_zero() {
            return None;
        }
        let fence_ms = ttl_ms(config.restart_fence);
        // Built here, at connect, rather than in the first acquire (a few ms, once).
        LazyLock::force(&SLOT_TAGS);
        Some(Self {
            fence_ms,
            marker_ttl_ms: ttl_ms(config.fence_retention).max(fence_ms),
        })
    }

    /// The fenced acquire script's reply: nil when held, `{token, acquired ms}` when
    /// granted, `{0, fenced until ms, server now ms}` when the node is inside its fence
    /// (`ProviderUnavailable`, retried by the core). Token 0 is never granted (tokens are
    /// at least the server clock in µs, or above a Redlock floor).
    pub(super) fn decode(&self, reply: Option<Vec<u64>>) -> Result<Option<(u64, u64)>> {
        match reply.as_deref() {
            None => Ok(None),
            Some(&[token, acquired_ms]) if token > 0 => Ok(Some((token, acquired_ms))),
            Some(&[0, until_ms, now_ms]) => {
                let left = Duration::from_millis(until_ms.saturating_sub(now_ms));
                Err(LeaseError::unavailable(format!(
                    "restart fence: the cluster node serving this name restarted less than {fence:?} ago, or was promoted from a replica less than {fence:?} before this name's hash slot was first used there; it grants nothing until {until_ms} ms Unix time on its clock (another {left:?})",
                    fence = Duration::from_millis(self.fence_ms)
                )))
            }
            Some(other) => Err(LeaseError::new(
                leasing_abstractions::ErrorKind::Unexpected,
                format!(
                    "redis acquire answered with an unexpected reply of {} numbers",
                    other.len()
                ),
            )),
        }
    }
}

/// The number of Redis Cluster hash slots.
const SLOTS: usize = 16384;

/// The hash tag of every slot's promotion marker: for slot `s` the smallest number whose
/// decimal digits hash to `s` (CRC16 as redis-rs and Redis compute it). Every slot is
/// covered by 0 … 109757, so a tag has at most six digits. Deterministic, so every client
/// (and version) names a slot's marker alike. Built once, when a cluster provider with a
/// restart fence is built.
static SLOT_TAGS: LazyLock<HashMap<Slot, u32>> = LazyLock::new(|| {
    let mut tags = HashMap::with_capacity(SLOTS);
    let mut digits = String::new();
    let mut i = 0u32;
    while tags.len() < SLOTS {
        digits.clear();
        write!(digits, "{i}").expect("a String takes any write");
        tags.entry(Slot::for_key(&digits)).or_insert(i);
        i += 1;
    }
    tags
});

/// The hash tag of the promotion marker of `key`'s slot: a key `{<tag>}…` lives in the
/// same slot as `key`, so a script may declare both.
pub(super) fn slot_tag(key: &str) -> u32 {
    SLOT_TAGS[&Slot::for_key(key)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_short_marker_tag_in_that_slot() {
        assert_eq!(SLOT_TAGS.len(), SLOTS);
        assert_eq!(Slot::new(SLOTS as u16), None, "{SLOTS} slots");
        let mut seen = std::collections::HashSet::new();
        for n in 0..SLOTS as u16 {
            let slot = Slot::new(n).expect("a slot");
            let tag = *SLOT_TAGS.get(&slot).expect("every slot has a tag");
            assert_eq!(
                Slot::for_key(tag.to_string()),
                slot,
                "tag {tag} of slot {n}"
            );
            assert!(seen.insert(tag), "tag {tag} twice");
        }
        // The smallest number per slot: deterministic, at most six digits.
        assert_eq!(SLOT_TAGS.values().max(), Some(&109_757));
        assert_eq!(slot_tag("0"), 0);
        // A marker `{prefix}{<tag>}:promoted` is in the lease's slot, under another tag.
        for name in ["a", "job-42", "prod:eu::billing:invoice%3A42", "123"] {
            let lease = format!("lease:{{{name}}}");
            let marker = format!("lease:{{{}}}:promoted", slot_tag(&lease));
            assert_eq!(Slot::for_key(&marker), Slot::for_key(&lease), "{name}");
            assert_eq!(slot_tag(&lease), slot_tag(name), "the hash tag decides");
        }
    }

    #[test]
    fn the_cluster_fence_is_off_by_default_and_decodes_its_replies() {
        let off = RedisConfig::default();
        assert_eq!(
            ClusterFence::new(&off),
            None,
            "off: the plain acquire script"
        );
        let on = RedisConfig {
            restart_fence: Duration::from_secs(3),
            fence_retention: Duration::from_millis(10),
            ..RedisConfig::default()
        };
        let f = ClusterFence::new(&on).expect("on");
        assert_eq!(f.fence_ms, 3000);
        assert_eq!(
            f.marker_ttl_ms, 3000,
            "a marker outlives at least the fence"
        );
        let long = RedisConfig {
            fence_retention: Duration::from_secs(86_400),
            ..on
        };
        let f = ClusterFence::new(&long).expect("on");
        assert_eq!(f.marker_ttl_ms, 86_400_000, "…and the counter's retention");

        assert_eq!(f.decode(None).expect("held"), None);
        assert_eq!(
            f.decode(Some(vec![1_700_000_000_000_000, 1_700_000_000_000]))
                .expect("granted"),
            Some((1_700_000_000_000_000, 1_700_000_000_000))
        );
        let e = f
            .decode(Some(vec![0, 1_700_000_002_500, 1_700_000_000_000]))
            .expect_err("fenced");
        assert_eq!(
            e.kind(),
            leasing_abstractions::ErrorKind::ProviderUnavailable
        );
        assert!(e.is_retryable());
        assert!(
            e.message().contains("restart fence")
                && e.message().contains("until 1700000002500 ms")
                && e.message().contains("another 2.5s"),
            "{e}"
        );
        for odd in [vec![], vec![0, 1], vec![1, 2, 3], vec![1]] {
            let e = f.decode(Some(odd)).expect_err("unexpected");
            assert_eq!(e.kind(), leasing_abstractions::ErrorKind::Unexpected, "{e}");
        }
    }
}
