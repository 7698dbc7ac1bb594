//! `renew_many` as concurrent single renewals, a bounded number in flight.

use futures::StreamExt;
use std::future::Future;

/// Runs `renew` for each grant, at most `concurrency` (at least 1) at once, and returns
/// the answers in the order of `grants`: a provider's `renew_many` where each renewal
/// is its own request.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let grants = [1, 2, 3];
/// let answers = leasing_azure::renew_many(&grants, 2, |g| async move { *g * 10 }).await;
/// assert_eq!(answers, [10, 20, 30]);
/// # }
/// ```
pub async fn renew_many<'a, G, F, Fut>(
    grants: &'a [G],
    concurrency: usize,
    renew: F,
) -> Vec<Fut::Output>
where
    G: Sync,
    F: FnMut(&'a G) -> Fut + Send,
    Fut: Future + Send + 'a,
    Fut::Output: Send,
{
    // The calls are made up front (a future does nothing until polled): a stream that
    // held the closure would make the caller's future fail rustc's `Send` proof.
    let calls: Vec<Fut> = grants.iter().map(renew).collect();
    futures::stream::iter(calls)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn bounded_and_in_order() {
        let grants: Vec<u64> = (0..20).collect();
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let answers = renew_many(&grants, 3, |g| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Later grants finish first: the answers still come in grant order.
                tokio::time::sleep(Duration::from_millis(100 - *g)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                *g
            }
        })
        .await;
        assert_eq!(answers, grants);
        assert_eq!(most.load(Ordering::SeqCst), 3);
        // Zero is taken as one, never as "none at all".
        let answers = renew_many(&grants[..2], 0, |g| async move { *g }).await;
        assert_eq!(answers, [0, 1]);
        assert!(renew_many(&grants[..0], 4, |g| async move { *g })
            .await
            .is_empty());
    }
}
