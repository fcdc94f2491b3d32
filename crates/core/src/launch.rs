//! What the consumer thread is started with: its settings, its source and the shared
//! state, handed over by the builder and the handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::Shared;
use crate::{CommitPolicy, FailurePolicy, MessageSource, RetryBackoff, RetryPolicy};

/// Settings the consumer thread runs with.
#[derive(Debug)]
pub(crate) struct RunConfig {
    pub(crate) thread_lifetime: Option<Duration>,
    pub(crate) poll_timeout: Duration,
    pub(crate) commit_policy: CommitPolicy,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) retry_policy: RetryPolicy,
    pub(crate) retry_backoff: RetryBackoff,
    pub(crate) close_timeout: Duration,
}

/// Starts the consumer thread's work: a runner compiled for the handler's type.
pub(crate) type Launch = Box<dyn FnOnce(LaunchArgs) + Send>;

/// What the runner is given when the thread starts.
pub(crate) struct LaunchArgs {
    pub(crate) source: Box<dyn MessageSource>,
    pub(crate) config: RunConfig,
    pub(crate) shared: Arc<Shared>,
    pub(crate) started_at: Instant,
}
