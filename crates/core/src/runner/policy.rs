//! The failure policy's decision on messages given up on, for both modes: the runner's
//! own retries and the worker pool's end here.

use tracing::{error, warn};

use super::settle::Settlement;
use super::{Mode, Runner};
use crate::{CallbackFailure, FailurePolicy, Message, StopReason};

/// What the failure policy made of messages given up on.
pub(super) enum GiveUp {
    /// Stop the manager for this reason (logged); nothing is settled.
    Stop(StopReason),
    /// Skipped (settled), or queued for the dead-letter topic (settled once the broker
    /// acknowledges each dead letter; see `dead_letters`).
    Disposed,
}

impl<M: Mode> Runner<M> {
    /// The failure policy's decision on `messages` (one partition's, in offset order: a
    /// message, or a batch a worker handled as one unit), given up on after `attempts`.
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
                self.ledger
                    .settle(messages, Settlement::Skipped, self.mode.positions());
                GiveUp::Disposed
            }
            FailurePolicy::DeadLetter(_) => {
                let bounds = self.config.retry_policy.backoff_bounds();
                for message in messages {
                    self.dead_letters
                        .push(message.clone(), attempts, failure.clone(), bounds);
                }
                GiveUp::Disposed
            }
        }
    }
}
