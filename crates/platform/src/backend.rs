//! What a failed call to a backend (a store, a queue, a key provider, an
//! event log) was, as a type: the engine, the operation, the [`FailureKind`]
//! that retry policies and edges decide on, and the driver's own error kept
//! as the [`std::error::Error::source`].
//!
//! Every port's error enum wraps a [`BackendError`] for "the backend failed"
//! (beside its own domain cases, such as a corrupt record). Adapters build
//! one with the constructor for their driver ([`BackendError::postgres`],
//! [`BackendError::redb`], [`BackendError::aws`], …), which classifies the
//! driver's error once; nobody downstream parses text. The edges map the
//! port error to a status, log the whole chain ([`chain`]) and send the
//! caller only the class.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

/// A boxed driver error.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What kind of failure a backend call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No answer within the deadline.
    Timeout,
    /// The backend could not be reached: connection refused or reset, no
    /// route, name not resolved, no pooled connection to be had.
    Unreachable,
    /// The backend asked us to slow down (throttling, too many requests).
    Throttled,
    /// This process closed the backend (it is shutting down).
    Closed,
    /// The backend answered and refused the request: permissions, a
    /// constraint, an invalid request. The same call will fail again.
    Rejected,
    /// Anything else: a local I/O error, an answer we did not expect.
    Other,
}

impl FailureKind {
    /// Whether the same call may succeed if retried later.
    #[must_use]
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Timeout | Self::Unreachable | Self::Throttled)
    }

    /// The kind as a short word, for messages and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Throttled => "throttled",
            Self::Closed => "closed",
            Self::Rejected => "rejected",
            Self::Other => "error",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed backend call. Its `Display` is one line without the driver's
/// text (`postgres insert message: unreachable`); the driver's error is the
/// `source`, for logs ([`chain`]).
#[derive(Debug)]
pub struct BackendError {
    engine: &'static str,
    operation: Cow<'static, str>,
    kind: FailureKind,
    source: Option<BoxError>,
}

impl BackendError {
    /// A failure of `operation` on `engine`, of `kind`, caused by `source`.
    pub fn new(
        engine: &'static str,
        operation: impl Into<Cow<'static, str>>,
        kind: FailureKind,
        source: impl Into<BoxError>,
    ) -> Self {
        Self {
            engine,
            operation: operation.into(),
            kind,
            source: Some(source.into()),
        }
    }

    /// A failure with no underlying error (e.g. the backend was closed here).
    pub fn bare(
        engine: &'static str,
        operation: impl Into<Cow<'static, str>>,
        kind: FailureKind,
    ) -> Self {
        Self {
            engine,
            operation: operation.into(),
            kind,
            source: None,
        }
    }

    /// The backend was closed by this process.
    pub fn closed(engine: &'static str) -> Self {
        Self::bare(engine, "call", FailureKind::Closed)
    }

    /// The engine that failed (`redb`, `postgres`, `dynamodb`, …).
    #[must_use]
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// What was being done.
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// What kind of failure it was.
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// Whether the same call may succeed if retried later.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// A failed PostgreSQL call, classified from the driver's error.
    #[cfg(feature = "postgres")]
    pub fn postgres(operation: impl Into<Cow<'static, str>>, error: sqlx::Error) -> Self {
        let kind = match &error {
            sqlx::Error::PoolTimedOut => FailureKind::Timeout,
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => FailureKind::Unreachable,
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => FailureKind::Closed,
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // Class 08: connection exception; 57P01..03: the server is
                // shutting down or not accepting connections; 53: resources.
                Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                    FailureKind::Unreachable
                }
                Some(code) if code.starts_with("53") => FailureKind::Throttled,
                // 57014: statement timeout / canceled.
                Some("57014") => FailureKind::Timeout,
                _ => FailureKind::Rejected,
            },
            _ => FailureKind::Other,
        };
        Self::new("postgres", operation, kind, error)
    }

    /// A failed redb call (an embedded file: always local I/O or a bug).
    #[cfg(feature = "embedded")]
    pub fn redb(operation: impl Into<Cow<'static, str>>, error: impl Into<redb::Error>) -> Self {
        Self::new("redb", operation, FailureKind::Other, error.into())
    }

    /// A failed fjall call (an embedded keyspace: always local I/O or a bug).
    #[cfg(feature = "embedded")]
    pub fn fjall(operation: impl Into<Cow<'static, str>>, error: fjall::Error) -> Self {
        Self::new("fjall", operation, FailureKind::Other, error)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.engine, self.operation, self.kind)
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// Whether an adapter was closed by this process; every adapter checks it
/// before a call, so a call after `close()` fails as [`FailureKind::Closed`].
#[derive(Debug, Default)]
pub struct CloseGate(std::sync::atomic::AtomicBool);

impl CloseGate {
    /// Closes the gate; `true` the first time (so closing work runs once).
    pub fn close(&self) -> bool {
        !self.0.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// Whether [`CloseGate::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `Ok` while open; a [`FailureKind::Closed`] error of `engine` once closed.
    pub fn check(&self, engine: &'static str) -> Result<(), BackendError> {
        if self.is_closed() {
            Err(BackendError::closed(engine))
        } else {
            Ok(())
        }
    }
}

/// An error and its causes as one line (`a: b: c`), each cause once: what
/// the edges log. Never sent to a caller.
#[must_use]
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_engine_operation_and_kind_and_chain_adds_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = BackendError::new("nats", "publish", FailureKind::Unreachable, io);
        assert_eq!(err.to_string(), "nats publish: unreachable");
        assert_eq!(chain(&err), "nats publish: unreachable: refused");
        assert!(err.is_transient());
        assert!(!BackendError::closed("redb").is_transient());
    }

    #[test]
    fn a_close_gate_closes_once_and_then_refuses() {
        let gate = CloseGate::default();
        assert!(gate.check("redb").is_ok());
        assert!(gate.close());
        assert!(!gate.close());
        let err = gate.check("redb").expect_err("closed");
        assert_eq!(err.kind(), FailureKind::Closed);
        assert_eq!(err.to_string(), "redb call: closed");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_errors_are_classified_by_kind() {
        assert_eq!(
            BackendError::postgres("get", sqlx::Error::PoolTimedOut).kind(),
            FailureKind::Timeout
        );
        assert_eq!(
            BackendError::postgres("get", sqlx::Error::PoolClosed).kind(),
            FailureKind::Closed
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            BackendError::postgres("get", sqlx::Error::Io(io)).kind(),
            FailureKind::Unreachable
        );
    }
}
