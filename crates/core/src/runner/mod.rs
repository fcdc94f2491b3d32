//! The consumer thread: poll, hand the messages to the mode (the runner's own callbacks,
//! or a worker pool), settle, commit, and shut down in order.
//!
//! `Runner<M>` is the part both modes share: the poll loop, rebalances, dead letters,
//! commits, the lifetime and the shutdown sequence. The mode (`Inline` or `Pooled`) is a
//! type parameter, so no field says which one is on and the per-message path of the
//! runner's own callbacks is compiled for the handler's type.

mod commit;
mod dead_letters;
mod inline;
mod policy;
mod pooled;
mod settle;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::time::{sleep, sleep_until};
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::callback::panic_message;
use crate::launch::{LaunchArgs, RunConfig};
use crate::lifecycle::Trigger;
use crate::shared::{build_report, lock, Shared};
use crate::stats::Counters;
use crate::telemetry::ConsumerMetrics;
use crate::{
    MessageSource, PollBatch, SharedError, SourceError, SourceEvent, State, StopReason,
    TopicPartition,
};
use dead_letters::DeadLetters;
use settle::{Ledger, Positions};

pub(crate) use inline::Inline;
pub(crate) use pooled::Pooled;

/// Attempts at the final commit before giving up (the messages are then redelivered).
const FINAL_COMMIT_ATTEMPTS: u32 = 3;

/// What the runner does with polled messages: call the handler here (`Inline`), or hand
/// them to worker threads (`Pooled`). Everything else is the runner's.
pub(crate) trait Mode: Sized {
    /// How settled messages become commit positions.
    type Positions: Positions;
    /// Something that cuts a waiting poll short.
    type Wake;

    /// The mode's position tracker, for [`Ledger::settle`].
    fn positions(&mut self) -> &mut Self::Positions;

    /// Calls back for (or hands off) the messages of the polled batch; `Some` when the
    /// thread must stop.
    fn take_batch(
        runner: &mut Runner<Self>,
        deadline: Option<tokio::time::Instant>,
    ) -> impl Future<Output = Option<StopReason>>;

    /// The mode's own waiting work that is due (retries, the workers' reports).
    fn due_work(runner: &mut Runner<Self>) -> impl Future<Output = Option<StopReason>>;

    /// When the mode's earliest waiting work is due, if it waits on time.
    fn next_due(&self) -> Option<Instant>;

    /// Completes when something needs the runner before the poll ends.
    fn woken(&mut self) -> impl Future<Output = Self::Wake>;

    /// Takes care of what [`Mode::woken`] gave.
    fn on_wake(
        runner: &mut Runner<Self>,
        wake: Self::Wake,
    ) -> impl Future<Output = Option<StopReason>>;

    /// Drops what the mode holds of partitions no longer owned.
    fn forget(&mut self, gone: &[TopicPartition]);

    /// Messages in flight and held back (a worker pool's backlog).
    fn backlog(&self) -> (usize, usize);

    /// Finishes the mode's work before the final commit (the workers' last reports).
    fn drain(runner: &mut Runner<Self>) -> impl Future<Output = ()>;
}

pub(crate) struct Runner<M> {
    source: Box<dyn MessageSource>,
    config: RunConfig,
    shared: Arc<Shared>,
    started_at: Instant,
    batch: PollBatch,
    ledger: Ledger,
    last_commit_at: Instant,
    commit_backoff: Backoff,
    commit_retry_at: Option<Instant>,
    dead_letters: DeadLetters,
    metrics: ConsumerMetrics,
    mode: M,
}

impl<M: Mode> Runner<M> {
    pub(crate) fn new(args: LaunchArgs, mode: M) -> Self {
        let LaunchArgs {
            source,
            config,
            shared,
            started_at,
        } = args;
        Self {
            commit_backoff: Backoff::new(config.retry_backoff),
            config,
            ledger: Ledger::new(Arc::clone(&shared)),
            shared,
            started_at,
            batch: PollBatch::new(),
            last_commit_at: started_at,
            commit_retry_at: None,
            dead_letters: DeadLetters::default(),
            metrics: ConsumerMetrics::new(source.group_id()),
            source,
            mode,
        }
    }

    /// The thread's body. Never panics: panics of the source are caught and end `Failed`.
    pub(crate) fn run(mut self) {
        // Set here, before any callback runs, so stop() from the callback is recognised.
        let _ = self.shared.thread_id.set(std::thread::current().id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let (final_commit_error, close_error) = match runtime {
            Ok(rt) => rt.block_on(self.run_on_runtime()),
            Err(e) => {
                begin_stopping(
                    &self.shared,
                    StopReason::SourceFailed(SharedError::with_context(
                        "could not build the consumer runtime",
                        e,
                    )),
                );
                (None, None)
            }
        };
        finish(&self.shared, final_commit_error, close_error);
    }

    async fn run_on_runtime(&mut self) -> (Option<SharedError>, Option<SharedError>) {
        let reason = match AssertUnwindSafe(self.consume()).catch_unwind().await {
            Ok(reason) => reason,
            Err(panic) => StopReason::SourceFailed(SharedError::new(format!(
                "panic on the consumer thread: {}",
                panic_message(&*panic)
            ))),
        };
        begin_stopping(&self.shared, reason);
        match AssertUnwindSafe(self.shut_down()).catch_unwind().await {
            Ok(errors) => errors,
            Err(panic) => (
                None,
                Some(SharedError::new(format!(
                    "panic while closing: {}",
                    panic_message(&*panic)
                ))),
            ),
        }
    }

    async fn consume(&mut self) -> StopReason {
        let deadline = self
            .config
            .thread_lifetime
            .map(|l| tokio::time::Instant::from_std(self.started_at + l));
        let mut poll_backoff = Backoff::new(self.config.retry_backoff);
        loop {
            if let Some(reason) = self.due_work().await {
                return reason;
            }
            let unstored = self.ledger.progress.take_unstored();
            if !unstored.is_empty() {
                self.source.store(&unstored);
            }
            self.batch.clear();
            // Polling goes on while messages wait for a retry or a dead letter (their
            // partitions paused), so the consumer stays in its group and other
            // partitions keep moving.
            let due_at = min_due(self.dead_letters.next_due(), self.mode.next_due())
                .map(tokio::time::Instant::from_std);
            let polled = tokio::select! {
                biased;
                () = self.shared.stop.raised() => return StopReason::Requested,
                () = until(deadline) => return StopReason::LifetimeExpired,
                () = until(due_at) => continue,
                r = self.source.poll(self.config.poll_timeout, &mut self.batch) => r,
                // After the poll, so a steady stream of wakes cannot starve it (the loop
                // takes care of due work at its top anyway). A wake cancels a waiting
                // poll (it is cancel-safe).
                wake = self.mode.woken() => {
                    if let Some(reason) = M::on_wake(self, wake).await {
                        return reason;
                    }
                    continue;
                }
            };
            if let Err(e) = polled {
                if !e.is_transient() {
                    error!(error = %e, "Consumer error when polling message; it is fatal");
                    return StopReason::SourceFailed(SharedError::new(e));
                }
                Counters::bump(&self.shared.counters.poll_errors);
                self.note_error(&e);
                let delay = poll_backoff.next_delay();
                warn!(error = %e, retry_in = ?delay, "Consumer error when polling message; retrying");
                tokio::select! {
                    biased;
                    () = self.shared.stop.raised() => return StopReason::Requested,
                    () = until(deadline) => return StopReason::LifetimeExpired,
                    () = sleep(delay) => continue,
                }
            }
            poll_backoff.reset();
            self.take_batch_metadata();
            // Before the batch too, so lag is visible while a slow batch runs.
            self.publish_partitions();
            let stop = M::take_batch(self, deadline).await;
            if stop.is_none() {
                if let Err(reason) = self.commit_if_due().await {
                    return reason;
                }
            }
            self.publish_partitions();
            if let Some(reason) = stop {
                return reason;
            }
        }
    }

    /// The dead letters and the mode's own work that are due, then a commit if due.
    async fn due_work(&mut self) -> Option<StopReason> {
        if !self.dead_letters.is_empty() {
            if let Err(reason) = self.send_dead_letters(None).await {
                return Some(reason);
            }
            // An acknowledged dead letter moved a position: show it without waiting for
            // the next batch.
            self.publish_partitions();
        }
        // After the dead letters: an acknowledged one may free a held partition.
        M::due_work(self).await
    }

    /// Rebalance events, high watermarks and passed-over offsets of the polled batch.
    fn take_batch_metadata(&mut self) {
        for event in self.batch.take_events() {
            self.on_event(event);
        }
        for (tp, high_watermark) in self.batch.high_watermarks() {
            self.ledger.progress.set_high_watermark(tp, *high_watermark);
        }
        for passed in self.batch.take_passed() {
            self.ledger.progress.pass(passed);
            // Passed-over offsets (markers) count toward the commit policy as a record
            // does: an idle transactional partition gets its position committed past its
            // last marker.
            self.ledger.count_toward_commit(1);
        }
    }

    /// Publishes per-partition progress for `stats()` and `health()`: once per batch, so
    /// the per-message path stays free of locks.
    fn publish_partitions(&mut self) {
        let snapshot = self.ledger.progress.snapshot(Instant::now());
        let backlog = self.mode.backlog();
        let mut live = lock(&self.shared.live);
        let assigned = live.assignment.len();
        self.metrics
            .publish(&snapshot, &self.shared.counters, assigned, backlog);
        live.partitions = snapshot;
        live.pool_backlog = backlog;
    }

    fn on_event(&mut self, event: SourceEvent) {
        let kind = match &event {
            SourceEvent::Assigned(_) => "assigned",
            SourceEvent::Revoked(_) => "revoked",
            SourceEvent::Lost(_) => "lost",
        };
        let _span = tracing::info_span!("rebalance", kind).entered();
        Counters::bump(&self.shared.counters.rebalances);
        let mut live = lock(&self.shared.live);
        let gone = match event {
            SourceEvent::Assigned(tps) => {
                info!(partitions = ?tps, "partitions assigned");
                live.assignment.extend(tps);
                return;
            }
            SourceEvent::Revoked(tps) => {
                info!(partitions = ?tps, "partitions revoked; the source committed their handled offsets");
                tps
            }
            SourceEvent::Lost(tps) => {
                warn!(partitions = ?tps, "partitions lost; uncommitted messages will be redelivered to their new owner");
                tps
            }
        };
        for tp in &gone {
            live.assignment.remove(tp);
        }
        drop(live);
        self.ledger.progress.forget(&gone);
        self.dead_letters.forget(&gone);
        self.mode.forget(&gone);
        self.metrics.forget(&gone);
    }

    fn note_error(&self, e: &SourceError) {
        lock(&self.shared.live).last_error = Some(e.to_string());
    }
}

/// The thread's end when its mode could not start (the worker threads did not spawn):
/// nothing was polled, so there is nothing to commit; the source is closed.
pub(crate) fn fail_to_start(args: LaunchArgs, reason: String) {
    let LaunchArgs {
        mut source,
        mut config,
        shared,
        ..
    } = args;
    let _ = shared.thread_id.set(std::thread::current().id());
    error!(error = %reason, "the worker pool did not start");
    begin_stopping(&shared, StopReason::SpawnFailed(reason));
    let close_error = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(commit::close(&mut config, &mut *source)),
        Err(e) => Some(SharedError::with_context(
            "could not build the consumer runtime",
            e,
        )),
    };
    finish(&shared, None, close_error);
}

/// Moves Running to Stopping for reasons the thread found itself; a fault's reason
/// replaces an earlier stop request, so the report names the failure.
fn begin_stopping(shared: &Shared, reason: StopReason) {
    let mut guard = shared.lifecycle();
    let trigger = match &reason {
        StopReason::LifetimeExpired => Trigger::LifetimeExpired,
        r if r.is_failure() => Trigger::Fault,
        // Requested and Dropped: stop() already moved the state and set the reason.
        _ => return,
    };
    if trigger == Trigger::Fault || guard.reason.is_none() {
        guard.reason = Some(reason);
    }
    if guard.state == State::Running {
        shared.apply(guard, trigger);
    }
}

/// Writes the report and moves to the final state.
fn finish(
    shared: &Shared,
    final_commit_error: Option<SharedError>,
    close_error: Option<SharedError>,
) {
    let mut guard = shared.lifecycle();
    let failed = guard.reason.as_ref().is_some_and(StopReason::is_failure);
    let (final_state, trigger) = if failed {
        (State::Failed, Trigger::FinishedAfterFault)
    } else {
        (State::Stopped, Trigger::Finished)
    };
    guard.report = Some(build_report(
        shared,
        &guard,
        final_state,
        final_commit_error,
        close_error,
    ));
    shared.apply(guard, trigger);
    info!("Kafka consumer thread stopped.");
}

fn min_due(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}
