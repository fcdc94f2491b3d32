//! Where every message ends: the one settle function, for both modes and every outcome,
//! and the counting of failed and retried attempts on the way there.
//!
//! A message is settled when it was handled, or when the failure policy disposed of it
//! (skipped, or its dead letter acknowledged); only then may its offset be committed. A
//! retry is an attempt, not a settlement; a message the manager stopped on is never
//! settled, so nothing is committed past it.

use std::sync::Arc;

use crate::progress::Progress;
use crate::shared::{lock, Shared};
use crate::stats::Counters;
use crate::{CallbackFailure, FailureKind, Message, TopicPartition};

/// How a message was settled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Settlement {
    /// The handler returned `Ok`.
    Handled,
    /// Given up on and skipped by the failure policy.
    Skipped,
    /// Given up on, and its dead letter acknowledged by the broker.
    DeadLettered,
}

/// How a mode turns settled messages into commit positions.
pub(crate) trait Positions {
    /// Moves the position past `run` (settled messages, in offset order per partition)
    /// as far as nothing unsettled lies before it; counts handled ones when `handled`.
    fn advance(&mut self, progress: &mut Progress, run: &[Message], handled: bool);
}

/// Positions of a consumer that settles each partition's messages in offset order (the
/// runner's own callbacks): a settled message's position is its offset + 1. A run may
/// span partitions.
pub(crate) struct InOrder;

impl Positions for InOrder {
    #[inline]
    fn advance(&mut self, progress: &mut Progress, run: &[Message], handled: bool) {
        for message in run {
            if handled {
                progress.handled(message);
            } else {
                progress.disposed(message);
            }
        }
    }
}

/// What is owed to the commit: per-partition progress, and how many messages were
/// settled since the last commit (for the commit policy).
pub(super) struct Ledger {
    pub(super) progress: Progress,
    /// Settled messages (and offsets passed over) since the last commit.
    pub(super) since_commit: u64,
    shared: Arc<Shared>,
}

impl Ledger {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            progress: Progress::default(),
            since_commit: 0,
            shared,
        }
    }

    /// Settles `run`: counts it by outcome, moves its positions through `positions`, and
    /// counts it toward the commit policy. Every message of every mode ends here.
    #[inline]
    pub(super) fn settle(
        &mut self,
        run: &[Message],
        how: Settlement,
        positions: &mut impl Positions,
    ) {
        let n = run.len() as u64;
        let counters = &self.shared.counters;
        match how {
            Settlement::Handled => Counters::add(&counters.handled, n),
            Settlement::Skipped => {
                Counters::add(&counters.skipped, n);
                for message in run {
                    self.progress
                        .failures_of(&message.topic_partition())
                        .skipped += 1;
                }
            }
            Settlement::DeadLettered => {
                Counters::add(&counters.dead_lettered, n);
                for message in run {
                    self.progress
                        .failures_of(&message.topic_partition())
                        .dead_lettered += 1;
                }
            }
        }
        positions.advance(&mut self.progress, run, how == Settlement::Handled);
        self.count_toward_commit(n);
    }

    /// Counts `n` toward the commit policy: settled messages, or offsets passed over.
    #[inline]
    pub(super) fn count_toward_commit(&mut self, n: u64) {
        self.since_commit += n;
    }

    /// Counts a failed attempt (an error or a panic of the callback, or a message that
    /// did not decode, counted apart) and keeps it as the last error.
    pub(super) fn count_failed_attempt(&mut self, tp: &TopicPartition, failure: &CallbackFailure) {
        let counts = self.progress.failures_of(tp);
        if failure.kind == FailureKind::Undecodable {
            Counters::bump(&self.shared.counters.decode_failures);
            counts.decode_failures += 1;
        } else {
            Counters::bump(&self.shared.counters.callback_failures);
            counts.failures += 1;
        }
        lock(&self.shared.live).last_error = Some(failure.to_string());
    }

    /// Counts a callback attempt after a unit's first.
    pub(super) fn count_retry(&mut self, tp: &TopicPartition) {
        Counters::bump(&self.shared.counters.retries);
        self.progress.failures_of(tp).retries += 1;
    }
}
