//! The runner with a worker pool: polled messages are dispatched rather than handled
//! here, and the workers' reports settle them. Commits, rebalances, dead letters and the
//! shutdown sequence are the runner's own, as without a pool.

use tracing::{error, warn};

use super::Runner;
use crate::callback::Handle;
use crate::manager::lock;
use crate::pool::{Dispatcher, Report, Settled};
use crate::stats::Counters;
use crate::{FailurePolicy, Message, StopReason};

impl<H: Handle> Runner<H> {
    /// Applies `first` and every other report waiting, refills the workers' queues,
    /// pauses and resumes partitions, and commits if due. `Some` when the thread must stop.
    pub(super) async fn pump_pool(&mut self, first: Option<Report>) -> Option<StopReason> {
        let mut next = first;
        let mut applied = false;
        loop {
            let report = match next.take() {
                Some(report) => report,
                None => match self.pool.as_mut().and_then(Dispatcher::try_report) {
                    Some(report) => report,
                    None => break,
                },
            };
            applied = true;
            if let Some(reason) = self.on_report(report) {
                return Some(reason);
            }
        }
        if applied {
            // Reports cancel polls, so a poll may not end for a while: publish here too.
            self.publish_partitions();
        }
        if let Some(pool) = self.pool.as_mut() {
            pool.refill();
        }
        self.pause_and_resume();
        if self.count_commit_due() || self.interval_commit_due() {
            if let Err(reason) = self.commit_periodically().await {
                return Some(reason);
            }
        }
        None
    }

    /// Hands the polled batch to the workers.
    pub(super) fn dispatch_batch(&mut self) {
        let mut messages = self.batch.take_messages();
        if let Some(pool) = self.pool.as_mut() {
            for message in messages.drain(..) {
                pool.offer(message);
            }
        }
        self.batch.restore_messages(messages);
        self.pause_and_resume();
    }

    /// Pauses partitions held back by a full worker, so their records wait at the
    /// broker; resumes those whose held messages are all queued again.
    fn pause_and_resume(&mut self) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        let to_pause = pool.to_pause();
        if !to_pause.is_empty() {
            if let Err(e) = self.source.pause(&to_pause) {
                warn!(partitions = ?to_pause, error = %e, "could not pause partitions whose workers are full; their records are held in memory");
            }
            // Marked either way: retrying the pause on every poll would only repeat the warning.
            pool.mark_paused(&to_pause);
        }
        let to_resume = pool.to_resume();
        if !to_resume.is_empty() {
            match self.source.resume(&to_resume) {
                Ok(()) => pool.mark_resumed(&to_resume),
                // Left marked paused, so the resume is tried again on the next pass.
                Err(e) => {
                    warn!(partitions = ?to_resume, error = %e, "could not resume partitions; retrying")
                }
            }
        }
    }

    fn on_report(&mut self, report: Report) -> Option<StopReason> {
        match report {
            Report::Handled { messages, sample } => {
                if let (Some(took), Some(first)) = (sample, messages.first()) {
                    self.progress.callback_sample(first, took);
                    self.metrics.callback_sample(first, took);
                }
                let mut counted = 0;
                for message in &messages {
                    if self.settle_message(message) {
                        self.progress.count_handled(message);
                        counted += 1;
                    }
                }
                Counters::add(&self.shared.counters.handled, counted);
                self.handled_since_commit += counted;
                None
            }
            Report::Retrying { failure } => {
                Counters::bump(&self.shared.counters.callback_failures);
                Counters::bump(&self.shared.counters.retries);
                let tp = crate::TopicPartition::new(failure.topic.as_str(), failure.partition);
                let counts = self.progress.failures_of(&tp);
                counts.failures += 1;
                counts.retries += 1;
                lock(&self.shared.live).last_error = Some(failure.to_string());
                None
            }
            Report::GaveUp {
                messages,
                failure,
                attempts,
            } => self.give_up_in_pool(messages, failure, attempts),
        }
    }

    /// The failure policy, for messages a worker gave up on.
    fn give_up_in_pool(
        &mut self,
        messages: Vec<Message>,
        failure: Box<crate::CallbackFailure>,
        attempts: u32,
    ) -> Option<StopReason> {
        let first = messages.first()?;
        Counters::bump(&self.shared.counters.callback_failures);
        self.progress.failures_of(&first.topic_partition()).failures += 1;
        lock(&self.shared.live).last_error = Some(failure.to_string());
        match &self.config.failure_policy {
            FailurePolicy::Stop => {
                error!(%failure, attempts, "callback failed; stopping (its offset is not committed)");
                Some(StopReason::CallbackFailed(*failure))
            }
            FailurePolicy::Skip => {
                warn!(%failure, attempts, messages = messages.len(), "callback failed; skipping by policy");
                for message in &messages {
                    Counters::bump(&self.shared.counters.skipped);
                    self.progress
                        .failures_of(&message.topic_partition())
                        .skipped += 1;
                    self.settle_message(message);
                    self.handled_since_commit += 1;
                }
                None
            }
            FailurePolicy::DeadLetter(_) => {
                // Produced from the runner, with its backoff on send failures; the worker
                // goes on, and the commit waits at these offsets until the broker acks.
                let bounds = self.config.retry_policy.backoff_bounds();
                for message in messages {
                    self.blocked
                        .push_dead_letter(message, attempts, failure.clone(), bounds);
                }
                None
            }
        }
    }

    /// Settles a message through the in-flight tracker, moving its partition's position
    /// when a settled prefix grew; `false` if the partition is no longer ours.
    pub(super) fn settle_message(&mut self, message: &Message) -> bool {
        let Some(pool) = self.pool.as_mut() else {
            self.progress.disposed(message);
            return true;
        };
        match pool.settle(message) {
            Settled::NotInFlight => false,
            Settled::Waiting => true,
            Settled::Position(position) => {
                self.progress.advance(message, position);
                true
            }
        }
    }

    /// Halts the workers once their current callbacks return, joins them, and applies
    /// what they reported last; the runner's final commit follows.
    pub(super) fn drain_pool(&mut self) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        pool.halt_and_join();
        while let Some(report) = self.pool.as_mut().and_then(Dispatcher::try_report) {
            if let Some(reason) = self.on_report(report) {
                // A give-up under Stop while stopping still ends the manager Failed.
                self.begin_stopping(reason);
            }
        }
    }
}
