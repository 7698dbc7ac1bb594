//! Renewing on one node: a single renewal with its reconnect retries, and batches (one
//! pipeline per server, or per hash slot on a cluster).

use super::*;

impl Node {
    /// Renews; `false` when the lease is no longer held under `lease_id` (or was granted by
    /// a server that has since been replaced). The call is bounded by `limit`, the lease
    /// duration and `call_timeout`. A connection that turns out dropped is retried at once
    /// (up to three times, 10–90 ms apart, within the deadline), so a holder learns of a
    /// restart within a round trip of the server's return.
    pub(crate) async fn renew(&self, r: Renewal<'_>, limit: Duration) -> Result<bool> {
        let limit = r.ttl.min(limit);
        let started = tokio::time::Instant::now();
        let mut retried = 0;
        loop {
            if let Err(e) = self.check(Op::Renew, r.name, limit).await {
                if retry_reconnect(&mut retried, started, limit, e.is_retryable()).await {
                    continue;
                }
                return Err(e);
            }
            if self.outdated(r.epoch) {
                return Ok(false);
            }
            let lua = &SCRIPTS.renew;
            let key = self.lease_key(r.name);
            let mut cmd = lua.evalsha(std::slice::from_ref(&key));
            cmd.arg(id_match(r.lease_id)).arg(ttl_ms(r.ttl));
            match self.raw_call(limit, self.eval(lua, &key, cmd)).await {
                Ok(v) => return Ok(v),
                Err(f) => {
                    let fast = f.is_fast_connection_failure();
                    if !retry_reconnect(&mut retried, started, limit, fast).await {
                        return Err(f.into_error(Op::Renew, r.name));
                    }
                }
            }
        }
    }

    /// Renews many leases: one server gets one pipeline (EVALSHA each); a cluster gets one
    /// pipeline per hash slot, all sent at once over the cluster connection's multiplexed
    /// per-node connections (redis-rs routes a pipeline by a single slot). Results come back
    /// in the order of `items`. Each batch is bounded by `limit`, the shortest lease
    /// duration in it and `call_timeout`.
    pub(crate) async fn renew_many(
        &self,
        items: &[Renewal<'_>],
        limit: Duration,
    ) -> Vec<Result<bool>> {
        let mut groups: HashMap<Option<Slot>, Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let batch = self.conn.batch_of(&self.lease_key(item.name));
            groups.entry(batch).or_default().push(i);
        }
        let batches: Vec<Vec<usize>> = groups.into_values().collect();
        let answers = join_all(batches.iter().map(|idx| async move {
            let batch: Vec<Renewal<'_>> = idx.iter().map(|&i| items[i]).collect();
            self.renew_batch(&batch, limit).await
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
    /// which is harmless: renewing twice only extends again). A pipeline that fails on a
    /// dropped connection is sent again at once, as in [`renew`](Self::renew).
    async fn renew_batch(&self, items: &[Renewal<'_>], limit: Duration) -> Vec<Result<bool>> {
        let limit = items
            .iter()
            .map(|i| i.ttl)
            .min()
            .unwrap_or(limit)
            .min(limit);
        let first = items.first().map_or("", |i| i.name);
        let started = tokio::time::Instant::now();
        let mut retried = 0;
        let raw = loop {
            if let Err(e) = self.check(Op::Renew, first, limit).await {
                if retry_reconnect(&mut retried, started, limit, e.is_retryable()).await {
                    continue;
                }
                return items
                    .iter()
                    .map(|i| Err(e.clone().with_lease_name(i.name)))
                    .collect();
            }
            let live: Vec<Renewal<'_>> = items
                .iter()
                .filter(|i| !self.outdated(i.epoch))
                .copied()
                .collect();
            if live.is_empty() {
                break Ok((live, Vec::new()));
            }
            let mut results = self.renew_pipeline(&live, limit).await;
            let noscript = matches!(&results, Ok(v) if v.iter().any(|r| matches!(r, Err(e) if is_noscript(e))));
            if noscript {
                let mut conn = self.conn.clone();
                let key = self.lease_key(first);
                results = match self.raw_call(limit, conn.load(&SCRIPTS.renew, &key)).await {
                    Ok(()) => self.renew_pipeline(&live, limit).await,
                    Err(f) => Err(f),
                };
            }
            match results {
                Err(f)
                    if retry_reconnect(
                        &mut retried,
                        started,
                        limit,
                        f.is_fast_connection_failure(),
                    )
                    .await => {}
                r => break r.map(|v| (live, v)),
            }
        };
        match raw {
            Ok((live, replies)) => {
                // Outdated grants are lost without asking; the others take their reply.
                let mut replies = per_item(Ok(replies), &live).into_iter();
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
            Err(f) => {
                let e = f.into_error(Op::Renew, first);
                items
                    .iter()
                    .map(|i| Err(e.clone().with_lease_name(i.name)))
                    .collect()
            }
        }
    }

    async fn renew_pipeline(
        &self,
        items: &[Renewal<'_>],
        limit: Duration,
    ) -> std::result::Result<Vec<RedisResult<bool>>, Failure> {
        let mut pipe = redis::pipe();
        for r in items {
            let mut cmd = SCRIPTS.renew.evalsha(&[self.lease_key(r.name)]);
            cmd.arg(id_match(r.lease_id)).arg(ttl_ms(r.ttl));
            pipe.add_command(cmd);
        }
        pipe.ignore_errors();
        let mut conn = self.conn.clone();
        self.raw_call(limit, async move { conn.query_pipe(&pipe).await })
            .await
    }
}

/// One result per renewed item from a pipeline's replies.
fn per_item(results: Result<Vec<RedisResult<bool>>>, items: &[Renewal<'_>]) -> Vec<Result<bool>> {
    match results {
        // redis-rs reads one reply per command; the count is checked all the same, since
        // the core relies on one result per grant.
        Ok(v) if v.len() == items.len() => v
            .into_iter()
            .zip(items)
            .map(|(r, i)| r.map_err(|e| map_err(e, Op::Renew, Some(i.name))))
            .collect(),
        Ok(_) => items
            .iter()
            .map(|i| {
                Err(LeaseError::new(
                    leasing_abstractions::ErrorKind::Unexpected,
                    "redis answered a renewal batch with the wrong number of replies",
                )
                .with_lease_name(i.name))
            })
            .collect(),
        Err(e) => items
            .iter()
            .map(|i| Err(e.clone().with_lease_name(i.name)))
            .collect(),
    }
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
        let r = per_item(Ok(vec![Ok(true), Err(wrongtype)]), &items);
        assert!(matches!(r[0], Ok(true)));
        let e = r[1].as_ref().expect_err("wrongtype");
        assert_eq!(e.kind(), leasing_abstractions::ErrorKind::Unexpected);
        assert_eq!(e.lease_name(), Some("b"));
        // A short reply is an error for every item, never a shorter result list.
        let r = per_item(Ok(vec![Ok(true)]), &items);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(Result::is_err));
        let r = per_item(Err(LeaseError::unavailable("down")), &items);
        assert_eq!(r[1].as_ref().expect_err("down").lease_name(), Some("b"));
        assert_eq!(channel("lease:", "n"), "lease:{n}:released");
    }
}
