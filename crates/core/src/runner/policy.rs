//! The decisions shared by the runner's own failure path (`failures`) and the worker
//! pool's (`pool`): what the failure policy makes of messages given up on, and the
//! counting of failed and retried attempts.

use tracing::{error, warn};

use super::Runner;
use crate::callback::Handle;
use crate::shared::lock;
use crate::stats::Counters;
use crate::{CallbackFailure, FailurePolicy, Message, StopReason, TopicPartition};

/// What the failure policy makes of messages given up on.
pub(super) enum GiveUp {
    /// Stop the manager for this reason (logged).
    Stop(StopReason),
    /// Skipped: logged, counted and settled.
    Skipped,
    /// To the dead-letter topic; the failure is handed back for the record's headers.
    DeadLetter(Box<CallbackFailure>),
}

impl<H: Handle> Runner<H> {
    /// The failure policy's decision on `messages`, given up on after `attempts` (a
    /// message, or a batch a worker handled as one unit). Under `Skip` they are counted
    /// and settled here, like handled messages for the commit policy; a dead letter is
    /// left to the caller, which produces it now or queues it.
    pub(super) fn apply_failure_policy(
        &mut self,
        messages: &[Message],
        failure: Box<CallbackFailure>,
        attempts: u32,
    ) -> GiveUp {
        match &self.config.failure_policy {
            FailurePolicy::Stop => {
                error!(%failure, attempts, "callback failed; stopping (its offset is not committed)");
                GiveUp::Stop(StopReason::CallbackFailed(*failure))
            }
            FailurePolicy::Skip => {
                warn!(%failure, attempts, messages = messages.len(), "callback failed; skipping by policy");
                for message in messages {
                    Counters::bump(&self.shared.counters.skipped);
                    self.progress
                        .failures_of(&message.topic_partition())
                        .skipped += 1;
                    self.settle_message(message);
                    self.count_toward_commit(1);
                }
                GiveUp::Skipped
            }
            FailurePolicy::DeadLetter(_) => GiveUp::DeadLetter(failure),
        }
    }

    /// Counts a failed callback attempt (an error or a panic) and keeps it as the last error.
    pub(super) fn count_failed_attempt(&mut self, tp: &TopicPartition, failure: &CallbackFailure) {
        Counters::bump(&self.shared.counters.callback_failures);
        self.progress.failures_of(tp).failures += 1;
        lock(&self.shared.live).last_error = Some(failure.to_string());
    }

    /// Counts a callback attempt after a unit's first.
    pub(super) fn count_retry(&mut self, tp: &TopicPartition) {
        Counters::bump(&self.shared.counters.retries);
        self.progress.failures_of(tp).retries += 1;
    }
}
