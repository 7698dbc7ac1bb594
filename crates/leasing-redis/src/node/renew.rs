//! Renewing on one node: a single renewal, and batches (one pipeline per server, or per
//! hash slot on a cluster).

use super::*;

impl Node {
    /// Renews; `false` when the lease is no longer held under `lease_id` (or was granted by
    /// a server that has since been replaced). Bounded by the core's deadline; a failure
    /// returns at once (the core retries, and the watcher asks for a renewal as soon as a
    /// server that went away answers again).
    pub(crate) async fn renew(&self, r: Renewal<'_>) -> Result<bool> {
        self.check(Op::Renew, r.name).await?;
        if self.outdated(r.epoch) {
            return Ok(false);
        }
        let lua = &SCRIPTS.renew;
        let key = self.lease_key(r.name);
        let mut cmd = lua.evalsha(&[key.as_str()]);
        cmd.arg(id_match(r.lease_id)).arg(ttl_ms(r.ttl));
        self.call(Op::Renew, r.name, self.eval(lua, &key, cmd))
            .await
    }

    /// Renews many leases: one server gets one pipeline (EVALSHA each); a cluster gets one
    /// pipeline per hash slot, all sent at once over the cluster connection's multiplexed
    /// per-node connections (redis-rs routes a pipeline by a single slot). Results come back
    /// in the order of `items`.
    pub(crate) async fn renew_many(&self, items: &[Renewal<'_>]) -> Vec<Result<bool>> {
        let mut groups: HashMap<Option<Slot>, Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let batch = self.conn.batch_of(&self.lease_key(item.name));
            groups.entry(batch).or_default().push(i);
        }
        let batches: Vec<Vec<usize>> = groups.into_values().collect();
        let answers = join_all(batches.iter().map(|idx| async move {
            let batch: Vec<Renewal<'_>> = idx.iter().map(|&i| items[i]).collect();
            self.renew_batch(&batch).await
        }))
        .await;
        let mut results: Vec<Option<Result<bool>>> = items.iter().map(|_| None).collect();
        for (idx, answer) in batches.iter().zip(answers) {
            for (&i, r) in idx.iter().zip(answer) {
                results[i] = Some(r);
            }
        }
        results.into_iter().flatten().collect()
    }

    /// Renews the leases of one batch in one pipelined round trip (EVALSHA each; on
    /// NOSCRIPT the script is loaded where the batch lives and the batch sent once more,
    /// which is harmless: renewing twice only extends again).
    async fn renew_batch(&self, items: &[Renewal<'_>]) -> Vec<Result<bool>> {
        let first = items.first().map_or("", |i| i.name);
        let every = |e: LeaseError| -> Vec<Result<bool>> {
            items
                .iter()
                .map(|i| Err(e.clone().with_lease_name(i.name)))
                .collect()
        };
        if let Err(e) = self.check(Op::Renew, first).await {
            return every(e);
        }
        // Outdated grants are lost without asking; the others take their reply.
        let live: Vec<Renewal<'_>> = items
            .iter()
            .filter(|i| !self.outdated(i.epoch))
            .copied()
            .collect();
        let mut results = self.renew_pipeline(&live).await;
        let noscript =
            matches!(&results, Ok(v) if v.iter().any(|r| matches!(r, Err(e) if is_noscript(e))));
        if noscript {
            let mut conn = self.conn.clone();
            let key = self.lease_key(first);
            results = match self.raw_call(conn.load(&SCRIPTS.renew, &key)).await {
                Ok(()) => self.renew_pipeline(&live).await,
                Err(e) => Err(e),
            };
        }
        let replies = match results {
            Ok(replies) => replies,
            Err(e) => return every(into_error(e, Op::Renew, first)),
        };
        let mut replies = per_item(replies, &live).into_iter();
        items
            .iter()
            .map(|i| {
                if self.outdated(i.epoch) {
                    Ok(false)
                } else {
                    replies.next().unwrap_or(Ok(false))
                }
            })
            .collect()
    }

    async fn renew_pipeline(&self, items: &[Renewal<'_>]) -> RedisResult<Vec<RedisResult<bool>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for r in items {
            let mut cmd = SCRIPTS.renew.evalsha(&[&self.lease_key(r.name)]);
            cmd.arg(id_match(r.lease_id)).arg(ttl_ms(r.ttl));
            pipe.add_command(cmd);
        }
        pipe.ignore_errors();
        let mut conn = self.conn.clone();
        self.raw_call(async move { conn.query_pipe(&pipe).await })
            .await
    }
}

/// One result per renewed item from a pipeline's replies.
fn per_item(replies: Vec<RedisResult<bool>>, items: &[Renewal<'_>]) -> Vec<Result<bool>> {
    // redis-rs reads one reply per command; the count is checked all the same, since the
    // core relies on one result per grant.
    if replies.len() != items.len() {
        return items
            .iter()
            .map(|i| {
                Err(LeaseError::new(
                    leasing_abstractions::ErrorKind::Unexpected,
                    "redis answered a renewal batch with the wrong number of replies",
                )
                .with_lease_name(i.name))
            })
            .collect();
    }
    replies
        .into_iter()
        .zip(items)
        .map(|(r, i)| r.map_err(|e| map_err(e, Op::Renew, Some(i.name))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_result_per_renewed_item() {
        let d = Duration::from_secs(1);
        let item = |name| Renewal {
            name,
            lease_id: "1",
            ttl: d,
            epoch: None,
        };
        let items = [item("a"), item("b")];
        let wrongtype = redis::parse_redis_value(b"-WRONGTYPE x\r\n")
            .expect("parse")
            .extract_error()
            .expect_err("error reply");
        let r = per_item(vec![Ok(true), Err(wrongtype)], &items);
        assert!(matches!(r[0], Ok(true)));
        let e = r[1].as_ref().expect_err("wrongtype");
        assert_eq!(e.kind(), leasing_abstractions::ErrorKind::Unexpected);
        assert_eq!(e.lease_name(), Some("b"));
        // A short reply is an error for every item, never a shorter result list.
        let r = per_item(vec![Ok(true)], &items);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(Result::is_err));
        assert_eq!(channel("lease:", "n"), "lease:{n}:released");
    }
}
