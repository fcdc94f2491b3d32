//! Policies chosen at build time.

use std::time::Duration;

/// When the manager commits the positions it has handled. Whatever the policy, it also
/// commits on stop, and the source commits stored positions on revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitPolicy {
    /// After every handled message: the smallest redelivery window, the most commits.
    EveryMessage,
    /// After every N handled messages (N >= 1).
    EveryN(u64),
    /// At most once per interval (Kafka's `auto.commit.interval.ms`, default 5 s).
    Interval(Duration),
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy::Interval(Duration::from_secs(5))
    }
}

/// What the manager does when the callback fails or panics on a message.
///
/// Whatever the policy, the failed message's offset is never committed unless the policy
/// deliberately disposes of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Stop the manager: commit what was handled before the message, close the source,
    /// end `Failed` with the failure as the reason. The message is redelivered on restart.
    #[default]
    Stop,
}

/// Exponential backoff bounds, used when polling or committing fails transiently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBackoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay; the delay doubles up to it.
    pub max: Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}
