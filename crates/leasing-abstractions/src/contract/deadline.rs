//! The deadline of a provider call: set by the core, read by the backend.
//!
//! The core decides how long every call to a provider may take (the time left before a
//! lease's safety deadline, the caller's acquire timeout, an operator call's bound) and
//! runs the call [`within`] that deadline: the call is dropped when it passes, and the
//! caller gets one error ([`deadline_passed`]). While the call runs, the backend reads
//! the deadline with [`deadline`] or [`time_left`] (a task-local value, visible to
//! everything the call awaits in its own task) to pass it on (a server-side timeout, how
//! long a quorum protocol may wait) and never sets a timeout of its own. Outside such a
//! call (a test or a tool calling a provider directly) there is no deadline, and only the
//! backend's transport settings (its response timeout) bound a call.

use crate::error::{LeaseError, Operation};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the provider call being made in this task, as the core set it; `None`
/// outside a call made [`within`] a deadline.
///
/// ```
/// use leasing_abstractions::provider::{deadline, within};
/// use leasing_abstractions::Operation;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let at = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
/// assert_eq!(deadline(), None);
/// let seen = within(at, Operation::Renew, async { Ok(deadline()) }).await.unwrap();
/// assert_eq!(seen, Some(at));
/// # }
/// ```
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// The time left until [`deadline`] (zero once it has passed); `None` without one.
pub fn time_left() -> Option<Duration> {
    deadline().map(|d| d.saturating_duration_since(Instant::now()))
}

/// The error of a call whose deadline passed before it answered: `ProviderUnavailable`
/// (retryable), naming the operation and how long the call had. The same for every
/// operation and every backend.
pub fn deadline_passed(operation: Operation, had: Duration) -> LeaseError {
    // To the nearest millisecond: the instants are taken a few µs apart.
    let had = Duration::from_millis(
        u64::try_from(had.as_micros().saturating_add(500) / 1000).unwrap_or(u64::MAX),
    );
    LeaseError::unavailable(format!(
        "the backend did not answer the {operation} call within its deadline ({had:?})"
    ))
    .with_operation(operation)
}

/// Runs `call` with `deadline` as its [`deadline`], dropping it when the deadline passes:
/// then the result is [`deadline_passed`]. How the core calls every provider method; a
/// tool calling a provider directly may use it too.
///
/// # Errors
/// What `call` returns, or [`deadline_passed`].
pub async fn within<T>(
    deadline: Instant,
    operation: Operation,
    call: impl Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    let had = deadline.saturating_duration_since(Instant::now());
    bounded(deadline, call)
        .await
        .unwrap_or_else(|| Err(deadline_passed(operation, had)))
}

/// Runs `call` with `deadline` as its [`deadline`]; `None` when the deadline passed first
/// (for callers that map that case themselves).
pub(crate) async fn bounded<F: Future>(deadline: Instant, call: F) -> Option<F::Output> {
    DEADLINE
        .scope(deadline, tokio::time::timeout_at(deadline, call))
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[tokio::test(start_paused = true)]
    async fn a_call_sees_its_deadline_and_is_dropped_when_it_passes() {
        let at = crate::options::after(Instant::now(), Duration::from_secs(2));
        let left = within(at, Operation::Inspect, async { Ok(time_left()) })
            .await
            .unwrap();
        assert_eq!(left, Some(Duration::from_secs(2)));
        let e = within(at, Operation::Inspect, async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProviderUnavailable);
        assert_eq!(e.operation(), Some(Operation::Inspect));
        assert!(e.message().contains("(2s)"), "{e}");
        // Rounded to the millisecond.
        let e = deadline_passed(Operation::Renew, Duration::from_micros(299_997));
        assert!(e.message().contains("(300ms)"), "{e}");
        let e = deadline_passed(Operation::Renew, Duration::MAX);
        assert!(e.message().contains("within its deadline"), "{e}");
        assert!(e.is_retryable());
        // Outside the call, no deadline.
        assert_eq!(deadline(), None);
        assert_eq!(time_left(), None);
        // Past it: zero left, not a panic.
        let seen = within(
            crate::options::after(Instant::now(), Duration::from_millis(5)),
            Operation::Renew,
            async {
                tokio::time::sleep(Duration::from_millis(3)).await;
                Ok(time_left())
            },
        )
        .await
        .unwrap();
        assert_eq!(seen, Some(Duration::from_millis(2)));
    }
}
