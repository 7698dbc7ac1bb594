//! The one error type of the crate family and its kinds.

use std::fmt;
use std::sync::Arc;

/// A boxed error kept as the `source` of a [`LeaseError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout the crate family.
pub type Result<T, E = LeaseError> = std::result::Result<T, E>;

/// What went wrong, coarse enough to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The lease is held by someone else. Retryable.
    Conflict,
    /// Acquisition did not succeed within the acquire timeout.
    Timeout,
    /// The lease is definitively lost (taken over, expired, deleted). Terminal.
    Lost,
    /// The backend could not be reached or answered with a transient failure. Retryable.
    ProviderUnavailable,
    /// The backend rejected our credentials.
    Unauthorized,
    /// An argument (name, duration, metadata…) broke a documented rule.
    InvalidArgument,
    /// The provider or manager configuration is invalid.
    Configuration,
    /// The provider does not support the operation (listing, infinite leases…).
    Unsupported,
    /// The backend answered something the provider does not understand (a status or
    /// reply it has no rule for, a record it cannot read), or something failed that
    /// cannot be classified (a provider that panicked). The same on every backend and
    /// every operation. Not retryable unless the backend marked it temporary
    /// ([`LeaseError::with_temporary`]).
    Unexpected,
}

impl ErrorKind {
    /// A short, stable, lower-case label (used as the `lease.failure_reason` span field).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "conflict",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Lost => "lost",
            ErrorKind::ProviderUnavailable => "provider_unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Configuration => "configuration",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Operation {
    /// Acquiring a lease.
    Acquire,
    /// Renewing a held lease.
    Renew,
    /// Releasing a held lease.
    Release,
    /// Inspecting a name.
    Inspect,
    /// Breaking a lease.
    Break,
    /// Listing held leases.
    List,
    /// Building a provider: connecting, checking the endpoint and the credentials.
    Connect,
    /// Reading an item of a fenced resource.
    FencedRead,
    /// Writing an item of a fenced resource.
    FencedWrite,
}

impl Operation {
    /// A short, stable, lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Acquire => "acquire",
            Operation::Renew => "renew",
            Operation::Release => "release",
            Operation::Inspect => "inspect",
            Operation::Break => "break",
            Operation::List => "list",
            Operation::Connect => "connect",
            Operation::FencedRead => "fenced_read",
            Operation::FencedWrite => "fenced_write",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every leasing operation.
///
/// It carries a [`ErrorKind`], a message, the lease name and lease id where they are
/// known, and the underlying cause as its [`source`](std::error::Error::source).
/// Messages never contain secrets: providers redact credentials before building one.
#[derive(Clone)]
pub struct LeaseError {
    kind: ErrorKind,
    message: String,
    lease_name: Option<String>,
    lease_id: Option<String>,
    field: Option<&'static str>,
    operation: Option<Operation>,
    /// Set by the backend when it knows better than the kind's default.
    temporary: Option<bool>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl LeaseError {
    /// A new error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            lease_name: None,
            lease_id: None,
            field: None,
            operation: None,
            temporary: None,
            source: None,
        }
    }

    /// An [`ErrorKind::InvalidArgument`] naming the offending `field` and the rule broken.
    pub fn invalid_argument(field: &'static str, rule: impl Into<String>) -> Self {
        let mut e = Self::new(
            ErrorKind::InvalidArgument,
            format!("invalid {field}: {}", rule.into()),
        );
        e.field = Some(field);
        e
    }

    /// An [`ErrorKind::Configuration`] naming the offending `field` and the rule broken.
    pub fn configuration(field: &'static str, rule: impl Into<String>) -> Self {
        let mut e = Self::new(
            ErrorKind::Configuration,
            format!("invalid configuration {field}: {}", rule.into()),
        );
        e.field = Some(field);
        e
    }

    /// An [`ErrorKind::ProviderUnavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ProviderUnavailable, message)
    }

    /// An [`ErrorKind::Lost`] error.
    pub fn lost(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Lost, message)
    }

    /// Attaches the lease name.
    pub fn with_lease_name(mut self, name: impl Into<String>) -> Self {
        self.lease_name = Some(name.into());
        self
    }

    /// Attaches the lease id.
    pub fn with_lease_id(mut self, id: impl Into<String>) -> Self {
        self.lease_id = Some(id.into());
        self
    }

    /// Attaches the lease name and id unless the error already names a lease.
    pub fn or_lease(self, name: &str, id: Option<&str>) -> Self {
        if self.lease_name.is_some() {
            return self;
        }
        let e = self.with_lease_name(name);
        match id {
            Some(id) => e.with_lease_id(id),
            None => e,
        }
    }

    /// Records the operation that failed, unless one is recorded already.
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.operation.get_or_insert(operation);
        self
    }

    /// The operation that failed, when known (the manager and the held lease set it).
    pub fn operation(&self) -> Option<Operation> {
        self.operation
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the lease name or id.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The lease name, when known.
    pub fn lease_name(&self) -> Option<&str> {
        self.lease_name.as_deref()
    }

    /// The lease id, when known.
    pub fn lease_id(&self) -> Option<&str> {
        self.lease_id.as_deref()
    }

    /// For [`ErrorKind::InvalidArgument`] and [`ErrorKind::Configuration`]: the field that
    /// broke a rule.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// Marks the error temporary (trying again may succeed) or permanent, overriding the
    /// kind's default; for a backend that knows more than the kind says (an
    /// [`Unexpected`](ErrorKind::Unexpected) answer that a retry clears).
    pub fn with_temporary(mut self, temporary: bool) -> Self {
        self.temporary = Some(temporary);
        self
    }

    /// Whether trying the same operation again may succeed: what the backend set with
    /// [`with_temporary`](Self::with_temporary), else true for
    /// [`Conflict`](ErrorKind::Conflict) and
    /// [`ProviderUnavailable`](ErrorKind::ProviderUnavailable), false for everything else.
    pub fn is_retryable(&self) -> bool {
        self.temporary.unwrap_or(matches!(
            self.kind,
            ErrorKind::Conflict | ErrorKind::ProviderUnavailable
        ))
    }
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            Some(op) => write!(f, "{op} failed: {}: {}", self.kind, self.message)?,
            None => write!(f, "{}: {}", self.kind, self.message)?,
        }
        if let Some(name) = &self.lease_name {
            write!(f, " (lease {name:?}")?;
            if let Some(id) = &self.lease_id {
                write!(f, ", id {id}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("lease_name", &self.lease_name)
            .field("lease_id", &self.lease_id)
            .field("field", &self.field)
            .field("operation", &self.operation)
            .field("temporary", &self.temporary)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for LeaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn retryable_classification() {
        let retryable = [ErrorKind::Conflict, ErrorKind::ProviderUnavailable];
        for kind in [
            ErrorKind::Conflict,
            ErrorKind::Timeout,
            ErrorKind::Lost,
            ErrorKind::ProviderUnavailable,
            ErrorKind::Unauthorized,
            ErrorKind::InvalidArgument,
            ErrorKind::Configuration,
            ErrorKind::Unsupported,
            ErrorKind::Unexpected,
        ] {
            let e = LeaseError::new(kind, "x");
            assert_eq!(e.is_retryable(), retryable.contains(&kind), "{kind}");
            assert!(!kind.as_str().is_empty());
            // The backend's word overrides the kind's default, both ways.
            assert!(e.clone().with_temporary(true).is_retryable(), "{kind}");
            assert!(!e.with_temporary(false).is_retryable(), "{kind}");
        }
        assert_eq!(ErrorKind::Unexpected.to_string(), "unexpected");
    }

    #[test]
    fn display_carries_name_id_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = LeaseError::unavailable("backend down")
            .with_lease_name("job")
            .with_lease_id("abc")
            .with_source(io);
        assert_eq!(
            e.to_string(),
            "provider_unavailable: backend down (lease \"job\", id abc)"
        );
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("refused")
        );
        assert_eq!(e.lease_name(), Some("job"));
        assert_eq!(e.lease_id(), Some("abc"));
        assert!(format!("{e:?}").contains("refused"));
        let plain = LeaseError::lost("gone");
        assert_eq!(plain.to_string(), "lost: gone");
        assert_eq!(plain.message(), "gone");
        let named = LeaseError::lost("gone").with_lease_name("n");
        assert_eq!(named.to_string(), "lost: gone (lease \"n\")");
        let kept = named.clone().or_lease("other", Some("id"));
        assert_eq!(kept.lease_name(), Some("n"));
        assert_eq!(kept.lease_id(), None);
        let filled = LeaseError::lost("gone").or_lease("x", Some("i"));
        assert_eq!(
            (filled.lease_name(), filled.lease_id()),
            (Some("x"), Some("i"))
        );
        let name_only = LeaseError::lost("gone").or_lease("x", None);
        assert_eq!(
            (name_only.lease_name(), name_only.lease_id()),
            (Some("x"), None)
        );
    }

    #[test]
    fn operation_is_recorded_once_and_displayed() {
        let e = LeaseError::unavailable("down")
            .with_operation(Operation::Release)
            .with_operation(Operation::Acquire);
        assert_eq!(e.operation(), Some(Operation::Release));
        assert_eq!(e.to_string(), "release failed: provider_unavailable: down");
        assert!(format!("{e:?}").contains("Release"));
        for op in [
            Operation::Acquire,
            Operation::Renew,
            Operation::Release,
            Operation::Inspect,
            Operation::Break,
            Operation::List,
        ] {
            assert_eq!(op.to_string(), op.as_str());
        }
        assert_eq!(LeaseError::lost("x").operation(), None);
    }

    #[test]
    fn invalid_argument_names_field() {
        let e = LeaseError::invalid_argument("name", "must not be empty");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.field(), Some("name"));
        assert!(e.to_string().contains("name"));
        let c = LeaseError::configuration("url", "missing");
        assert_eq!(c.kind(), ErrorKind::Configuration);
        assert_eq!(c.field(), Some("url"));
    }
}
