//! Policies chosen at build time.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::{DeadLetter, FailureKind};

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

/// What the manager does with a message whose callback failed for good: a permanent
/// error, a panic, or a retryable error once the [`RetryPolicy`] is exhausted.
///
/// Whatever the policy, the message's offset is committed only once the policy has
/// disposed of it (dead letter acknowledged, or skipped); with `Stop` it never is.
#[derive(Debug, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Stop the manager: commit what was handled before the message, close the source,
    /// end `Failed` with the failure as the reason. The message is redelivered on restart.
    #[default]
    Stop,
    /// Log it, count it and go on: its offset is committed with the ones after it.
    Skip,
    /// Produce it to a dead-letter topic (original key, payload and headers, plus
    /// `ktm.dlq.*` headers naming its source, attempts and last error), then go on. If
    /// producing fails the offset stays uncommitted: a transient error is retried with
    /// backoff, a fatal one stops the manager.
    DeadLetter(DeadLetter),
}

impl FailurePolicy {
    /// [`FailurePolicy::DeadLetter`] with `dead_letter`.
    pub fn dead_letter(dead_letter: DeadLetter) -> Self {
        FailurePolicy::DeadLetter(dead_letter)
    }
}

/// How often, and for how long, a message whose callback failed with a retryable error
/// is tried again before the [`FailurePolicy`] takes over.
///
/// While a message waits for its next attempt, the later messages of its partition wait
/// too (order per partition is kept); the partition is paused at the source, and the
/// manager keeps polling, so other partitions go on and the consumer stays in its group.
///
/// ```
/// use std::time::Duration;
/// use ktm_core::RetryPolicy;
/// let retry = RetryPolicy::retries(5)
///     .backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .max_elapsed(Duration::from_secs(30));
/// assert_eq!(retry.max_retries(), 5);
/// assert_eq!(RetryPolicy::default().max_retries(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    max_elapsed: Option<Duration>,
    backoff: RetryBackoff,
}

impl RetryPolicy {
    /// No retries: the first failure goes to the [`FailurePolicy`]. The default.
    pub fn none() -> Self {
        Self::retries(0)
    }

    /// Up to `max_retries` attempts after the first (so `max_retries + 1` in all), with
    /// a jittered exponential backoff from 100 ms to 10 s between them.
    pub fn retries(max_retries: u32) -> Self {
        Self {
            max_retries,
            max_elapsed: None,
            backoff: RetryBackoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
        }
    }

    /// The backoff: the first delay, doubling up to `max`, each jittered to [d/2, d].
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = RetryBackoff { initial, max };
        self
    }

    /// No attempt starts later than this after the first failure, whatever the count.
    #[must_use]
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.max_elapsed = Some(limit);
        self
    }

    /// Attempts after the first.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The bound on the time from the first failure to the last attempt.
    pub fn max_elapsed_limit(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// The backoff bounds.
    pub fn backoff_bounds(&self) -> RetryBackoff {
        self.backoff
    }

    /// The delay before the next attempt of a unit (a message, or a batch) whose
    /// `attempts`-th attempt failed with `kind` at `now`, the first at `first_failed_at`;
    /// `None` when the policy gives up on it. Draws the delay from `backoff` only when a
    /// retry is allowed by kind and count.
    pub(crate) fn retry_delay(
        &self,
        kind: FailureKind,
        attempts: u32,
        first_failed_at: Instant,
        now: Instant,
        backoff: &mut Backoff,
    ) -> Option<Duration> {
        if kind != FailureKind::Retryable || attempts > self.max_retries {
            return None;
        }
        let delay = backoff.next_delay();
        let in_time = self
            .max_elapsed
            .is_none_or(|limit| (now + delay).duration_since(first_failed_at) <= limit);
        in_time.then_some(delay)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::none()
    }
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
