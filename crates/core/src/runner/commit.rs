//! Commits under the policy, and the shutdown sequence: final commit, close, report.

use std::sync::Arc;
use std::time::Instant;

use tokio::time::{sleep_until, timeout};
use tracing::{error, warn, Instrument};

use super::{Mode, Runner, FINAL_COMMIT_ATTEMPTS};
use crate::backoff::Backoff;
use crate::launch::RunConfig;
use crate::shared::record_committed;
use crate::stats::Counters;
use crate::{CommitPolicy, FailurePolicy, MessageSource, SharedError, SourceError, StopReason};

impl<M: Mode> Runner<M> {
    /// Commits if the policy says so: enough messages settled, or the interval passed.
    pub(super) async fn commit_if_due(&mut self) -> Result<(), StopReason> {
        if self.count_commit_due() || self.interval_commit_due() {
            self.commit_periodically().await?;
        }
        Ok(())
    }

    /// The settled count after which the policy wants a commit (never, for intervals).
    pub(super) fn commit_every(&self) -> u64 {
        match self.config.commit_policy {
            CommitPolicy::EveryMessage => 1,
            CommitPolicy::EveryN(n) => n,
            CommitPolicy::Interval(_) => u64::MAX,
        }
    }

    pub(super) fn count_commit_due(&self) -> bool {
        self.ledger.since_commit >= self.commit_every()
    }

    fn interval_commit_due(&self) -> bool {
        match self.config.commit_policy {
            CommitPolicy::Interval(every) => {
                self.ledger.since_commit > 0 && self.last_commit_at.elapsed() >= every
            }
            _ => false,
        }
    }

    /// A commit under the policy. A transient failure is retried at a later opportunity
    /// after a backoff; a stop request abandons it (the final commit follows).
    pub(super) async fn commit_periodically(&mut self) -> Result<(), StopReason> {
        if self.commit_retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let result = tokio::select! {
            biased;
            () = shared.stop.raised() => return Ok(()),
            r = self.commit_handled() => r,
        };
        match result {
            Ok(()) => {
                self.commit_retry_at = None;
                self.commit_backoff.reset();
                Ok(())
            }
            Err(e) if e.is_transient() => {
                let delay = self.commit_backoff.next_delay();
                warn!(error = %e, retry_in = ?delay, "commit failed; offsets stay uncommitted and will be retried");
                self.commit_retry_at = Some(Instant::now() + delay);
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "commit failed fatally");
                Err(StopReason::SourceFailed(SharedError::with_context(
                    "commit failed",
                    e,
                )))
            }
        }
    }

    /// Commits every handled, uncommitted position.
    async fn commit_handled(&mut self) -> Result<(), SourceError> {
        self.ledger.since_commit = 0;
        self.last_commit_at = Instant::now();
        let offsets = self.ledger.progress.uncommitted();
        if offsets.is_empty() {
            return Ok(());
        }
        let span = tracing::debug_span!("commit", partitions = offsets.len());
        match self.source.commit(&offsets).instrument(span).await {
            Ok(()) => {
                self.ledger.progress.mark_committed(&offsets);
                record_committed(&self.shared, &offsets);
                Counters::bump(&self.shared.counters.commits);
                Ok(())
            }
            Err(e) => {
                Counters::bump(&self.shared.counters.commit_errors);
                self.note_error(&e);
                Err(e)
            }
        }
    }

    /// Final commit then close, each bounded by `close_timeout`.
    pub(super) async fn shut_down(&mut self) -> (Option<SharedError>, Option<SharedError>) {
        M::drain(self).await;
        let unstored = self.ledger.progress.take_unstored();
        if !unstored.is_empty() {
            self.source.store(&unstored);
        }
        let close_timeout = self.config.close_timeout;
        let commit_deadline = tokio::time::Instant::now() + close_timeout;
        let mut backoff = Backoff::new(self.config.retry_backoff);
        let mut final_commit_error = None;
        for attempt in 1..=FINAL_COMMIT_ATTEMPTS {
            match tokio::time::timeout_at(commit_deadline, self.commit_handled()).await {
                Ok(Ok(())) => {
                    final_commit_error = None;
                    break;
                }
                Ok(Err(e)) => {
                    let transient = e.is_transient();
                    let delay = backoff.next_delay();
                    if transient && attempt < FINAL_COMMIT_ATTEMPTS {
                        warn!(error = %e, attempt, retry_in = ?delay, "final commit failed; retrying");
                    }
                    final_commit_error = Some(SharedError::new(e));
                    if !transient || attempt == FINAL_COMMIT_ATTEMPTS {
                        break;
                    }
                    let retry_at = (tokio::time::Instant::now() + delay).min(commit_deadline);
                    sleep_until(retry_at).await;
                }
                Err(_) => {
                    final_commit_error = Some(SharedError::new(format!(
                        "final commit did not finish within {close_timeout:?}"
                    )));
                    break;
                }
            }
        }
        self.publish_partitions();
        if let Some(e) = &final_commit_error {
            error!(error = %e, "final commit failed; messages handled since the last commit will be redelivered");
        }
        let close_error = close(&mut self.config, &mut *self.source).await;
        (final_commit_error, close_error)
    }
}

/// Closes the dead-letter producer and the source, each bounded by `close_timeout`;
/// returns the source's close error.
pub(super) async fn close(
    config: &mut RunConfig,
    source: &mut dyn MessageSource,
) -> Option<SharedError> {
    let close_timeout = config.close_timeout;
    if let FailurePolicy::DeadLetter(dead_letter) = &mut config.failure_policy {
        match timeout(close_timeout, dead_letter.producer.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "closing the dead-letter producer failed"),
            Err(_) => {
                warn!(timeout = ?close_timeout, "closing the dead-letter producer timed out")
            }
        }
    }
    let close_error = match timeout(close_timeout, source.close()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(SharedError::new(e)),
        Err(_) => Some(SharedError::new(format!(
            "close did not finish within {close_timeout:?}"
        ))),
    };
    if let Some(e) = &close_error {
        warn!(error = %e, "closing the source failed");
    }
    close_error
}
