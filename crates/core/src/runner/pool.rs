//! The runner with a worker pool: polled messages are dispatched rather than handled
//! here, and the workers' reports settle them. Commits, rebalances, dead letters and the
//! shutdown sequence are the runner's own, as without a pool.

use tracing::warn;

use super::policy::GiveUp;
use super::Runner;
use crate::callback::Handle;
use crate::pool::{Dispatcher, Report, Settled, WorkEvent};
use crate::stats::Counters;
use crate::{CallbackFailure, Message, StopReason};

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
        if let Some(pool) = self.pool.as_mut() {
            pool.refill();
        }
        self.pause_and_resume();
        if applied {
            // Reports cancel polls, so a poll may not end for a while: publish here too.
            self.publish_partitions();
        }
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
        let current = self
            .pool
            .as_ref()
            .is_some_and(|pool| pool.is_current(&report));
        if !current {
            // Work on a partition given up since: not ours to count or commit.
            return None;
        }
        let Report { tp, event, .. } = report;
        match event {
            WorkEvent::Handled { messages, sample } => {
                if let (Some(took), Some(first)) = (sample, messages.first()) {
                    self.progress.callback_sample(first, took);
                    self.metrics.callback_sample(first, took);
                }
                // A report is one partition's run: settle its offsets, then update that
                // partition's progress once.
                let n = messages.len() as u64;
                let mut position = None;
                if let Some(pool) = self.pool.as_mut() {
                    for message in &messages {
                        if let Settled::Position(p) = pool.settle(&tp, message.offset()) {
                            position = Some(p);
                        }
                    }
                }
                self.progress.handled_run(&tp, n, position);
                Counters::add(&self.shared.counters.handled, n);
                self.count_toward_commit(n);
                None
            }
            WorkEvent::AttemptFailed { failure } => {
                self.count_failed_attempt(&tp, &failure);
                None
            }
            WorkEvent::Retrying => {
                self.count_retry(&tp);
                None
            }
            WorkEvent::GaveUp {
                messages,
                failure,
                attempts,
            } => {
                self.count_failed_attempt(&tp, &failure);
                self.give_up_in_pool(messages, failure, attempts)
            }
        }
    }

    /// The failure policy, for messages a worker gave up on.
    fn give_up_in_pool(
        &mut self,
        messages: Vec<Message>,
        failure: Box<CallbackFailure>,
        attempts: u32,
    ) -> Option<StopReason> {
        match self.apply_failure_policy(&messages, failure, attempts) {
            GiveUp::Stop(reason) => Some(reason),
            GiveUp::Skipped => None,
            GiveUp::DeadLetter(failure) => {
                // Produced from the runner, one at a time per partition with its backoff
                // on send failures; the worker goes on, and the commit waits at these
                // offsets until the broker acknowledged them.
                let bounds = self.config.retry_policy.backoff_bounds();
                for message in messages {
                    self.blocked
                        .push_dead_letter(message, attempts, failure.clone(), bounds);
                }
                None
            }
        }
    }

    /// Settles a message, moving its partition's position when the settled prefix grew
    /// (through the in-flight tracker with a pool: workers finish out of order).
    pub(super) fn settle_message(&mut self, message: &Message) {
        let Some(pool) = self.pool.as_mut() else {
            self.progress.disposed(message);
            return;
        };
        let tp = message.topic_partition();
        if let Settled::Position(position) = pool.settle(&tp, message.offset()) {
            self.progress.handled_run(&tp, 0, Some(position));
        }
    }

    /// Halts the workers once their current callbacks return and applies what they
    /// reported last; the runner's final commit follows.
    pub(super) async fn drain_pool(&mut self) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        pool.halt();
        loop {
            let Some(pool) = self.pool.as_mut() else {
                return;
            };
            let Some(report) = pool.last_reports().await else {
                break;
            };
            if let Some(reason) = self.on_report(report) {
                // A give-up under Stop while stopping still ends the manager Failed.
                self.begin_stopping(reason);
            }
        }
        if let Some(pool) = self.pool.as_mut() {
            pool.join();
        }
    }
}
