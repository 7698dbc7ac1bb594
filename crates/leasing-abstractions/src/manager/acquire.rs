//! Acquisition: the attempt loop with its deadlines, the grant that is released unless it
//! becomes a lease (`PendingGrant`), and the wait for a release notification.

use super::*;

impl LeaseManager {
    pub(super) fn prepare(
        &self,
        name: &str,
        options: AcquireOptions,
    ) -> Result<(AcquireRequest, Option<crate::RenewalPolicy>)> {
        let duration = options
            .duration
            .unwrap_or(self.options.default_lease_duration);
        let metadata = options
            .metadata
            .unwrap_or_else(|| self.options.metadata.clone());
        let request = AcquireRequest::new(name, duration, metadata);
        validate_request(&request, &self.provider().capabilities())
            .and_then(|()| self.options.renewal_policy(duration).map(|p| (request, p)))
            .map_err(|e| e.or_lease(name, None).with_operation(Operation::Acquire))
    }

    pub(super) async fn acquire_loop(
        &self,
        request: AcquireRequest,
        policy: Option<crate::RenewalPolicy>,
        (timeout, retry): (Option<Duration>, Duration),
        span: Span,
    ) -> Result<Lease> {
        let started = Instant::now();
        let deadline = timeout.map(|t| after(started, t));
        // A zero timeout is one attempt, waited for in full (see `acquire`).
        let first_deadline = match timeout {
            Some(t) if t.is_zero() => Some(self.whole_attempt(&request, started)),
            _ => deadline,
        };
        // Subscribed to release notifications only once the name is found held, so that
        // uncontended acquisitions cost the backend no subscription.
        let mut releases = None;
        let mut subscribed = false;
        let mut rng = fastrand::Rng::new();
        let mut attempts: u32 = 0;
        // What the last attempt met, for the error if none succeeds.
        let mut last: Option<LeaseError>;
        // Whether the last attempt found the name held (only then is a release worth
        // waiting for: after a failure, our own release of a late grant would wake us).
        let mut held;
        // The same, for the metrics: a timeout after an answered attempt found the name held
        // is contention (`held`), even if a later attempt was still in flight at the deadline.
        let answered_held = AtomicBool::new(false);
        let finish = |result: Result<Lease>, attempts: u32| {
            span.record("lease.retry_count", attempts.saturating_sub(1));
            match &result {
                Ok(lease) => {
                    span.record("lease.result", RESULT_SUCCESS);
                    span.record("lease.id", lease.lease_id());
                }
                Err(e) => {
                    span.record("lease.result", "failure");
                    span.record("lease.failure_reason", e.kind().as_str());
                    let label = if e.kind() == ErrorKind::Timeout && answered_held.load(Relaxed) {
                        RESULT_HELD
                    } else {
                        acquisition_failure_label(e)
                    };
                    self.ctx
                        .metrics
                        .acquisition(&request.name, label, started.elapsed());
                    tracing::debug!(lease.name = %request.name, error = %e, "lease acquisition failed");
                }
            }
            result.map_err(|e| e.with_operation(Operation::Acquire))
        };
        let timed_out = |attempts: u32, last: Option<LeaseError>| {
            let cause = last.unwrap_or_else(|| held_error(&request.name));
            timeout_error(&request.name, timeout.unwrap_or_default(), attempts, cause)
        };
        loop {
            attempts += 1;
            let bound = if attempts == 1 {
                first_deadline
            } else {
                deadline
            };
            match self.attempt(&request, bound).await {
                Ok(Some(grant)) => {
                    return finish(Ok(self.make_lease(grant, policy, &span, started)), attempts)
                }
                Ok(None) => {
                    held = true;
                    answered_held.store(true, Relaxed);
                    last = Some(held_error(&request.name));
                }
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    return finish(Err(timed_out(attempts, Some(e))), attempts)
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!(lease.name = %request.name, error = %e, "acquisition attempt failed; retrying");
                    held = false;
                    answered_held.store(false, Relaxed);
                    last = Some(e);
                }
                Err(e) => return finish(Err(e), attempts),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return finish(Err(timed_out(attempts, last)), attempts);
            }
            if !subscribed {
                subscribed = true;
                releases = self.provider().release_notifications(&request.name);
                if releases.is_some() {
                    // A release between the failed attempt and the subscription would be
                    // missed: look again now that we would hear of the next one.
                    continue;
                }
            }
            let pause = scale(retry, 0.5 + rng.f64());
            let next = after(Instant::now(), pause);
            let wake = deadline.map_or(next, |d| d.min(next));
            if held {
                wait_for_release(&mut releases, &request.name, wake).await;
            } else {
                tokio::time::sleep_until(wake).await;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return finish(Err(timed_out(attempts, last)), attempts);
            }
        }
    }

    /// One attempt ([`attempt_call`](Self::attempt_call)), its backend time recorded in
    /// `leasing.acquisition.attempt.duration` (no waiting between attempts included).
    pub(super) async fn attempt(
        &self,
        request: &AcquireRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<LeaseGrant>> {
        let started = Instant::now();
        let result = self.attempt_call(request, deadline).await;
        let label = match &result {
            Ok(Some(_)) => RESULT_SUCCESS,
            Ok(None) => RESULT_HELD,
            Err(e) => e.kind().as_str(),
        };
        self.ctx
            .metrics
            .attempt(&request.name, label, started.elapsed());
        result
    }

    /// One provider call, run in its own task so that a grant arriving after the caller
    /// gave up (dropped future, timeout) is released instead of leaked.
    pub(super) async fn attempt_call(
        &self,
        request: &AcquireRequest,
        deadline: Option<Instant>,
    ) -> Result<Option<LeaseGrant>> {
        let (tx, rx) = oneshot::channel::<Result<Option<LeaseGrant>>>();
        let mut pending = PendingGrant {
            rx,
            provider: Arc::clone(self.provider()),
        };
        let provider = Arc::clone(self.provider());
        let req = request.clone();
        let sent = Instant::now();
        // The call itself may take the lease's duration (a grant answered later has expired
        // anyway; 30 s for an infinite lease): it outlives a caller that stops waiting
        // sooner, so that a late grant is released rather than left to expire.
        let call_deadline = after(
            sent,
            request
                .duration
                .as_finite()
                .unwrap_or(crate::options::INFINITE_CALL_BOUND),
        );
        tokio::spawn(
            async move {
                let result = crate::contract::within(
                    call_deadline,
                    Operation::Acquire,
                    provider.try_acquire(&req),
                )
                .await;
                if let Err(Ok(Some(grant))) = tx.send(result) {
                    tracing::debug!(lease.name = %grant.name, "acquirer gone; releasing the late grant");
                    release_late(provider.as_ref(), &grant).await;
                }
            }
            .in_current_span(),
        );
        let received = match deadline {
            Some(d) => tokio::time::timeout_at(d, &mut pending.rx).await.ok(),
            None => Some((&mut pending.rx).await),
        };
        match received {
            Some(Ok(Ok(Some(mut grant)))) => {
                // Validity counts from the earliest instant the request may have left.
                grant.sent_at = grant.sent_at.min(sent);
                let window = grant
                    .duration
                    .as_finite()
                    .map(|d| safety_window(d, self.options.auto_renew_safety_threshold));
                if window.is_some_and(|w| Instant::now() >= after(grant.sent_at, w)) {
                    // The answer took so long that the lease may already have expired and
                    // been granted to someone else: never hand it out.
                    release_detached(self.provider(), grant);
                    return Err(LeaseError::unavailable(
                        "the grant arrived after its safety deadline; released it",
                    )
                    .with_lease_name(&request.name));
                }
                Ok(Some(grant))
            }
            // The backend's own call deadline is a transient failure; only the acquire
            // deadline makes an attempt a `Timeout`.
            Some(Ok(Err(e))) if e.kind() == ErrorKind::Timeout => Err(LeaseError::unavailable(
                format!("the backend call timed out: {}", e.message()),
            )
            .with_lease_name(&request.name)
            .with_source(e)),
            Some(Ok(result)) => result.map_err(|e| e.or_lease(&request.name, None)),
            Some(Err(_)) => Err(LeaseError::new(
                ErrorKind::Unexpected,
                "the acquisition task panicked",
            )
            .with_lease_name(&request.name)),
            None => Err(LeaseError::new(
                ErrorKind::Timeout,
                "the attempt was still waiting for the backend's answer at the acquire deadline",
            )
            .with_lease_name(&request.name)),
        }
    }

    /// The deadline of an attempt that is waited for in full (a zero timeout): a grant is
    /// worthless once its safety window has passed (it would be released, not handed
    /// out), so no attempt waits longer than that; 30 s for an infinite lease.
    pub(super) fn whole_attempt(&self, request: &AcquireRequest, started: Instant) -> Instant {
        let window = request
            .duration
            .as_finite()
            .map_or(crate::options::INFINITE_CALL_BOUND, |d| {
                safety_window(d, self.options.auto_renew_safety_threshold)
            });
        after(started, window)
    }

    pub(super) fn make_lease(
        &self,
        grant: LeaseGrant,
        policy: Option<crate::RenewalPolicy>,
        span: &Span,
        started: Instant,
    ) -> Lease {
        let acquire_cx = span.context().span().span_context().clone();
        let elapsed = started.elapsed();
        tracing::info!(
            lease.name = %grant.name,
            lease.id = %grant.lease_id,
            fencing_token = grant.fencing_token,
            "lease acquired"
        );
        self.ctx
            .metrics
            .acquisition(&grant.name, RESULT_SUCCESS, elapsed);
        let shared = Arc::new(LeaseShared::new(
            grant,
            policy,
            self.options.auto_renew_safety_threshold,
            Arc::clone(&self.ctx) as Arc<dyn crate::lease::LeaseHost>,
            acquire_cx,
        ));
        self.ctx.register(&shared);
        Lease::new(shared)
    }
}

/// The `Timeout` of an acquisition: the whole timeout, the attempts, and what the last
/// attempt met (kept as the source).
pub(super) fn timeout_error(
    name: &str,
    timeout: Duration,
    attempts: u32,
    cause: LeaseError,
) -> LeaseError {
    let tries = if attempts == 1 { "attempt" } else { "attempts" };
    LeaseError::new(
        ErrorKind::Timeout,
        format!(
            "not acquired within {timeout:?} ({attempts} {tries}); last attempt: {}",
            cause.message()
        ),
    )
    .with_lease_name(name)
    .with_source(cause)
}

/// What an attempt that found the name held met.
pub(super) fn held_error(name: &str) -> LeaseError {
    LeaseError::new(ErrorKind::Conflict, "the name is held by another owner").with_lease_name(name)
}

/// The receiving end of one acquisition attempt. Dropped while a grant sits in the channel
/// (the caller gave up in the very instant the grant arrived), it releases the grant, so
/// a cancelled `acquire` never leaves a lease held. The sending task releases grants that
/// arrive after the drop.
pub(super) struct PendingGrant {
    rx: oneshot::Receiver<Result<Option<LeaseGrant>>>,
    provider: Arc<dyn LeaseProvider>,
}

impl Drop for PendingGrant {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok(Some(grant))) = self.rx.try_recv() {
            release_detached(&self.provider, grant);
        }
    }
}

/// Releases `grant` in the background, if there is a runtime to do it on (otherwise the
/// backend expires it).
pub(super) fn release_detached(provider: &Arc<dyn LeaseProvider>, grant: LeaseGrant) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let provider = Arc::clone(provider);
        handle.spawn(async move { release_late(provider.as_ref(), &grant).await });
    }
}

/// Releases a grant nobody will hold, within what is left of its duration (at least 1 s,
/// at most 30 s): past that the backend has expired it anyway.
async fn release_late(provider: &dyn LeaseProvider, grant: &LeaseGrant) {
    let now = Instant::now();
    let left = grant.duration.as_finite().map_or(Duration::MAX, |d| {
        after(grant.sent_at, d).saturating_duration_since(now)
    });
    let deadline = after(now, crate::options::release_bound(left));
    let _ = crate::contract::within(deadline, Operation::Release, provider.release(grant)).await;
}

/// After missing notifications, how soon a waiter looks again (not at once: under heavy
/// release churn it would otherwise spin).
pub(super) const LAGGED_RETRY: Duration = Duration::from_millis(20);

/// Waits until `wake`, or until `name` is reported released.
pub(super) async fn wait_for_release(
    releases: &mut Option<broadcast::Receiver<String>>,
    name: &str,
    wake: Instant,
) {
    let sleep = tokio::time::sleep_until(wake);
    tokio::pin!(sleep);
    loop {
        let Some(rx) = releases.as_mut() else {
            sleep.await;
            return;
        };
        tokio::select! {
            () = &mut sleep => return,
            msg = rx.recv() => match msg {
                Ok(released) if released == name => return,
                Ok(_) => {}
                // Missed messages may include ours: look again soon.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let soon = after(Instant::now(), LAGGED_RETRY);
                    if soon < sleep.deadline() {
                        sleep.as_mut().reset(soon);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => *releases = None,
            },
        }
    }
}
