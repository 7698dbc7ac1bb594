//! Captures the log events (`tracing`) code emits, for tests that check what is logged and
//! at which level.
//!
//! ```
//! let logs = leasing_testkit::logs::Captured::default();
//! let _guard = logs.install();
//! tracing::warn!("the fence is off");
//! assert_eq!(logs.at(tracing::Level::WARN), ["the fence is off"]);
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The events seen while installed: their level and message, in order. Clones share them.
#[derive(Clone, Default, Debug)]
pub struct Captured(Arc<Mutex<Vec<(Level, String)>>>);

impl Captured {
    /// Captures this thread's events until the guard is dropped.
    #[must_use = "events are captured only while the guard lives"]
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    /// Every event so far: level and message.
    pub fn events(&self) -> Vec<(Level, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The messages of the events at `level`.
    pub fn at(&self, level: Level) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m)
            .collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl Visit for Message {
            fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((*event.metadata().level(), m.0));
    }
}
