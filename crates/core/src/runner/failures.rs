//! Failed messages: retries with backoff while their partition is paused, then the
//! failure policy (stop, skip, dead letter). None of this is on the per-message path
//! until a callback fails.

use std::collections::VecDeque;
use std::time::Instant;

use tracing::{error, info, warn, Instrument};

use super::policy::GiveUp;
use super::{record_handled, Runner};
use crate::backoff::Backoff;
use crate::callback::Handle;
use crate::stats::Counters;
use crate::{
    CallbackFailure, DeadLetterRecord, FailureKind, FailurePolicy, Message, SharedError,
    StopReason, TopicPartition,
};

/// A partition whose first unsettled message failed and waits for its next attempt, or
/// for its dead letter to be produced. The partition's later messages queue behind it,
/// so its order is kept while other partitions go on.
pub(super) struct Blocked {
    tp: TopicPartition,
    /// The failed message first, then the partition's later messages, in offset order.
    pending: VecDeque<Message>,
    /// Callback attempts made on the head message.
    attempts: u32,
    first_failed_at: Instant,
    next_at: Instant,
    backoff: Backoff,
    last_failure: Option<Box<CallbackFailure>>,
    /// The head's callback was given up on; producing its dead letter is what is retried.
    dead_lettering: bool,
    /// Whether the source was asked to pause the partition.
    paused: bool,
}

/// The blocked partitions; empty on the happy path, which then checks nothing.
#[derive(Default)]
pub(super) struct BlockedPartitions {
    entries: Vec<Blocked>,
}

impl BlockedPartitions {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `message` behind its partition's failed one, if that partition is blocked.
    pub(super) fn divert(&mut self, message: &Message) -> bool {
        let tp_matches = |b: &&mut Blocked| {
            b.tp.partition() == message.partition() && b.tp.topic() == message.topic()
        };
        match self.entries.iter_mut().find(tp_matches) {
            Some(blocked) => {
                blocked.pending.push_back(message.clone());
                true
            }
            None => false,
        }
    }

    /// When the earliest waiting attempt is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.heads().map(|i| self.entries[i].next_at).min()
    }

    /// The first entry of each partition: only it may be attempted. Without a worker
    /// pool a partition has one entry; with one, each given-up message has its own, and
    /// they are dead-lettered in offset order, one send at a time per partition.
    fn heads(&self) -> impl Iterator<Item = usize> + '_ {
        let mut seen = std::collections::HashSet::new();
        (0..self.entries.len()).filter(move |&i| seen.insert(&self.entries[i].tp))
    }

    /// Queues a message a worker gave up on for its dead letter, produced by the runner
    /// (with backoff on send failures) as the next due attempt.
    pub(super) fn push_dead_letter(
        &mut self,
        message: Message,
        attempts: u32,
        failure: Box<CallbackFailure>,
        bounds: crate::RetryBackoff,
    ) {
        let now = Instant::now();
        self.entries.push(Blocked {
            tp: message.topic_partition(),
            pending: VecDeque::from([message]),
            attempts,
            first_failed_at: now,
            next_at: now,
            backoff: Backoff::new(bounds),
            last_failure: Some(failure),
            dead_lettering: true,
            paused: false,
        });
    }

    /// Drops the partitions the consumer no longer owns: their unsettled messages are
    /// uncommitted and go to the new owner.
    pub(super) fn forget(&mut self, gone: &[TopicPartition]) {
        self.entries.retain(|b| !gone.contains(&b.tp));
    }
}

/// Where a blocked partition stands after working through its queue.
enum Advance {
    /// Every queued message was settled; the partition can move again.
    Drained,
    /// The head waits for a later attempt.
    Waiting,
    /// The policy says stop.
    Stop(StopReason),
}

impl<H: Handle> Runner<H> {
    /// The first failure of a message met in a batch: block its partition behind it,
    /// then retry, dispose of it, or stop, as the policies say. `Some` when the thread
    /// must stop.
    #[cold]
    pub(super) async fn on_callback_failure(
        &mut self,
        message: &Message,
        failure: Box<CallbackFailure>,
    ) -> Option<StopReason> {
        let now = Instant::now();
        self.blocked.entries.push(Blocked {
            tp: message.topic_partition(),
            pending: VecDeque::from([message.clone()]),
            attempts: 1,
            first_failed_at: now,
            next_at: now,
            backoff: Backoff::new(self.config.retry_policy.backoff_bounds()),
            last_failure: None,
            dead_lettering: false,
            paused: false,
        });
        let idx = self.blocked.entries.len() - 1;
        let advance = match self.after_failed_attempt(idx, message, failure).await {
            Some(advance) => advance,
            None => self.drain(idx).await,
        };
        self.settle(idx, advance)
    }

    /// Runs the attempts that are due; `Some` when the thread must stop.
    pub(super) async fn retry_due(&mut self) -> Option<StopReason> {
        let now = Instant::now();
        let mut idx = 0;
        // Partitions met in this pass: only their first entry is a head. One that
        // becomes a head during the pass waits for the next one (it is due at once).
        let mut met = std::collections::HashSet::new();
        while idx < self.blocked.entries.len() {
            let head = met.insert(self.blocked.entries[idx].tp.clone());
            if !head || self.blocked.entries[idx].next_at > now {
                idx += 1;
                continue;
            }
            let before = self.blocked.entries.len();
            let advance = self.drain(idx).await;
            if let Some(reason) = self.settle(idx, advance) {
                return Some(reason);
            }
            if self.blocked.entries.len() == before {
                idx += 1;
            }
        }
        None
    }

    /// Unblocks a drained partition (resuming it at the source); passes a stop on.
    fn settle(&mut self, idx: usize, advance: Advance) -> Option<StopReason> {
        match advance {
            Advance::Waiting => None,
            Advance::Stop(reason) => Some(reason),
            Advance::Drained => {
                let blocked = &mut self.blocked.entries[idx];
                if blocked.paused {
                    if let Err(e) = self.source.resume(std::slice::from_ref(&blocked.tp)) {
                        // Kept (with nothing queued), so the resume is tried again: a
                        // partition left paused would stall while the group thinks
                        // it is consumed.
                        let delay = blocked.backoff.next_delay();
                        warn!(tp = %blocked.tp, error = %e, retry_in = ?delay, "could not resume the partition; retrying");
                        blocked.next_at = Instant::now() + delay;
                        return None;
                    }
                }
                self.blocked.entries.remove(idx);
                None
            }
        }
    }

    /// Works through a blocked partition's queue from its head (the due attempt first,
    /// then the messages behind it) until one must wait, or the queue is empty.
    async fn drain(&mut self, idx: usize) -> Advance {
        loop {
            if self.shared.stop.is_raised() {
                return Advance::Waiting;
            }
            let blocked = &self.blocked.entries[idx];
            let Some(head) = blocked.pending.front().cloned() else {
                return Advance::Drained;
            };
            if blocked.dead_lettering {
                match self.dead_letter(idx, &head).await {
                    Ok(true) => continue,
                    Ok(false) => return Advance::Waiting,
                    Err(reason) => return Advance::Stop(reason),
                }
            }
            let retry = blocked.attempts > 0;
            if retry {
                self.count_retry(&head.topic_partition());
            }
            // Retries are rare: whether TRACE is on is asked per attempt.
            let traced = tracing::enabled!(target: "ktm_core::callback", tracing::Level::TRACE);
            let outcome = self.call_observed(&head, traced).await;
            let blocked = &mut self.blocked.entries[idx];
            match outcome {
                Ok(()) => {
                    if retry {
                        info!(tp = %blocked.tp, offset = head.offset(), attempts = blocked.attempts + 1, "message handled after retrying");
                    }
                    blocked.next_message();
                    record_handled(
                        &mut self.progress,
                        &self.shared.counters,
                        std::slice::from_ref(&head),
                    );
                    self.count_toward_commit(1);
                }
                Err(failure) => {
                    blocked.attempts = blocked.attempts.saturating_add(1);
                    if let Some(advance) = self.after_failed_attempt(idx, &head, failure).await {
                        return advance;
                    }
                }
            }
            // A long backlog behind the failed message must not hold the policy's
            // commits back until it is all worked through.
            if self.count_commit_due() {
                if let Err(reason) = self.commit_periodically().await {
                    return Advance::Stop(reason);
                }
            }
        }
    }

    /// Counts a failed attempt on the head and decides: wait for a retry
    /// (`Some(Waiting)`), stop, or dispose of it by policy and go on (`None`).
    async fn after_failed_attempt(
        &mut self,
        idx: usize,
        head: &Message,
        failure: Box<CallbackFailure>,
    ) -> Option<Advance> {
        self.count_failed_attempt(&head.topic_partition(), &failure);
        let now = Instant::now();
        let retry = self.config.retry_policy;
        let blocked = &mut self.blocked.entries[idx];
        if blocked.attempts == 1 {
            blocked.first_failed_at = now;
        }
        let delay = retry.retry_delay(
            failure.kind,
            blocked.attempts,
            blocked.first_failed_at,
            now,
            &mut blocked.backoff,
        );
        if let Some(delay) = delay {
            warn!(%failure, attempt = blocked.attempts, retry_in = ?delay, "callback failed; retrying after a backoff (later messages of the partition wait)");
            blocked.next_at = now + delay;
            blocked.last_failure = Some(failure);
            self.pause(idx);
            return Some(Advance::Waiting);
        }
        self.give_up(idx, head, failure).await
    }

    /// Applies the failure policy to a message that failed for good.
    async fn give_up(
        &mut self,
        idx: usize,
        head: &Message,
        failure: Box<CallbackFailure>,
    ) -> Option<Advance> {
        let attempts = self.blocked.entries[idx].attempts;
        match self.apply_failure_policy(std::slice::from_ref(head), failure, attempts) {
            GiveUp::Stop(reason) => Some(Advance::Stop(reason)),
            GiveUp::Skipped => {
                self.blocked.entries[idx].next_message();
                None
            }
            GiveUp::DeadLetter(failure) => {
                let blocked = &mut self.blocked.entries[idx];
                blocked.last_failure = Some(failure);
                blocked.dead_lettering = true;
                blocked.backoff.reset();
                match self.dead_letter(idx, head).await {
                    Ok(true) => None,
                    Ok(false) => Some(Advance::Waiting),
                    Err(reason) => Some(Advance::Stop(reason)),
                }
            }
        }
    }

    /// Produces the head's dead letter. `Ok(true)` once the broker acknowledged it (the
    /// head is then settled), `Ok(false)` when it must be tried again later.
    async fn dead_letter(&mut self, idx: usize, head: &Message) -> Result<bool, StopReason> {
        if self.shared.stop.is_raised() {
            // A send can take up to the producer's timeout; stopping must not wait for
            // one. The message stays uncommitted and is redelivered.
            return Ok(false);
        }
        let blocked = &self.blocked.entries[idx];
        let FailurePolicy::DeadLetter(dead_letter) = &mut self.config.failure_policy else {
            return Ok(false);
        };
        let reason = blocked
            .last_failure
            .as_ref()
            .map_or("", |f| f.reason.as_str());
        let destination = dead_letter.destination(head.topic());
        // A sibling of the message's callback spans; its context goes into the dead
        // letter's headers (feature `opentelemetry`), so the trace carries on.
        let span = tracing::trace_span!(target: "ktm_core::callback", "dead_letter",
            topic = head.topic(), partition = head.partition(), offset = head.offset(),
            dead_letter_topic = %destination);
        #[cfg(feature = "opentelemetry")]
        crate::trace_context::adopt(&span, std::slice::from_ref(head));
        let record =
            span.in_scope(|| DeadLetterRecord::new(destination, head, blocked.attempts, reason));
        let sent = dead_letter.producer.send(&record).instrument(span).await;
        let blocked = &mut self.blocked.entries[idx];
        match sent {
            Ok(()) => {
                warn!(tp = %blocked.tp, offset = head.offset(), attempts = blocked.attempts, dead_letter_topic = %record.topic, "message dead-lettered");
                Counters::bump(&self.shared.counters.dead_lettered);
                blocked.next_message();
                self.progress
                    .failures_of(&head.topic_partition())
                    .dead_lettered += 1;
                self.settle_message(head);
                self.count_toward_commit(1);
                Ok(true)
            }
            Err(e) if e.is_transient() => {
                let delay = blocked.backoff.next_delay();
                warn!(tp = %blocked.tp, offset = head.offset(), error = %e, retry_in = ?delay, "producing the dead letter failed; retrying (its offset stays uncommitted)");
                blocked.next_at = Instant::now() + delay;
                Counters::bump(&self.shared.counters.dead_letter_errors);
                self.note_error(&e);
                self.pause(idx);
                Ok(false)
            }
            Err(e) => {
                error!(tp = %blocked.tp, offset = head.offset(), error = %e, "producing the dead letter failed fatally; stopping (its offset is not committed)");
                let failure = blocked.last_failure.take();
                Counters::bump(&self.shared.counters.dead_letter_errors);
                self.note_error(&e);
                let failure = failure.map_or_else(
                    || CallbackFailure {
                        topic: head.topic().to_owned(),
                        partition: head.partition(),
                        offset: head.offset(),
                        reason: String::new(),
                        error: None,
                        panicked: false,
                        kind: FailureKind::Permanent,
                    },
                    |f| *f,
                );
                Err(StopReason::DeadLetterFailed {
                    failure,
                    error: SharedError::new(e),
                })
            }
        }
    }

    /// Pauses a blocked partition at the source, so its records wait at the broker
    /// rather than in memory. A source that cannot pause still works: what arrives is
    /// queued behind the failed message.
    fn pause(&mut self, idx: usize) {
        let blocked = &mut self.blocked.entries[idx];
        // With a worker pool the dispatcher owns pausing (its in-flight bound holds a
        // partition whose dead letter is slow); a second owner would resume it early.
        if blocked.paused || self.pool.is_some() {
            return;
        }
        match self.source.pause(std::slice::from_ref(&blocked.tp)) {
            Ok(()) => blocked.paused = true,
            Err(e) => {
                warn!(tp = %blocked.tp, error = %e, "could not pause the partition; its records are held in memory until it moves again");
            }
        }
    }
}

impl Blocked {
    /// The head is settled: the next queued message starts with a clean slate.
    fn next_message(&mut self) {
        self.pending.pop_front();
        self.attempts = 0;
        self.dead_lettering = false;
        self.last_failure = None;
        self.backoff.reset();
    }
}
