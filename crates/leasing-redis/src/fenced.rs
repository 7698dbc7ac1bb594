//! [`RedisFencedResource`]: keys that refuse a stale holder's write, checked and written
//! in one script.

use crate::error::Op;
use crate::node::Node;
use crate::scripts::SCRIPTS;
use crate::RedisLeaseProvider;
use leasing_abstractions::fence::{Fence, FencedWrite};
use leasing_abstractions::{ErrorKind, LeaseError, Result};
use std::sync::Arc;

/// A fenced resource on the provider's Redis (server or cluster): each item is a hash at
/// `<key prefix>item:{<key>}` holding the value (field `v`) and, per lease name, the
/// largest token accepted (field `t:<lease name>`). A write is one script call
/// (`EVALSHA`, one round trip) that compares the token and writes, so no stale write can
/// slip in between; see `leasing_abstractions::fence` for the contract.
///
/// Use it for data you keep in Redis under a lease; read it with [`read`](leasing_abstractions::fence::FencedResource::read)
/// (or `HGET <item key> v`).
///
/// Each call is one command (a write may load its script once after `NOSCRIPT`), and waits
/// for its reply at most the provider's [`call_timeout`](crate::RedisConfig::call_timeout),
/// the transport's response timeout; wrap a call in `tokio::time::timeout` for a deadline
/// of your own.
///
/// ```no_run
/// # async fn f() -> leasing_abstractions::Result<()> {
/// use leasing_abstractions::fence::{Fence, FencedResource, FencedWrite};
/// use leasing_abstractions::{LeaseManager, LeaseOptions};
/// use leasing_redis::{RedisFencedResource, RedisLeaseProvider};
/// use std::sync::Arc;
/// let provider = Arc::new(RedisLeaseProvider::builder().url("redis://127.0.0.1:6379").restart_fence(std::time::Duration::from_secs(30)).build().await?);
/// let reports = RedisFencedResource::new(&provider);
/// let manager = LeaseManager::new(provider, LeaseOptions::default())?;
/// let lease = manager.acquire("daily-report").await?;
/// match reports.write(&Fence::of(&lease), "2026-12-03", b"totals").await? {
///     FencedWrite::Written => {}
///     FencedWrite::Stale { highest } => eprintln!("lost the lease: token {highest} wrote since"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisFencedResource {
    node: Arc<Node>,
}

impl std::fmt::Debug for RedisFencedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFencedResource")
            .field("key_prefix", &self.node.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisFencedResource {
    /// A fenced resource on `provider`'s connection and key prefix.
    pub fn new(provider: &RedisLeaseProvider) -> Self {
        Self {
            node: Arc::clone(provider.node()),
        }
    }

    /// The Redis key of item `key` (hash-tagged, so a cluster keeps it on one slot).
    pub fn item_key(&self, key: &str) -> String {
        format!("{}item:{{{key}}}", self.node.prefix)
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(LeaseError::invalid_argument("key", "must not be empty"));
    }
    if key.contains(['{', '}']) {
        return Err(LeaseError::invalid_argument(
            "key",
            format!("{key:?} contains '{{' or '}}' (the item key's hash tag would change)"),
        ));
    }
    Ok(())
}

/// A reply the script never gives: `Unexpected`, as everywhere (the error contract).
fn bad_reply(what: &str, reply: &str) -> LeaseError {
    LeaseError::new(
        ErrorKind::Unexpected,
        format!("redis fenced {what}: unexpected reply {reply:?}"),
    )
}

impl RedisFencedResource {
    async fn write_item(&self, fence: &Fence, key: &str, value: &[u8]) -> Result<FencedWrite> {
        {
            check_key(key)?;
            leasing_abstractions::validate_name(fence.name())?;
            let item = self.item_key(key);
            let mut cmd = SCRIPTS.fenced_write.evalsha(&[item.as_str()]);
            cmd.arg(format!("t:{}", fence.name()))
                .arg(fence.token().to_string())
                .arg(value);
            let (written, token): (u8, String) = self
                .node
                .script(Op::FencedWrite, &SCRIPTS.fenced_write, &item, cmd)
                .await?;
            let token: u64 = token.parse().map_err(|_| bad_reply("write", &token))?;
            Ok(match written {
                1 => FencedWrite::Written,
                _ => FencedWrite::Stale { highest: token },
            })
        }
    }

    async fn read_item(&self, key: &str) -> Result<Option<Vec<u8>>> {
        {
            check_key(key)?;
            let item = self.item_key(key);
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&item).arg("v");
            self.node.query(Op::FencedRead, &item, &cmd).await
        }
    }

    async fn highest_of(&self, key: &str, name: &str) -> Result<Option<u64>> {
        {
            check_key(key)?;
            let item = self.item_key(key);
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&item).arg(format!("t:{name}"));
            let found: Option<String> = self.node.query(Op::FencedRead, &item, &cmd).await?;
            found
                .map(|t| t.parse().map_err(|_| bad_reply("read", &t)))
                .transpose()
        }
    }
}

leasing_abstractions::fenced_resource!(RedisFencedResource);
