//! Preflight: before consuming anything, ask the broker whether the configuration will
//! work (topics, partition counts, dead-letter topics, the group id, extra checks such
//! as a schema registry) and render the answer as a runbook.
//!
//! [`ThreadManager::preflight`](crate::ThreadManager::preflight) runs it;
//! [`ThreadManagerBuilder::preflight_on_start`](crate::ThreadManagerBuilder::preflight_on_start)
//! makes `start()` run it first.

mod description;
mod report;
mod run;

use std::sync::Arc;
use std::time::Duration;

pub use description::{GroupStatus, SourceDescription, Subscribed, TopicDescription};
pub use report::{PreflightItem, PreflightReport, LAG_METRICS};

use crate::{BoxError, SharedError, State};

/// How long a preflight may take by default, retries of transient errors included.
pub const DEFAULT_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);

/// An extra preflight check, added with
/// [`ThreadManagerBuilder::preflight_check`](crate::ThreadManagerBuilder::preflight_check):
/// the hook for what the manager itself does not know about, such as a schema registry
/// answering. A closure `Fn() -> Result<String, BoxError>` is one.
///
/// It runs on the thread calling `preflight()` (or `start()`), outside any async
/// runtime, so a blocking client is fine; it must bound its own time, as the
/// preflight's timeout cannot interrupt it.
pub trait PreflightCheck: Send + Sync + 'static {
    /// Checks; `Ok` carries a short detail for the report (say, the registry's URL and
    /// version), `Err` why it failed.
    fn check(&self) -> Result<String, BoxError>;
}

impl<F> PreflightCheck for F
where
    F: Fn() -> Result<String, BoxError> + Send + Sync + 'static,
{
    fn check(&self) -> Result<String, BoxError> {
        self()
    }
}

/// A preflight item that failed, or why the preflight could not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreflightError {
    /// Preflight runs only before `start()` (state `Created`).
    #[error("preflight runs only before start(): the manager is {state}")]
    InvalidState {
        /// The state the manager was in.
        state: State,
    },
    /// A subscribed topic (or one of the assigned partitions' topics) does not exist.
    #[error("topic {topic:?} does not exist")]
    TopicMissing {
        /// The topic.
        topic: String,
    },
    /// The subscription pattern matches no topic.
    #[error("pattern {pattern:?} matches no topic")]
    PatternMatchesNothing {
        /// The pattern.
        pattern: String,
    },
    /// A dead-letter topic of the failure policy does not exist: dead letters could
    /// not be produced, and their partitions would stall.
    #[error("dead-letter topic {topic:?} does not exist")]
    DeadLetterTopicMissing {
        /// The dead-letter topic.
        topic: String,
    },
    /// The group coordinator refused the group id.
    #[error("group {group:?} was refused by the coordinator: {error}")]
    GroupRejected {
        /// The group id.
        group: String,
        /// The broker's answer.
        error: String,
    },
    /// An extra check ([`PreflightCheck`]) failed.
    #[error("preflight check {name:?} failed: {error}")]
    CheckFailed {
        /// The check's name.
        name: String,
        /// Its error.
        error: SharedError,
    },
    /// The source or the dead-letter producer cannot describe what it would read or
    /// write to (see [`MessageSource::describe`](crate::MessageSource::describe)).
    #[error("preflight is not supported: {0}")]
    Unsupported(SharedError),
    /// Asking the broker failed for good (a fatal error, such as refused credentials).
    #[error("preflight could not ask the broker: {0}")]
    Source(SharedError),
    /// The broker did not answer within the preflight timeout.
    #[error("preflight did not finish within {0:?}")]
    TimedOut(Duration),
}

/// The builder's preflight settings, kept by the manager until `start()`.
pub(crate) struct PreflightSettings {
    pub(crate) checks: Vec<(String, Arc<dyn PreflightCheck>)>,
    pub(crate) timeout: Duration,
    pub(crate) on_start: bool,
}

impl Default for PreflightSettings {
    fn default() -> Self {
        Self {
            checks: Vec::new(),
            timeout: DEFAULT_PREFLIGHT_TIMEOUT,
            on_start: false,
        }
    }
}
