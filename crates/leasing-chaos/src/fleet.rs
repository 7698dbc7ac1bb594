//! What a run is made of: its clients (threads or processes) and its state. `run.rs`
//! drives it, `faults.rs` injects faults into it.

use crate::backend::Target;
use crate::opts::RunOpts;
use leasing_abstractions::fault::FaultControl;
use leasing_abstractions::InMemoryLeaseProvider;
use leasing_testkit::fenced::{FencedResource, FencedServer};
use leasing_testkit::history::Recorder;
use nix::unistd::Pid;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A client in a thread of this process (in-memory backend): its own runtime and its own
/// fault-injecting view of the shared provider.
pub(crate) struct ThreadClient {
    pub(crate) id: String,
    pub(crate) control: FaultControl,
    pub(crate) pause: tokio::sync::mpsc::UnboundedSender<Duration>,
    pub(crate) kill: CancellationToken,
    pub(crate) join: Option<std::thread::JoinHandle<()>>,
}

/// A client process.
pub(crate) struct ProcClient {
    pub(crate) id: String,
    pub(crate) child: tokio::process::Child,
}

impl ProcClient {
    pub(crate) fn pid(&self) -> Option<Pid> {
        self.child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(Pid::from_raw)
    }
}

pub(crate) enum Fleet {
    Threads {
        /// The self-test's unsafe provider instead of the in-memory one.
        stealing: bool,
        shared: InMemoryLeaseProvider,
        fence: FencedResource,
        clients: Vec<ThreadClient>,
        latency: Duration,
        cut: bool,
    },
    Processes {
        target: Target,
        fence: FencedServer,
        clients: Vec<ProcClient>,
        skew: Option<PathBuf>,
    },
}

pub(crate) struct Run {
    pub(crate) backend: String,
    pub(crate) o: RunOpts,
    pub(crate) dir: PathBuf,
    pub(crate) names: Vec<String>,
    pub(crate) until_ns: u64,
    pub(crate) rec: Recorder,
    pub(crate) rng: fastrand::Rng,
    pub(crate) next_client: usize,
    pub(crate) fleet: Fleet,
}
