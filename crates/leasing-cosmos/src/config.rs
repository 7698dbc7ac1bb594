//! Defaults, limits and partition-key strategies.

use leasing_abstractions::LeaseNameParts;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Default database name.
pub const DEFAULT_DATABASE: &str = "leasing";
/// Default container name.
pub const DEFAULT_CONTAINER: &str = "leases";
/// Default per-call deadline.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest lease: `_ts` has a resolution of one second.
pub const MIN_DURATION: Duration = Duration::from_secs(1);
/// Longest lease.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Default number of renewals `renew_many` runs at once.
pub(crate) const DEFAULT_RENEW_CONCURRENCY: usize = 32;
/// Default time a document is kept after its last write before Cosmos DB's TTL deletes it.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The function type of [`PartitionKeyStrategy::Custom`].
pub type PartitionKeyFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Which logical partition a lease document lives in. Every lease operation is a point
/// operation on that one partition (the key is computed from the name alone).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum PartitionKeyStrategy {
    /// The document id itself (default): every lease in its own logical partition, which
    /// spreads load and storage evenly and never hits the 20 GB/10 000 RU per-partition
    /// limits.
    #[default]
    PerLease,
    /// One fixed key for every lease (a small container, or one you scope by name).
    Fixed(String),
    /// The tenant segment of a hierarchical name ([`LeaseNameParts`]); names without one
    /// use `fallback`.
    ByTenant {
        /// Key for names without a tenant segment.
        fallback: String,
    },
    /// The region segment of a hierarchical name; names without one use `fallback`.
    ByRegion {
        /// Key for names without a region segment.
        fallback: String,
    },
    /// Your function of the lease name (must be deterministic: every process must compute
    /// the same key for a name).
    Custom(PartitionKeyFn),
}

impl fmt::Debug for PartitionKeyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerLease => f.write_str("PerLease"),
            Self::Fixed(k) => f.debug_tuple("Fixed").field(k).finish(),
            Self::ByTenant { fallback } => f
                .debug_struct("ByTenant")
                .field("fallback", fallback)
                .finish(),
            Self::ByRegion { fallback } => f
                .debug_struct("ByRegion")
                .field("fallback", fallback)
                .finish(),
            Self::Custom(_) => f.write_str("Custom(<fn>)"),
        }
    }
}

impl PartitionKeyStrategy {
    /// The partition key of lease `name` whose document id is `id`.
    pub fn key_for(&self, name: &str, id: &str) -> String {
        let part = |pick: fn(LeaseNameParts) -> Option<String>, fallback: &str| {
            LeaseNameParts::parse(name)
                .ok()
                .and_then(pick)
                .unwrap_or_else(|| fallback.to_owned())
        };
        match self {
            Self::PerLease => id.to_owned(),
            Self::Fixed(k) => k.clone(),
            Self::ByTenant { fallback } => part(|p| p.tenant, fallback),
            Self::ByRegion { fallback } => part(|p| p.region, fallback),
            Self::Custom(f) => f(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_key_strategies() {
        let name = "prod:westeurope:contoso:billing:invoice-1";
        let id = "id";
        assert_eq!(PartitionKeyStrategy::default().key_for(name, id), "id");
        assert_eq!(
            PartitionKeyStrategy::Fixed("k".into()).key_for(name, id),
            "k"
        );
        let t = PartitionKeyStrategy::ByTenant {
            fallback: "none".into(),
        };
        assert_eq!(t.key_for(name, id), "contoso");
        assert_eq!(t.key_for("flat-name", id), "none");
        let r = PartitionKeyStrategy::ByRegion {
            fallback: "global".into(),
        };
        assert_eq!(r.key_for(name, id), "westeurope");
        assert_eq!(r.key_for("prod:::billing:x", id), "global");
        let c = PartitionKeyStrategy::Custom(Arc::new(|n: &str| n.len().to_string()));
        assert_eq!(c.key_for(name, id), name.len().to_string());
        for s in [
            PartitionKeyStrategy::default(),
            PartitionKeyStrategy::Fixed("k".into()),
            t,
            r,
            c,
        ] {
            assert!(!format!("{s:?}").is_empty());
        }
    }
}
