//! What the fixtures ([`super::RedisServer`], [`super::AzuriteServer`],
//! [`super::CosmosEmulator`]) share: their builders' common settings, how they start a
//! [`Service`] in a folder of their own, and their wrapping of it.

use super::{Service, ServiceError};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The settings every fixture builder takes.
#[derive(Debug, Clone, Default)]
pub(super) struct Setup {
    parent: Option<PathBuf>,
    args: Vec<String>,
    start_timeout: Option<Duration>,
}

impl Setup {
    pub(super) fn set_parent(&mut self, parent: PathBuf) {
        self.parent = Some(parent);
    }

    pub(super) fn add_args(&mut self, args: impl IntoIterator<Item = String>) {
        self.args.extend(args);
    }

    pub(super) fn set_start_timeout(&mut self, bound: Duration) {
        self.start_timeout = Some(bound);
    }

    /// A fresh folder for a server `kind` on `port`, under the parent (or the system temp
    /// folder), emptied if it existed.
    pub(super) fn dir(&self, kind: &str, port: u16) -> Result<PathBuf, ServiceError> {
        let name = format!("leasing-{kind}-{port}-{}", std::process::id());
        let dir = self
            .parent
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServiceError::failed(format!("cannot create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Starts `command` with the extra arguments as the server `name` on `port`, its log
    /// `log` in `dir` (which it owns, and keeps when the start fails), after `configure`.
    pub(super) fn start(
        self,
        name: &str,
        mut command: Command,
        (port, dir, log): (u16, PathBuf, &str),
        configure: impl FnOnce(Service) -> Service,
    ) -> Result<Service, ServiceError> {
        command.args(&self.args);
        let log = dir.join(log);
        let service = Service::new(name, command, ([127, 0, 0, 1], port).into(), log);
        let mut service = configure(service.with_dir(dir));
        if let Some(bound) = self.start_timeout {
            service = service.with_start_timeout(bound);
        }
        if let Err(e) = service.start() {
            service.keep_dir(); // the whole log stays for a look
            return Err(e);
        }
        Ok(service)
    }
}

/// The setters of [`Setup`] on a builder with a `setup` field.
macro_rules! setup_setters {
    () => {
        /// Its folder (data and log) goes under `parent` instead of the system temp folder.
        pub fn dir(mut self, parent: impl Into<std::path::PathBuf>) -> Self {
            self.setup.set_parent(parent.into());
            self
        }

        /// More arguments for the server.
        pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
            self.setup.add_args(args.into_iter().map(Into::into));
            self
        }

        /// Bound its starts by `bound` instead of [`start_timeout`](crate::services::start_timeout).
        pub fn start_timeout(mut self, bound: std::time::Duration) -> Self {
            self.setup.set_start_timeout(bound);
            self
        }
    };
}

/// A fixture that wraps a [`Service`] in its `service` field and has a builder: `builder`
/// and `start`, derefs to the service, and gives it up with `into_service`.
macro_rules! wraps_service {
    ($fixture:ident, $builder:ident) => {
        impl $fixture {
            /// How to start one with more settings.
            pub fn builder() -> $builder {
                $builder::default()
            }

            /// One with the default settings.
            ///
            /// # Errors
            ///
            #[doc = concat!("As [`", stringify!($builder), "::start`].")]
            pub fn start() -> Result<Self, crate::services::ServiceError> {
                Self::builder().start()
            }

            /// The [`Service`](crate::services::Service) alone (to keep it with servers of
            /// other kinds).
            #[must_use]
            pub fn into_service(self) -> crate::services::Service {
                self.service
            }
        }

        impl std::ops::Deref for $fixture {
            type Target = crate::services::Service;
            fn deref(&self) -> &crate::services::Service {
                &self.service
            }
        }

        impl std::ops::DerefMut for $fixture {
            fn deref_mut(&mut self) -> &mut crate::services::Service {
                &mut self.service
            }
        }
    };
}
