//! Error types: one for the manager's API, one for sources, one for configuration.

use std::time::Duration;

use crate::lifecycle::State;

/// A boxed error that can cross threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the manager's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from the [`ThreadManager`](crate::ThreadManager) API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was rejected when the manager was built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The call is not allowed in the manager's current state (for example `start()`
    /// twice, or after `stop()`).
    #[error("cannot {action} the manager: it is {state}")]
    InvalidState {
        /// What was attempted.
        action: &'static str,
        /// The state the manager was in.
        state: State,
    },
    /// `stop()` was called on the consuming thread itself (from the callback). Joining
    /// would deadlock, so the stop was only requested; it completes once the callback
    /// returns, and [`ThreadManager::wait`](crate::ThreadManager::wait) from another
    /// thread returns the report.
    #[error("stop() called from the consumer thread '{thread}': stop requested, it completes when the callback returns")]
    StopFromConsumerThread {
        /// The consumer thread's name.
        thread: String,
    },
    /// `wait()` was called on the consuming thread itself (from the callback, on the
    /// consumer thread or a worker). The thread cannot end while its callback waits for
    /// it, so this returns at once instead of deadlocking (or sleeping out the timeout);
    /// the manager goes on running.
    #[error("wait() called from the consumer thread '{thread}': it cannot end while its own callback waits for it")]
    WaitFromConsumerThread {
        /// The consumer thread's name.
        thread: String,
    },
    /// Waiting for the consumer thread timed out; it is still running or stopping.
    #[error("the consumer thread did not finish within {0:?}")]
    Timeout(Duration),
    /// The operating system refused to spawn the consumer thread.
    #[error("could not spawn the consumer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// [`ThreadManager::run_until_shutdown_signal`](crate::ThreadManager::run_until_shutdown_signal)
    /// could not install its SIGTERM and SIGINT handlers or start its signal thread.
    #[cfg(all(unix, feature = "signals"))]
    #[cfg_attr(docsrs, doc(cfg(all(unix, feature = "signals"))))]
    #[error("could not set up SIGTERM and SIGINT handling: {0}")]
    Signals(#[source] std::io::Error),
    /// [`preflight_on_start`](crate::ThreadManagerBuilder::preflight_on_start) is set
    /// and the preflight failed: nothing was polled, the manager is still `Created`.
    #[error(transparent)]
    Preflight(#[from] crate::PreflightError),
}

/// A bad configuration, reported by a builder before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No callback was given.
    #[error("no callback was given: call .callback(..), .handler(..), .async_callback(..) or .async_handler(..)")]
    MissingCallback,
    /// More than one handler setter was called (`callback`, `handler`,
    /// `parallel_callback`, `batch_callback`, `async_callback`, ...): one manager runs one
    /// handler, and a later setter would silently replace an earlier one.
    #[error("{given} handlers were given: call exactly one handler setter")]
    MoreThanOneHandler {
        /// How many setters were called.
        given: u8,
    },
    /// The poll timeout was zero.
    #[error("poll timeout must be greater than zero")]
    ZeroPollTimeout,
    /// `CommitPolicy::EveryN(0)`.
    #[error("commit policy EveryN needs at least 1 message, got 0")]
    ZeroCommitCount,
    /// `CommitPolicy::Interval(0)`.
    #[error("commit interval must be greater than zero")]
    ZeroCommitInterval,
    /// The thread name is empty or has a NUL byte.
    #[error("thread name {name:?} is invalid: {reason}")]
    InvalidThreadName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The retry backoff bounds are zero or reversed.
    #[error("retry backoff is invalid: initial {initial:?} must be greater than zero and at most max {max:?}")]
    InvalidBackoff {
        /// The initial delay given.
        initial: Duration,
        /// The maximum delay given.
        max: Duration,
    },
    /// A [`WorkerPool`](crate::WorkerPool) setting is out of range.
    #[error("worker pool is invalid: {reason}")]
    InvalidWorkerPool {
        /// Which setting, and why.
        reason: &'static str,
    },
    /// The retry policy's backoff is zero or reversed, or its time bound is zero.
    #[error("retry policy is invalid: {reason}")]
    InvalidRetryPolicy {
        /// What is wrong with it.
        reason: String,
    },
    /// The dead-letter topic (or suffix) is not a valid Kafka topic name.
    #[error("dead-letter topic {topic:?} is invalid: {reason}")]
    InvalidDeadLetterTopic {
        /// The topic, or the suffix.
        topic: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The shutdown or close timeout was zero.
    #[error("{which} timeout must be greater than zero")]
    ZeroTimeout {
        /// Which timeout.
        which: &'static str,
    },
}

/// How a [`SourceError`] should be treated by the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// Worth retrying with backoff: connection loss, timeouts, a coordinator moving, a
    /// rebalance in progress.
    Transient,
    /// Retrying cannot help: bad credentials, a missing topic, no committed offset with
    /// reset policy `None`. The manager stops and ends `Failed`.
    Fatal,
    /// The source (or producer) does not offer this operation, such as
    /// [`describe`](crate::MessageSource::describe) on a source that predates it.
    /// Never returned by `poll` or `commit`; treated as fatal if it were.
    Unsupported,
}

/// An error from a [`MessageSource`](crate::MessageSource).
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct SourceError {
    backend: &'static str,
    kind: SourceErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl SourceError {
    /// A transient error of `backend`.
    pub fn transient(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(backend, SourceErrorKind::Transient, message)
    }

    /// A fatal error of `backend`.
    pub fn fatal(backend: &'static str, message: impl Into<String>) -> Self {
        Self::new(backend, SourceErrorKind::Fatal, message)
    }

    /// `backend` does not offer `operation` (kind [`SourceErrorKind::Unsupported`]).
    pub fn unsupported(backend: &'static str, operation: &str) -> Self {
        Self::new(
            backend,
            SourceErrorKind::Unsupported,
            format!("{operation} is not supported by this backend"),
        )
    }

    /// An error of the given kind.
    pub fn new(backend: &'static str, kind: SourceErrorKind, message: impl Into<String>) -> Self {
        Self {
            backend,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The backend that raised it.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// How the manager treats it.
    pub fn kind(&self) -> SourceErrorKind {
        self.kind
    }

    /// Whether retrying may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == SourceErrorKind::Transient
    }
}

/// An error kept with its type in reports and stop reasons ([`StopReason`](crate::StopReason),
/// [`StopReport`](crate::StopReport), [`CallbackFailure`](crate::CallbackFailure)): the
/// source's, the callback's or the dead-letter producer's own error, behind an
/// [`Arc`](std::sync::Arc) so reports stay cheap to clone. It shows as the error it
/// holds; two are equal when they say the same.
///
/// ```
/// use ktm_core::{SharedError, SourceError};
/// let e = SharedError::new(SourceError::fatal("rskafka", "authentication refused"));
/// let source = e.find::<SourceError>().expect("the source error");
/// assert!(!source.is_transient());
/// assert_eq!(e.to_string(), "rskafka: authentication refused");
/// ```
#[derive(Clone)]
pub struct SharedError(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl SharedError {
    /// Keeps `error`.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(std::sync::Arc::from(error.into()))
    }

    /// `error`, shown after `context` (`"{context}: {error}"`), still reachable as its
    /// type.
    pub(crate) fn with_context(context: impl Into<String>, error: impl Into<BoxError>) -> Self {
        Self::new(WithContext {
            context: context.into(),
            error: error.into(),
        })
    }

    /// The error itself.
    pub fn as_arc(&self) -> &std::sync::Arc<dyn std::error::Error + Send + Sync + 'static> {
        &self.0
    }

    /// The first error of type `T` in the chain: the error held, then its
    /// [`source`](std::error::Error::source)s.
    pub fn find<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*self.0);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<T>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Debug for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq for SharedError {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.to_string() == other.to_string()
    }
}

impl Eq for SharedError {}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// An error with what was being done when it happened.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {error}")]
struct WithContext {
    context: String,
    #[source]
    error: BoxError,
}
