//! The state a lease handle shares with the renewal scheduler: the deadlines, the
//! recorded state and its transitions, and what a renewal's answer does to them.

use super::*;

/// What one renewal call did to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenewOutcome {
    Renewed,
    Lost,
    Failed,
    /// Failed, but a renewal sent later has already succeeded.
    Superseded,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// What a lease needs from the manager that granted it: the provider, the metrics, and
/// the renewal scheduler's bookkeeping. Implemented by the scheduler's context
/// (`renewal::Ctx`); a trait so that imports run one way: the scheduler owns leases and
/// depends on this module, a lease does not depend on the scheduler.
pub(crate) trait LeaseHost: Send + Sync {
    /// The provider that granted the lease.
    fn provider(&self) -> &Arc<dyn LeaseProvider>;
    /// The manager's instruments.
    fn metrics(&self) -> &Metrics;
    /// Stops tracking and renewing the lease `key`. Never blocks.
    fn forget(&self, key: u64);
    /// Releases `lease` in the background. Never blocks and needs no runtime.
    fn release_in_background(&self, lease: Arc<LeaseShared>);
}

/// State shared by a [`Lease`] handle and the renewal scheduler.
pub(crate) struct LeaseShared {
    pub(crate) key: u64,
    pub(crate) grant: Arc<LeaseGrant>,
    pub(crate) policy: Option<RenewalPolicy>,
    /// Window after a renewal's send within which the lease is trusted; `None` if infinite.
    pub(crate) safety_window: Option<Duration>,
    pub(crate) ctx: Arc<dyn LeaseHost>,
    pub(super) last_sent: Mutex<Instant>,
    pub(super) state: watch::Sender<LeaseState>,
    pub(super) lost_reason: Mutex<Option<LostReason>>,
    /// Created on the first subscription: most leases have no listener, and a channel's
    /// buffer is the largest part of a lease's memory.
    pub(super) events: OnceLock<broadcast::Sender<LeaseEvent>>,
    pub(super) token: CancellationToken,
    pub(super) acquired: Instant,
    /// The acquisition span's OpenTelemetry context, linked from renewal spans.
    pub(crate) acquire_cx: opentelemetry::trace::SpanContext,
}

impl LeaseShared {
    pub(crate) fn new(
        grant: LeaseGrant,
        policy: Option<RenewalPolicy>,
        safety_threshold: f64,
        ctx: Arc<dyn LeaseHost>,
        acquire_cx: opentelemetry::trace::SpanContext,
    ) -> Self {
        let safety_window = grant
            .duration
            .as_finite()
            .map(|d| crate::options::safety_window(d, safety_threshold));
        Self {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            last_sent: Mutex::new(grant.sent_at),
            grant: Arc::new(grant),
            policy,
            safety_window,
            ctx,
            state: watch::channel(LeaseState::Held).0,
            lost_reason: Mutex::new(None),
            events: OnceLock::new(),
            token: CancellationToken::new(),
            acquired: Instant::now(),
            acquire_cx,
        }
    }

    /// The state as last recorded, without looking at the clock.
    pub(super) fn recorded_state(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// Whether the lease was released or declared lost (bookkeeping of the scheduler).
    pub(crate) fn ended(&self) -> bool {
        !self.recorded_state().is_active()
    }

    /// Whether the safety deadline has passed: the holder may no longer act.
    pub(super) fn past_deadline(&self) -> bool {
        self.safety_deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// The state, answered from the safety deadline at the moment of asking: an active
    /// lease past its deadline is `Lost`, whether or not the scheduler has run since (a
    /// holder resuming from a long pause must not be told it holds).
    pub(crate) fn state(&self) -> LeaseState {
        match self.recorded_state() {
            s if s.is_active() && self.past_deadline() => LeaseState::Lost,
            s => s,
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.state().is_active()
    }

    /// Declares the lease lost if its safety deadline has passed (and frees it in the
    /// background). Returns whether it is still active.
    pub(crate) fn check_deadline(self: &Arc<Self>) -> bool {
        if self.ended() {
            return false;
        }
        if !self.past_deadline() {
            return true;
        }
        if self.mark_lost(LostReason::SafetyDeadline) {
            self.ctx.release_in_background(Arc::clone(self));
        }
        false
    }

    /// Resolves when the lease ends: `Some(reason)` when lost (at the safety deadline
    /// itself at the latest), `None` when released. Cancel-safe.
    pub(crate) async fn wait_end(self: &Arc<Self>) -> Option<LostReason> {
        let mut rx = self.state.subscribe();
        loop {
            // The deadline is watched here too, not only by the renewal engine: a waiter
            // learns of the loss at the deadline itself.
            self.check_deadline();
            match *rx.borrow_and_update() {
                LeaseState::Lost => break,
                LeaseState::Released => return None,
                LeaseState::Held | LeaseState::AtRisk => {}
            }
            let deadline = self.safety_deadline();
            tokio::select! {
                // The sender lives in `self`, so `changed` cannot fail while we wait.
                _ = rx.changed() => {}
                () = sleep_until_opt(deadline) => {}
            }
        }
        Some(
            self.lost_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or(LostReason::SafetyDeadline),
        )
    }

    pub(crate) fn last_sent(&self) -> Instant {
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the holder stops trusting the lease without a renewal; `None` if infinite.
    pub(crate) fn safety_deadline(&self) -> Option<Instant> {
        self.safety_window
            .map(|w| crate::options::after(self.last_sent(), w))
    }

    /// Time left before the safety deadline, the moment the holder stops trusting the
    /// lease: within Redlock's validity (`duration − elapsed since the last successful
    /// send − drift`) and never past `duration × threshold`; `None` if infinite.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let deadline = self.safety_deadline()?;
        if !self.is_active() {
            return Some(Duration::ZERO);
        }
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    pub(super) fn emit(&self, event: LeaseEvent) {
        self.emit_with(|| event);
    }

    /// The renewal span of this lease, linked to its acquisition.
    pub(crate) fn renewal_span(&self, kind: spans::Renewal) -> Span {
        spans::renewal(
            kind,
            &self.grant,
            self.ctx.provider().provider_name(),
            &self.acquire_cx,
        )
    }

    /// The error of a renewal cut off at the lease's safety deadline.
    pub(crate) fn deadline_error(&self) -> LeaseError {
        LeaseError::new(
            crate::ErrorKind::ProviderUnavailable,
            "renewal did not complete before the safety deadline",
        )
        .with_lease_name(&self.grant.name)
        .with_lease_id(&self.grant.lease_id)
    }

    /// Calls the provider's release inside a `Lease.Release` span, bounded by `timeout`.
    pub(crate) async fn release_now(&self, timeout: Duration) -> Result<()> {
        let provider = self.ctx.provider();
        let span = spans::release(&self.grant, provider.provider_name());
        let deadline = crate::options::after(tokio::time::Instant::now(), timeout);
        let result =
            crate::contract::within(deadline, Operation::Release, provider.release(&self.grant))
                .instrument(span.clone())
                .await
                .map_err(|e| e.or_lease(&self.grant.name, Some(&self.grant.lease_id)));
        spans::record_result(&span, &result, 0);
        result
    }

    /// Builds and sends an event only if someone ever subscribed.
    pub(super) fn emit_with(&self, event: impl FnOnce() -> LeaseEvent) {
        if let Some(tx) = self.events.get() {
            // No subscriber left is fine.
            let _ = tx.send(event());
        }
    }

    pub(super) fn on_renewed(&self, sent: Instant, elapsed: Duration) {
        self.ctx
            .metrics()
            .renewal(&self.grant.name, RESULT_SUCCESS, elapsed);
        {
            // Never backwards: an older renewal answering late must not shorten the
            // validity a newer one established.
            let mut last = self.last_sent.lock().unwrap_or_else(|p| p.into_inner());
            *last = (*last).max(sent);
        }
        let recovered = self.state.send_if_modified(|s| {
            let changed = *s == LeaseState::AtRisk;
            if changed {
                *s = LeaseState::Held;
            }
            changed
        });
        if recovered {
            self.ctx.metrics().at_risk(&self.grant.name, -1);
        }
        tracing::debug!(lease.name = %self.grant.name, lease.id = %self.grant.lease_id, "lease renewed");
        self.emit_with(|| LeaseEvent::Renewed {
            remaining: self.remaining().unwrap_or(Duration::MAX),
        });
    }

    pub(super) fn on_renew_failed(&self, attempt: u32, error: LeaseError, elapsed: Duration) {
        self.ctx
            .metrics()
            .renewal(&self.grant.name, error.kind().as_str(), elapsed);
        let remaining = self.remaining().unwrap_or(Duration::MAX);
        tracing::warn!(
            lease.name = %self.grant.name,
            lease.id = %self.grant.lease_id,
            attempt,
            remaining_ms = remaining.as_millis() as u64,
            error = %error,
            "lease renewal failed"
        );
        self.emit(LeaseEvent::RenewalFailed {
            attempt,
            error,
            remaining,
        });
        let became_at_risk = self.state.send_if_modified(|s| {
            let changed = *s == LeaseState::Held;
            if changed {
                *s = LeaseState::AtRisk;
            }
            changed
        });
        if became_at_risk {
            self.ctx.metrics().at_risk(&self.grant.name, 1);
            self.emit(LeaseEvent::AtRisk { remaining });
        }
    }

    /// Moves an active lease to `to` (Lost or Released). Returns false if it had already ended.
    pub(super) fn end(&self, to: LeaseState) -> bool {
        self.end_with(to, None)
    }

    /// Ends an active lease; the loss reason is recorded in the same step as the state, so
    /// `lost()` always finds it and an ended lease never gets a (second) reason.
    pub(super) fn end_with(&self, to: LeaseState, reason: Option<&LostReason>) -> bool {
        // The recorded state: a lease past its deadline is still ended here exactly once.
        let mut was_at_risk = false;
        let ended = self.state.send_if_modified(|s| {
            let active = s.is_active();
            was_at_risk = *s == LeaseState::AtRisk;
            if active {
                if let Some(r) = reason {
                    *self.lost_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
                }
                *s = to;
            }
            active
        });
        if ended {
            let result = if to == LeaseState::Lost {
                "lost"
            } else {
                "released"
            };
            self.ctx
                .metrics()
                .ended(&self.grant.name, result, self.acquired.elapsed());
            if was_at_risk {
                self.ctx.metrics().at_risk(&self.grant.name, -1);
            }
            self.token.cancel();
        }
        ended
    }

    /// Applies the result of one renewal call. `attempt` counts failures in a row,
    /// this one included.
    pub(crate) fn on_renew_result(
        self: &Arc<Self>,
        result: &Result<()>,
        sent: Instant,
        elapsed: Duration,
        attempt: u32,
    ) -> RenewOutcome {
        // The lease ended (released, lost) while the call was in flight, or its safety
        // deadline passed before the answer came: a late success must not revive it or
        // announce a renewal.
        if !self.check_deadline() {
            return RenewOutcome::Lost;
        }
        match result {
            Ok(()) => {
                self.on_renewed(sent, elapsed);
                RenewOutcome::Renewed
            }
            Err(e) if e.kind() == crate::ErrorKind::Lost => {
                self.ctx
                    .metrics()
                    .renewal(&self.grant.name, e.kind().as_str(), elapsed);
                if self.mark_lost(LostReason::Revoked(e.clone())) {
                    // Usually gone already; but a quorum backend can report the loss while
                    // some of its servers still hold our grant. Releasing is harmless to
                    // whoever holds it now.
                    self.ctx.release_in_background(Arc::clone(self));
                }
                RenewOutcome::Lost
            }
            // A later renewal succeeded while this one was in flight (a manual renewal
            // beside the engine's): its failure says nothing about the lease now.
            Err(_) if sent < self.last_sent() => RenewOutcome::Superseded,
            Err(e) => {
                self.on_renew_failed(attempt, e.clone(), elapsed);
                RenewOutcome::Failed
            }
        }
    }

    pub(crate) fn mark_lost(&self, reason: LostReason) -> bool {
        if !self.end_with(LeaseState::Lost, Some(&reason)) {
            return false;
        }
        tracing::error!(
            lease.name = %self.grant.name,
            lease.id = %self.grant.lease_id,
            lease.failure_reason = reason.label(),
            "lease lost: {reason}"
        );
        self.emit(LeaseEvent::Lost { reason });
        true
    }

    pub(crate) fn mark_released(&self) -> bool {
        if !self.end(LeaseState::Released) {
            return false;
        }
        tracing::info!(lease.name = %self.grant.name, lease.id = %self.grant.lease_id, "lease released");
        self.emit(LeaseEvent::Released);
        true
    }

    /// How long a release call may take: the validity left, within [1 s, 30 s].
    pub(crate) fn release_timeout(&self) -> Duration {
        crate::options::release_bound(self.remaining().unwrap_or(Duration::MAX))
    }
}

pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
