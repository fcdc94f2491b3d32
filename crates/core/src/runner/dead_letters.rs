//! Dead letters waiting to be produced, for both modes: per partition, in offset order,
//! one send at a time, with a backoff on transient send failures. A message is settled
//! (and its offset committable) only once the broker acknowledged its dead letter.

use std::collections::VecDeque;
use std::time::Instant;

use tracing::{error, warn, Instrument};

use super::settle::Settlement;
use super::{Mode, Runner};
use bytes::Bytes;

use crate::backoff::Backoff;
use crate::stats::Counters;
use crate::{
    CallbackFailure, DeadLetterRecord, FailurePolicy, Header, Message, RetryBackoff, SharedError,
    SourceError, StopReason, TopicPartition, HEADER_FAILURE_KIND,
};

/// A message given up on, with what its dead letter records.
struct GivenUp {
    message: Message,
    attempts: u32,
    failure: Box<CallbackFailure>,
}

/// One partition's dead letters, oldest first.
struct PartitionQueue {
    tp: TopicPartition,
    pending: VecDeque<GivenUp>,
    next_at: Instant,
    backoff: Backoff,
}

/// The dead letters of every partition; empty on the happy path, which then checks nothing.
#[derive(Default)]
pub(super) struct DeadLetters {
    queues: Vec<PartitionQueue>,
}

impl DeadLetters {
    pub(super) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Queues `message`'s dead letter behind its partition's earlier ones.
    pub(super) fn push(
        &mut self,
        message: Message,
        attempts: u32,
        failure: Box<CallbackFailure>,
        bounds: RetryBackoff,
    ) {
        let tp = message.topic_partition();
        let given_up = GivenUp {
            message,
            attempts,
            failure,
        };
        match self.queues.iter_mut().find(|q| q.tp == tp) {
            Some(queue) => queue.pending.push_back(given_up),
            None => self.queues.push(PartitionQueue {
                tp,
                pending: VecDeque::from([given_up]),
                next_at: Instant::now(),
                backoff: Backoff::new(bounds),
            }),
        }
    }

    /// Whether `tp` has dead letters not yet acknowledged.
    pub(super) fn has(&self, tp: &TopicPartition) -> bool {
        self.queues.iter().any(|q| &q.tp == tp)
    }

    /// When `tp`'s next dead letter is due, if it has any.
    pub(super) fn next_due_of(&self, tp: &TopicPartition) -> Option<Instant> {
        self.queues.iter().find(|q| &q.tp == tp).map(|q| q.next_at)
    }

    /// When the earliest waiting send is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.queues.iter().map(|q| q.next_at).min()
    }

    /// Drops the partitions the consumer no longer owns: their messages are uncommitted
    /// and go to the new owner.
    pub(super) fn forget(&mut self, gone: &[TopicPartition]) {
        self.queues.retain(|q| !gone.contains(&q.tp));
    }
}

impl<M: Mode> Runner<M> {
    /// Produces the due dead letters of every partition (or of `only`), in order; `Err`
    /// when a send failed fatally and the manager must stop.
    pub(super) async fn send_dead_letters(
        &mut self,
        only: Option<&TopicPartition>,
    ) -> Result<(), StopReason> {
        let now = Instant::now();
        let mut idx = 0;
        while idx < self.dead_letters.queues.len() {
            let queue = &self.dead_letters.queues[idx];
            if only.is_some_and(|tp| tp != &queue.tp) || queue.next_at > now {
                idx += 1;
                continue;
            }
            if self.send_queue(idx).await? {
                self.dead_letters.queues.remove(idx);
            } else {
                idx += 1;
            }
        }
        Ok(())
    }

    fn count_dead_letter_error(&self, e: &SourceError) {
        Counters::bump(&self.shared.counters.dead_letter_errors);
        self.note_error(e);
    }

    /// Sends one partition's dead letters from the oldest until one must wait; `true`
    /// when every one was acknowledged.
    async fn send_queue(&mut self, idx: usize) -> Result<bool, StopReason> {
        loop {
            let queue = &self.dead_letters.queues[idx];
            let Some(head) = queue.pending.front() else {
                return Ok(true);
            };
            if self.shared.stop.is_raised() {
                // A send can take up to the producer's timeout; stopping must not wait
                // for one. The message stays uncommitted and is redelivered.
                return Ok(false);
            }
            let FailurePolicy::DeadLetter(dead_letter) = &mut self.config.failure_policy else {
                // Only the dead-letter policy queues any.
                return Ok(false);
            };
            let message = head.message.clone();
            let destination = dead_letter.destination(message.topic());
            // A sibling of the message's callback spans; its context goes into the dead
            // letter's headers (feature `opentelemetry`), so the trace carries on.
            let span = tracing::trace_span!(target: "ktm_core::callback", "dead_letter",
                topic = message.topic(), partition = message.partition(), offset = message.offset(),
                dead_letter_topic = %destination);
            #[cfg(feature = "opentelemetry")]
            crate::trace_context::adopt(&span, std::slice::from_ref(&message));
            let mut record = span.in_scope(|| {
                DeadLetterRecord::new(destination, &message, head.attempts, &head.failure.reason)
            });
            record.headers.push(Header::new(
                HEADER_FAILURE_KIND,
                Some(Bytes::from_static(head.failure.kind_name().as_bytes())),
            ));
            let sent = dead_letter.producer.send(&record).instrument(span).await;
            let queue = &mut self.dead_letters.queues[idx];
            match sent {
                Ok(()) => {
                    let Some(head) = queue.pending.pop_front() else {
                        return Ok(true);
                    };
                    queue.backoff.reset();
                    warn!(tp = %queue.tp, offset = head.message.offset(), attempts = head.attempts, dead_letter_topic = %record.topic, "message dead-lettered");
                    self.ledger.settle(
                        std::slice::from_ref(&head.message),
                        Settlement::DeadLettered,
                        self.mode.positions(),
                    );
                    // A long run of dead letters must not hold the policy's commits back.
                    self.commit_if_due().await?;
                }
                Err(e) if e.is_transient() => {
                    let delay = queue.backoff.next_delay();
                    warn!(tp = %queue.tp, offset = message.offset(), error = %e, retry_in = ?delay, "producing the dead letter failed; retrying (its offset stays uncommitted)");
                    queue.next_at = Instant::now() + delay;
                    self.count_dead_letter_error(&e);
                    return Ok(false);
                }
                Err(e) => {
                    error!(tp = %queue.tp, offset = message.offset(), error = %e, "producing the dead letter failed fatally; stopping (its offset is not committed)");
                    let failure = match queue.pending.pop_front() {
                        Some(head) => *head.failure,
                        None => unknown_failure(&message),
                    };
                    self.count_dead_letter_error(&e);
                    return Err(StopReason::DeadLetterFailed {
                        failure,
                        error: SharedError::new(e),
                    });
                }
            }
        }
    }
}

/// The failure of a dead letter whose record was lost; never expected, but the stop
/// reason must still name the message.
#[cold]
fn unknown_failure(message: &Message) -> CallbackFailure {
    CallbackFailure {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        reason: String::new(),
        error: None,
        panicked: false,
        kind: crate::FailureKind::Permanent,
    }
}
