//! Why a private server did not start.

use std::fmt;

/// Why a private server did not start: something it needs is not installed
/// ([`ServiceError::is_missing`]: a test may skip, see [`super::skip_if_missing`]), or it
/// was there and failed (the message says what was run and waited for, and ends with the
/// end of the server's log).
///
/// `Debug` prints the message as `Display` does, so that `.expect(..)` shows the log
/// readably.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceError {
    message: String,
    missing: bool,
}

impl ServiceError {
    /// Something the server needs is not installed.
    pub(crate) fn missing(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            missing: true,
        }
    }

    /// It was there and did not start.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            missing: false,
        }
    }

    /// Whether what the server needs (its program, its package) is not installed, as
    /// opposed to a server that was there and failed.
    #[must_use]
    pub fn is_missing(&self) -> bool {
        self.missing
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<ServiceError> for String {
    fn from(e: ServiceError) -> Self {
        e.message
    }
}
