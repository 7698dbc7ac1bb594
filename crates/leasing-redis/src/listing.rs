//! Listing held leases: `SCAN` with a `MATCH` pattern over the key prefix (never `KEYS`),
//! on the one server, on every master of a cluster, or on Redlock's servers.
//!
//! Only lease keys match: `{prefix}{<name>}` ends with `}`, the fencing counters
//! (`…}:fence`) and the promotion markers (`{prefix}promoted:<replid>` on one server,
//! `{prefix}{<slot tag>}:promoted` per slot in cluster mode) do not. A slot tag is a
//! number, a valid lease name too, but its marker key never ends with `}`. The cursor of a page is
//! `<scan space>:<SCAN cursor>`, where a scan space is the server (0), a master of the
//! cluster (by its index in the sorted master list) or a Redlock server.

use crate::error::Op;
use crate::node::Node;
use leasing_abstractions::{ErrorKind, LeaseError, Result};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

/// `s` with the glob characters of `SCAN MATCH` escaped.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `MATCH` pattern of the lease keys whose names start with `name_prefix`.
pub(crate) fn pattern(key_prefix: &str, name_prefix: &str) -> String {
    format!(
        "{}{{{}*}}",
        glob_escape(key_prefix),
        glob_escape(name_prefix)
    )
}

/// The lease name of a lease key, `None` for any other key.
pub(crate) fn name_of<'a>(key_prefix: &str, key: &'a str) -> Option<&'a str> {
    let inner = key.strip_prefix(key_prefix)?.strip_prefix('{')?;
    let name = inner.strip_suffix('}')?;
    (!name.contains(['{', '}'])).then_some(name)
}

/// A position in a listing: which scan space, the SCAN cursor in it, and how many names
/// of that SCAN step earlier pages already returned (a step may find more names than a
/// page may hold: the next page repeats the step and skips them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) space: usize,
    pub(crate) scan: u64,
    pub(crate) skip: usize,
}

impl Cursor {
    pub(crate) const START: Cursor = Cursor {
        space: 0,
        scan: 0,
        skip: 0,
    };

    pub(crate) fn parse(cursor: Option<&str>) -> Result<Self> {
        let Some(c) = cursor else {
            return Ok(Self::START);
        };
        let bad =
            || LeaseError::invalid_argument("cursor", "not a cursor returned by this provider");
        let mut parts = c.split(':');
        let (Some(space), Some(scan)) = (parts.next(), parts.next()) else {
            return Err(bad());
        };
        let skip = parts
            .next()
            .map_or(Ok(0), |s| s.parse().map_err(|_| bad()))?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            space: space.parse().map_err(|_| bad())?,
            scan: scan.parse().map_err(|_| bad())?,
            skip,
        })
    }

    pub(crate) fn render(self) -> String {
        if self.skip == 0 {
            format!("{}:{}", self.space, self.scan)
        } else {
            format!("{}:{}:{}", self.space, self.scan, self.skip)
        }
    }
}

impl Node {
    /// How many scan spaces this node has: 1, or the number of cluster masters (sorted
    /// `host:port` addresses).
    pub(crate) async fn scan_spaces(&self) -> Result<Vec<Option<(String, u16)>>> {
        if !self.is_cluster() {
            return Ok(vec![None]);
        }
        let slots: Vec<redis::Value> = self
            .call(
                Op::List,
                "",
                self.route(redis::cmd("CLUSTER").arg("SLOTS").clone(), None),
            )
            .await?;
        let mut masters: Vec<(String, u16)> = slots
            .iter()
            .filter_map(|range| match range {
                redis::Value::Array(parts) => match parts.get(2) {
                    Some(redis::Value::Array(m)) => {
                        let host: String = redis::from_redis_value_ref(m.first()?).ok()?;
                        let port: u16 = redis::from_redis_value_ref(m.get(1)?).ok()?;
                        Some((host, port))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        masters.sort();
        masters.dedup();
        Ok(masters.into_iter().map(Some).collect())
    }

    /// One `SCAN` step in a scan space: the next cursor and the lease names found.
    pub(crate) async fn scan(
        &self,
        space: Option<&(String, u16)>,
        cursor: u64,
        name_prefix: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern(&self.prefix, name_prefix))
            .arg("COUNT")
            .arg(count.clamp(10, 1000));
        let (next, keys): (u64, Vec<String>) =
            self.call(Op::List, "", self.route(cmd, space)).await?;
        let names = keys
            .iter()
            .filter_map(|k| name_of(&self.prefix, k))
            .map(str::to_owned)
            .collect();
        Ok((next, names))
    }

    /// Runs `cmd` on the one server, or on the cluster node at `at` (any node when `None`).
    async fn route<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
        at: Option<&(String, u16)>,
    ) -> redis::RedisResult<T> {
        match (&self.conn, at) {
            (crate::connection::Conn::Cluster(c), at) => {
                let mut c = c.clone();
                let to = match at {
                    Some((host, port)) => SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    },
                    None => SingleNodeRoutingInfo::Random,
                };
                let v = c.route_command(cmd, RoutingInfo::SingleNode(to)).await?;
                Ok(redis::from_redis_value(v)?)
            }
            (conn, _) => conn.clone().query(&cmd).await,
        }
    }
}

/// Scans from `cursor` until at least one name is found or every scan space is done.
/// `spaces` are the scan spaces in order; returns at most `limit` names and the next
/// cursor (which repeats the step, skipping what was returned, when a step found more).
pub(crate) async fn scan_until_found(
    node: &Node,
    spaces: &[Option<(String, u16)>],
    mut cursor: Cursor,
    name_prefix: &str,
    limit: usize,
) -> Result<(Vec<String>, Option<Cursor>)> {
    let limit = limit.max(1);
    while cursor.space < spaces.len() {
        let space = spaces[cursor.space].as_ref();
        let (next, mut names) = node.scan(space, cursor.scan, name_prefix, limit).await?;
        names.drain(..cursor.skip.min(names.len()));
        if names.len() > limit {
            names.truncate(limit);
            let rest = Cursor {
                skip: cursor.skip + limit,
                ..cursor
            };
            return Ok((names, Some(rest)));
        }
        cursor = if next == 0 {
            Cursor {
                space: cursor.space + 1,
                scan: 0,
                skip: 0,
            }
        } else {
            Cursor {
                space: cursor.space,
                scan: next,
                skip: 0,
            }
        };
        let done = cursor.space >= spaces.len();
        if !names.is_empty() || done {
            return Ok((names, (!done).then_some(cursor)));
        }
    }
    Ok((Vec::new(), None))
}

/// `list` on a provider that does not know a cursor's scan space (a cluster that lost a
/// master since the previous page).
pub(crate) fn stale_cursor() -> LeaseError {
    LeaseError::new(
        ErrorKind::InvalidArgument,
        "the listing cursor points past the servers of this provider; start again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_names() {
        assert_eq!(pattern("lease:", "job-"), "lease:{job-*}");
        assert_eq!(pattern("a*b?[c]\\", ""), "a\\*b\\?\\[c\\]\\\\{*}");
        assert_eq!(name_of("lease:", "lease:{a/b}"), Some("a/b"));
        assert_eq!(name_of("lease:", "lease:{a}:fence"), None);
        assert_eq!(name_of("lease:", "lease:promoted:x"), None);
        // A cluster slot's promotion marker: its tag is a number (a valid name), the key
        // is no lease key, and the listing pattern of any name prefix does not match it.
        assert_eq!(name_of("lease:", "lease:{123}:promoted"), None);
        assert_eq!(name_of("lease:", "lease:{123}"), Some("123"));
        assert!(pattern("lease:", "12").ends_with('}'));
        assert_eq!(name_of("lease:", "other:{a}"), None);
        assert_eq!(name_of("lease:", "lease:{a}}"), None);
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(Cursor::parse(None).unwrap(), Cursor::START);
        let c = Cursor {
            space: 2,
            scan: 77,
            skip: 0,
        };
        assert_eq!(c.render(), "2:77");
        assert_eq!(Cursor::parse(Some(&c.render())).unwrap(), c);
        let c = Cursor { skip: 5, ..c };
        assert_eq!(c.render(), "2:77:5");
        assert_eq!(Cursor::parse(Some(&c.render())).unwrap(), c);
        for bad in ["", "1", "x:1", "1:y", "1:2:z", "1:2:3:4"] {
            assert_eq!(
                Cursor::parse(Some(bad)).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
        assert_eq!(stale_cursor().kind(), ErrorKind::InvalidArgument);
    }
}
