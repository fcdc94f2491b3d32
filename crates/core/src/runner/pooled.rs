//! The worker pool as the runner's mode: polled messages are dispatched rather than
//! handled here, and the workers' reports settle them. Commits, rebalances, dead letters
//! and the shutdown sequence are the runner's own, as with the inline mode.

use tracing::warn;

use super::policy::GiveUp;
use super::settle::{Positions, Settlement};
use super::{Mode, Runner};
use crate::pool::{Dispatcher, Report, Settled, WorkEvent};
use crate::progress::Progress;
use crate::{Message, StopReason, TopicPartition};

/// The callbacks run on worker threads; the dispatcher routes messages to them and
/// tracks what is in flight.
pub(crate) struct Pooled {
    dispatcher: Dispatcher,
}

impl Pooled {
    pub(crate) fn new(dispatcher: Dispatcher) -> Self {
        Self { dispatcher }
    }
}

/// Workers finish a partition's messages out of order: the in-flight tracker, not the
/// offsets, says how far the position may move. A run is one partition's.
impl Positions for Dispatcher {
    fn advance(&mut self, progress: &mut Progress, run: &[Message], handled: bool) {
        let Some(first) = run.first() else {
            return;
        };
        let tp = first.topic_partition();
        let mut position = None;
        for message in run {
            if let Settled::Position(p) = self.settle(&tp, message.offset()) {
                position = Some(p);
            }
        }
        let handled = if handled { run.len() as u64 } else { 0 };
        progress.handled_run(&tp, handled, position);
    }
}

impl Mode for Pooled {
    type Positions = Dispatcher;
    type Wake = Report;

    fn positions(&mut self) -> &mut Dispatcher {
        &mut self.dispatcher
    }

    async fn take_batch(
        runner: &mut Runner<Self>,
        _deadline: Option<tokio::time::Instant>,
    ) -> Option<StopReason> {
        let mut messages = runner.batch.take_messages();
        for message in messages.drain(..) {
            runner.mode.dispatcher.offer(message);
        }
        runner.batch.restore_messages(messages);
        runner.pause_and_resume();
        None
    }

    async fn due_work(runner: &mut Runner<Self>) -> Option<StopReason> {
        runner.pump(None).await
    }

    fn next_due(&self) -> Option<std::time::Instant> {
        None
    }

    async fn woken(&mut self) -> Report {
        self.dispatcher.next_report().await
    }

    async fn on_wake(runner: &mut Runner<Self>, report: Report) -> Option<StopReason> {
        runner.pump(Some(report)).await
    }

    fn forget(&mut self, gone: &[TopicPartition]) {
        self.dispatcher.forget(gone);
    }

    fn backlog(&self) -> (usize, usize) {
        self.dispatcher.backlog()
    }

    /// Halts the workers once their current callbacks return and applies what they
    /// reported last; the runner's final commit follows.
    async fn drain(runner: &mut Runner<Self>) {
        runner.mode.dispatcher.halt();
        while let Some(report) = runner.mode.dispatcher.last_reports().await {
            if let Some(reason) = runner.on_report(report) {
                // A give-up under Stop while stopping still ends the manager Failed.
                super::begin_stopping(&runner.shared, reason);
            }
        }
        runner.mode.dispatcher.join();
    }
}

impl Runner<Pooled> {
    /// Applies `first` and every other report waiting, refills the workers' queues,
    /// pauses and resumes partitions, and commits if due. `Some` when the thread must stop.
    async fn pump(&mut self, first: Option<Report>) -> Option<StopReason> {
        let mut next = first;
        let mut applied = false;
        while let Some(report) = next.take().or_else(|| self.mode.dispatcher.try_report()) {
            applied = true;
            if let Some(reason) = self.on_report(report) {
                return Some(reason);
            }
        }
        self.mode.dispatcher.refill();
        self.pause_and_resume();
        if applied {
            // Reports cancel polls, so a poll may not end for a while: publish here too.
            self.publish_partitions();
        }
        self.commit_if_due().await.err()
    }

    /// Pauses partitions held back by a full worker, so their records wait at the
    /// broker; resumes those whose held messages are all queued again.
    fn pause_and_resume(&mut self) {
        let pool = &mut self.mode.dispatcher;
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
        if !self.mode.dispatcher.is_current(&report) {
            // Work on a partition given up since: not ours to count or commit.
            return None;
        }
        let Report { tp, event, .. } = report;
        match event {
            WorkEvent::Handled { messages, sample } => {
                if let (Some(took), Some(first)) = (sample, messages.first()) {
                    self.ledger.progress.callback_sample(first, took);
                    self.metrics.callback_sample(first, took);
                }
                self.ledger
                    .settle(&messages, Settlement::Handled, &mut self.mode.dispatcher);
                None
            }
            WorkEvent::AttemptFailed { failure } => {
                self.ledger.count_failed_attempt(&tp, &failure);
                None
            }
            WorkEvent::Retrying => {
                self.ledger.count_retry(&tp);
                None
            }
            WorkEvent::GaveUp {
                messages,
                failure,
                attempts,
            } => {
                self.ledger.count_failed_attempt(&tp, &failure);
                // A dead letter is queued here and produced from this thread, one at a
                // time per partition with its backoff on send failures; the worker goes
                // on, and the commit waits at these offsets until each is acknowledged.
                match self.apply_failure_policy(&messages, failure, attempts) {
                    GiveUp::Stop(reason) => Some(reason),
                    GiveUp::Disposed => None,
                }
            }
        }
    }
}
