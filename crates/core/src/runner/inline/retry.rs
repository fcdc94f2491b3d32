//! Failed messages of the runner's own callbacks: the partition is held back (paused at
//! the source) behind its failed message, which is retried with backoff; then the
//! failure policy applies (stop, skip, dead letter). None of this is on the per-message
//! path until a callback fails.

use std::collections::VecDeque;
use std::time::Instant;

use tracing::{info, warn};

use super::Inline;
use crate::backoff::Backoff;
use crate::callback::Handle;
use crate::runner::policy::GiveUp;
use crate::runner::Runner;
use crate::{CallbackFailure, Message, StopReason, TopicPartition};

/// A partition held back behind its first unsettled message, which failed: it waits for
/// its next attempt or for its dead letter. The partition's later messages queue behind
/// it, so its order is kept while other partitions go on.
struct Held {
    tp: TopicPartition,
    /// The failed message first (until it is given up on), then the partition's later
    /// messages, in offset order.
    pending: VecDeque<Message>,
    /// Callback attempts made on the head message.
    attempts: u32,
    first_failed_at: Instant,
    next_at: Instant,
    backoff: Backoff,
    /// Whether the source was asked to pause the partition.
    paused: bool,
}

/// The partitions held back; one entry per partition. Empty on the happy path, which
/// then checks nothing.
#[derive(Default)]
pub(super) struct Retrying {
    entries: Vec<Held>,
}

impl Retrying {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `message` behind its partition's failed one, if that partition is held.
    pub(super) fn divert(&mut self, message: &Message) -> bool {
        let tp_matches = |h: &&mut Held| {
            h.tp.partition() == message.partition() && h.tp.topic() == message.topic()
        };
        match self.entries.iter_mut().find(tp_matches) {
            Some(held) => {
                held.pending.push_back(message.clone());
                true
            }
            None => false,
        }
    }

    /// When the earliest waiting attempt is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.entries.iter().map(|h| h.next_at).min()
    }

    /// Drops the partitions the consumer no longer owns: their unsettled messages are
    /// uncommitted and go to the new owner.
    pub(super) fn forget(&mut self, gone: &[TopicPartition]) {
        self.entries.retain(|h| !gone.contains(&h.tp));
    }
}

/// Where a held partition stands after working through its queue.
enum Advance {
    /// Every queued message was settled; the partition can move again.
    Drained,
    /// The head waits for a later attempt, or for its dead letter.
    Waiting,
    /// The policy says stop.
    Stop(StopReason),
}

impl<H: Handle> Runner<Inline<H>> {
    /// The first failure of a message met in a batch: hold its partition back behind it,
    /// then retry, dispose of it, or stop, as the policies say. `Some` when the thread
    /// must stop.
    #[cold]
    pub(super) async fn on_callback_failure(
        &mut self,
        message: &Message,
        failure: Box<CallbackFailure>,
    ) -> Option<StopReason> {
        let now = Instant::now();
        self.mode.retrying.entries.push(Held {
            tp: message.topic_partition(),
            pending: VecDeque::from([message.clone()]),
            attempts: 1,
            first_failed_at: now,
            next_at: now,
            backoff: Backoff::new(self.config.retry_policy.backoff_bounds()),
            paused: false,
        });
        let idx = self.mode.retrying.entries.len() - 1;
        let advance = match self.after_failed_attempt(idx, message, failure) {
            Some(advance) => advance,
            None => self.drain(idx).await,
        };
        self.release(idx, advance)
    }

    /// Runs the attempts that are due; `Some` when the thread must stop.
    pub(super) async fn retry_due(&mut self) -> Option<StopReason> {
        let now = Instant::now();
        let mut idx = 0;
        while idx < self.mode.retrying.entries.len() {
            if self.mode.retrying.entries[idx].next_at > now {
                idx += 1;
                continue;
            }
            let before = self.mode.retrying.entries.len();
            let advance = self.drain(idx).await;
            if let Some(reason) = self.release(idx, advance) {
                return Some(reason);
            }
            if self.mode.retrying.entries.len() == before {
                idx += 1;
            }
        }
        None
    }

    /// Lets a drained partition go (resuming it at the source); passes a stop on.
    fn release(&mut self, idx: usize, advance: Advance) -> Option<StopReason> {
        match advance {
            Advance::Waiting => None,
            Advance::Stop(reason) => Some(reason),
            Advance::Drained => {
                let held = &mut self.mode.retrying.entries[idx];
                if held.paused {
                    if let Err(e) = self.source.resume(std::slice::from_ref(&held.tp)) {
                        // Kept (with nothing queued), so the resume is tried again: a
                        // partition left paused would stall while the group thinks
                        // it is consumed.
                        let delay = held.backoff.next_delay();
                        warn!(tp = %held.tp, error = %e, retry_in = ?delay, "could not resume the partition; retrying");
                        held.next_at = Instant::now() + delay;
                        return None;
                    }
                }
                self.mode.retrying.entries.remove(idx);
                None
            }
        }
    }

    /// Works through a held partition's queue from its head (its dead letter first, then
    /// the due attempt, then the messages behind it) until one must wait, or the queue is
    /// empty.
    async fn drain(&mut self, idx: usize) -> Advance {
        loop {
            if self.shared.stop.is_raised() {
                return Advance::Waiting;
            }
            let tp = self.mode.retrying.entries[idx].tp.clone();
            if self.dead_letters.has(&tp) {
                if let Err(reason) = self.send_dead_letters(Some(&tp)).await {
                    return Advance::Stop(reason);
                }
                if let Some(next_at) = self.dead_letters.next_due_of(&tp) {
                    self.mode.retrying.entries[idx].next_at = next_at;
                    self.pause(idx);
                    return Advance::Waiting;
                }
            }
            let held = &self.mode.retrying.entries[idx];
            let Some(head) = held.pending.front().cloned() else {
                return Advance::Drained;
            };
            let retry = held.attempts > 0;
            if retry {
                self.ledger.count_retry(&tp);
            }
            // Retries are rare: whether TRACE is on is asked per attempt.
            let traced = tracing::enabled!(target: "ktm_core::callback", tracing::Level::TRACE);
            let outcome = self.call_observed(&head, traced).await;
            let held = &mut self.mode.retrying.entries[idx];
            match outcome {
                Ok(()) => {
                    if retry {
                        info!(tp = %held.tp, offset = head.offset(), attempts = held.attempts + 1, "message handled after retrying");
                    }
                    held.next_message();
                    self.settle_handled(&head);
                }
                Err(failure) => {
                    held.attempts = held.attempts.saturating_add(1);
                    if let Some(advance) = self.after_failed_attempt(idx, &head, failure) {
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
    /// (`Some(Waiting)`), stop, or dispose of it by policy and go on (`None`; a dead
    /// letter is then queued, and sent first by `drain`).
    fn after_failed_attempt(
        &mut self,
        idx: usize,
        head: &Message,
        failure: Box<CallbackFailure>,
    ) -> Option<Advance> {
        self.ledger
            .count_failed_attempt(&head.topic_partition(), &failure);
        let now = Instant::now();
        let retry = self.config.retry_policy;
        let held = &mut self.mode.retrying.entries[idx];
        if held.attempts == 1 {
            held.first_failed_at = now;
        }
        let delay = retry.retry_delay(
            failure.kind,
            held.attempts,
            held.first_failed_at,
            now,
            &mut held.backoff,
        );
        if let Some(delay) = delay {
            warn!(%failure, attempt = held.attempts, retry_in = ?delay, "callback failed; retrying after a backoff (later messages of the partition wait)");
            held.next_at = now + delay;
            self.pause(idx);
            return Some(Advance::Waiting);
        }
        let attempts = held.attempts;
        match self.apply_failure_policy(std::slice::from_ref(head), failure, attempts) {
            GiveUp::Stop(reason) => Some(Advance::Stop(reason)),
            GiveUp::Disposed => {
                self.mode.retrying.entries[idx].next_message();
                None
            }
        }
    }

    /// Pauses a held partition at the source, so its records wait at the broker rather
    /// than in memory. A source that cannot pause still works: what arrives is queued
    /// behind the failed message.
    fn pause(&mut self, idx: usize) {
        let held = &mut self.mode.retrying.entries[idx];
        if held.paused {
            return;
        }
        match self.source.pause(std::slice::from_ref(&held.tp)) {
            Ok(()) => held.paused = true,
            Err(e) => {
                warn!(tp = %held.tp, error = %e, "could not pause the partition; its records are held in memory until it moves again");
            }
        }
    }
}

impl Held {
    /// The head is settled, or given up on: the next queued message starts with a clean
    /// slate.
    fn next_message(&mut self) {
        self.pending.pop_front();
        self.attempts = 0;
        self.backoff.reset();
    }
}
