//! Clean-up of grants whose acquire answer was lost (ghosts).

use crate::node::Node;
use std::sync::Arc;

/// Fires a best-effort `release(name, lease_id)` on `node` in the background (bounded by
/// `call_timeout`; the release script compares the lease id, so it never touches another
/// holder). Used after an acquire that was, or may have been, sent and whose answer was
/// lost, failed or no longer wanted: otherwise a grant nobody knows of (a ghost) would
/// block the name until its TTL. Commands on one connection are executed in order, so the
/// release lands after the acquire it cleans up. Outside a runtime nothing is sent.
pub(crate) fn release_in_background(
    node: &Arc<Node>,
    name: &str,
    lease_id: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    let (node, name, lease_id) = (node.clone(), name.to_owned(), lease_id.to_owned());
    Some(rt.spawn(async move {
        if let Err(e) = node.release(&name, &lease_id).await {
            tracing::debug!(error = %e, "best-effort release after a failed acquire failed");
        }
    }))
}

/// Releases `lease_id` on `nodes` in the background when dropped while armed: covers an
/// acquire that failed, timed out or was cancelled after its script may have been sent.
pub(crate) struct GhostGuard<'a> {
    nodes: &'a [Arc<Node>],
    name: &'a str,
    lease_id: &'a str,
    armed: bool,
}

impl<'a> GhostGuard<'a> {
    pub(crate) fn new(nodes: &'a [Arc<Node>], name: &'a str, lease_id: &'a str) -> Self {
        Self {
            nodes,
            name,
            lease_id,
            armed: true,
        }
    }

    /// The outcome is known and handled: nothing to release on drop.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for GhostGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            for node in self.nodes {
                release_in_background(node, self.name, self.lease_id);
            }
        }
    }
}
