//! The consumer thread: poll, call back, commit, and shut down in order.

mod commit;
mod failures;
mod policy;
mod pool;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::time::{sleep, sleep_until};
use tracing::Instrument;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::callback::{panic_message, Handle};
use crate::launch::{LaunchArgs, RunConfig};
use crate::lifecycle::Trigger;
use crate::pool::Dispatcher;
use crate::progress::Progress;
use crate::shared::{build_report, lock, Shared};
use crate::stats::Counters;
use crate::telemetry::ConsumerMetrics;
use crate::{CallbackFailure, Message};
use crate::{
    CommitPolicy, MessageSource, PollBatch, SharedError, SourceError, SourceEvent, State,
    StopReason,
};
use failures::BlockedPartitions;

/// How many messages pass between checks of the lifetime deadline inside a batch;
/// reading the clock on every message would cost more than the rest of the loop.
pub(super) const DEADLINE_CHECK_EVERY: usize = 64;
/// How many handled messages may pass before progress and the live counter are
/// recorded; recording runs instead of single messages keeps the per-message path short.
const RECORD_EVERY: usize = 64;
/// One callback in this many is timed on the async path (the sync path times one per
/// run of `RECORD_EVERY`): reading the clock twice per message would cost more than a
/// fast callback.
const SAMPLE_EVERY: usize = 64;
/// Attempts at the final commit before giving up (the messages are then redelivered).
pub(super) const FINAL_COMMIT_ATTEMPTS: u32 = 3;

/// What the per-message loop hands back to the async loop.
enum Step {
    BatchDone,
    CommitDue,
    /// The message before the cursor failed; the failure policies take it from here.
    Failed(Box<CallbackFailure>),
    Stop(StopReason),
}

pub(crate) struct Runner<H> {
    source: Box<dyn MessageSource>,
    handler: H,
    config: RunConfig,
    shared: Arc<Shared>,
    started_at: Instant,
    progress: Progress,
    batch: PollBatch,
    handled_since_commit: u64,
    last_commit_at: Instant,
    commit_backoff: Backoff,
    commit_retry_at: Option<Instant>,
    /// Partitions held up behind a failed message.
    blocked: BlockedPartitions,
    metrics: ConsumerMetrics,
    /// Messages on the async path until the next timed callback.
    until_sample: usize,
    /// The worker pool, when the callback runs on workers rather than here.
    pool: Option<Dispatcher>,
    /// Why the worker pool could not be started; the thread then stops at once.
    pool_error: Option<String>,
}

impl<H: Handle> Runner<H> {
    pub(crate) fn new(args: LaunchArgs, handler: H) -> Self {
        let LaunchArgs {
            source,
            config,
            shared,
            started_at,
        } = args;
        Self {
            handler,
            commit_backoff: Backoff::new(config.retry_backoff),
            config,
            shared,
            started_at,
            progress: Progress::default(),
            batch: PollBatch::new(),
            handled_since_commit: 0,
            last_commit_at: started_at,
            commit_retry_at: None,
            blocked: BlockedPartitions::default(),
            metrics: ConsumerMetrics::new(source.group_id()),
            until_sample: 0,
            pool: None,
            pool_error: None,
            source,
        }
    }

    /// Runs the callback on this worker pool (or fails at once with `Err`).
    pub(crate) fn with_pool(mut self, pool: std::io::Result<Dispatcher>) -> Self {
        match pool {
            Ok(pool) => self.pool = Some(pool),
            Err(e) => self.pool_error = Some(format!("could not spawn a worker thread: {e}")),
        }
        self
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
                self.begin_stopping(StopReason::SourceFailed(SharedError::with_context(
                    "could not build the consumer runtime",
                    e,
                )));
                (None, None)
            }
        };
        self.finish(final_commit_error, close_error);
    }

    async fn run_on_runtime(&mut self) -> (Option<SharedError>, Option<SharedError>) {
        let reason = match AssertUnwindSafe(self.consume()).catch_unwind().await {
            Ok(reason) => reason,
            Err(panic) => StopReason::SourceFailed(SharedError::new(format!(
                "panic on the consumer thread: {}",
                panic_message(&*panic)
            ))),
        };
        self.begin_stopping(reason);
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
        if let Some(e) = self.pool_error.take() {
            error!(error = %e, "the worker pool did not start");
            return StopReason::SpawnFailed(e);
        }
        loop {
            if !self.blocked.is_empty() {
                if let Some(reason) = self.retry_due().await {
                    return reason;
                }
                if self.count_commit_due() || self.interval_commit_due() {
                    if let Err(reason) = self.commit_periodically().await {
                        return reason;
                    }
                }
                self.publish_partitions();
            }
            // After the dead letters: an acknowledged one may free a held partition.
            if self.pool.is_some() {
                if let Some(reason) = self.pump_pool(None).await {
                    return reason;
                }
            }
            let unstored = self.progress.take_unstored();
            if !unstored.is_empty() {
                self.source.store(&unstored);
            }
            self.batch.clear();
            // Polling goes on while messages wait for a retry (their partitions paused),
            // so the consumer stays in its group and other partitions keep moving.
            let retry_at = self.blocked.next_due().map(tokio::time::Instant::from_std);
            let polled = tokio::select! {
                biased;
                () = self.shared.stop.raised() => return StopReason::Requested,
                () = until(deadline) => return StopReason::LifetimeExpired,
                () = until(retry_at) => continue,
                r = self.source.poll(self.config.poll_timeout, &mut self.batch) => r,
                // After the poll, so a steady stream of reports cannot starve it (the loop
                // drains reports at its top anyway). A report cancels a waiting poll (it
                // is cancel-safe): it may free room for a held partition, or make a
                // commit due.
                report = next_report(&mut self.pool) => {
                    if let Some(reason) = self.pump_pool(Some(report)).await {
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
            for event in self.batch.take_events() {
                self.on_event(event);
            }
            for (tp, high_watermark) in self.batch.high_watermarks() {
                self.progress.set_high_watermark(tp, *high_watermark);
            }
            for passed in self.batch.take_passed() {
                self.progress.pass(passed);
                // Passed-over offsets (markers) count toward the commit policy as a
                // record does: an idle transactional partition gets its position
                // committed past its last marker.
                self.count_toward_commit(1);
            }
            // Before the batch too, so lag is visible while a slow batch runs.
            self.publish_partitions();
            let stop = if self.pool.is_some() {
                self.dispatch_batch();
                None
            } else {
                self.handle_batch(deadline).await
            };
            if stop.is_none() && (self.count_commit_due() || self.interval_commit_due()) {
                if let Err(reason) = self.commit_periodically().await {
                    return reason;
                }
            }
            self.publish_partitions();
            if let Some(reason) = stop {
                return reason;
            }
        }
    }

    /// Publishes per-partition progress for `stats()` and `health()`: once per batch, so
    /// the per-message path stays free of locks.
    fn publish_partitions(&mut self) {
        let snapshot = self.progress.snapshot(Instant::now());
        let backlog = self.pool.as_ref().map_or((0, 0), Dispatcher::backlog);
        let mut live = lock(&self.shared.live);
        let assigned = live.assignment.len();
        self.metrics
            .publish(&snapshot, &self.shared.counters, assigned, backlog);
        live.partitions = snapshot;
        live.pool_backlog = backlog;
    }

    /// Calls back for each message of the batch; `Some` when the thread must stop.
    async fn handle_batch(&mut self, deadline: Option<tokio::time::Instant>) -> Option<StopReason> {
        let messages = self.batch.take_messages();
        let mut next = 0;
        // Asked once per batch: a span per callback only when TRACE is on for us.
        let traced = tracing::enabled!(target: "ktm_core::callback", tracing::Level::TRACE);
        let stop = loop {
            // The tight loop only while no partition is blocked (it checks for none) and
            // per-callback spans are off (it opens none).
            let step = if H::SYNC && self.blocked.is_empty() && !traced {
                self.run_sync(&messages, &mut next, deadline)
            } else {
                match self
                    .run_one_async(&messages, &mut next, deadline, traced)
                    .await
                {
                    Some(step) => step,
                    None => continue,
                }
            };
            match step {
                Step::BatchDone => break None,
                Step::Stop(reason) => break Some(reason),
                Step::CommitDue => {
                    if let Err(reason) = self.commit_periodically().await {
                        break Some(reason);
                    }
                }
                Step::Failed(failure) => {
                    let failed = &messages[next - 1];
                    if let Some(reason) = self.on_callback_failure(failed, failure).await {
                        break Some(reason);
                    }
                    // A skipped or dead-lettered message counts toward the policy too.
                    if self.count_commit_due() {
                        if let Err(reason) = self.commit_periodically().await {
                            break Some(reason);
                        }
                    }
                }
            }
        };
        self.batch.restore_messages(messages);
        stop
    }

    /// The per-message path for sync callbacks. It is written as one tight loop over
    /// locals and split field borrows, with no `.await`: the callback is an opaque call, so
    /// anything kept in `self` would be reloaded and stored around it on every message.
    /// Progress, the live counter and the lifetime are updated once per run of
    /// `RECORD_EVERY` messages; a commit, a stop or the end of the batch ends the run.
    fn run_sync(
        &mut self,
        messages: &[Message],
        next: &mut usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Step {
        let commit_every = self.commit_every();
        let stop = &self.shared.stop;
        let counters = &self.shared.counters;
        let progress = &mut self.progress;
        let handler = &mut self.handler;
        let metrics = &mut self.metrics;
        let mut i = *next;
        let mut run_start = i;
        let mut since_commit = self.handled_since_commit;
        let mut failed = None;
        let step = loop {
            let Some(message) = messages.get(i) else {
                break Step::BatchDone;
            };
            if stop.is_raised() {
                break Step::Stop(StopReason::Requested);
            }
            // One callback per run of RECORD_EVERY is timed, for the histogram.
            let started = (i == run_start).then(Instant::now);
            if let Err(failure) = handler.call_sync(message) {
                failed = Some(failure);
                break Step::BatchDone;
            }
            if let Some(started) = started {
                let took = started.elapsed();
                progress.callback_sample(message, took);
                metrics.callback_sample(message, took);
            }
            i += 1;
            since_commit += 1;
            if since_commit >= commit_every {
                break Step::CommitDue;
            }
            if i - run_start == RECORD_EVERY {
                record_handled(progress, counters, &messages[run_start..i]);
                run_start = i;
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    break Step::Stop(StopReason::LifetimeExpired);
                }
            }
        };
        record_handled(progress, counters, &messages[run_start..i]);
        self.handled_since_commit = since_commit;
        *next = i;
        match failed {
            Some(failure) => {
                *next += 1;
                Step::Failed(failure)
            }
            None => step,
        }
    }

    /// The handled count after which the policy wants a commit (never, for intervals).
    fn commit_every(&self) -> u64 {
        match self.config.commit_policy {
            CommitPolicy::EveryMessage => 1,
            CommitPolicy::EveryN(n) => n,
            CommitPolicy::Interval(_) => u64::MAX,
        }
    }

    /// One message through an async handler; `None`: go on with the next.
    async fn run_one_async(
        &mut self,
        messages: &[Message],
        next: &mut usize,
        deadline: Option<tokio::time::Instant>,
        traced: bool,
    ) -> Option<Step> {
        let Some(message) = messages.get(*next) else {
            return Some(Step::BatchDone);
        };
        if let Some(reason) = self.must_stop_before(*next, deadline) {
            return Some(Step::Stop(reason));
        }
        *next += 1;
        if !self.blocked.is_empty() && self.blocked.divert(message) {
            return None;
        }
        let outcome = self.call_observed(message, traced).await;
        self.after_callback(message, outcome)
    }

    /// A stop request or the end of the lifetime, checked before each message.
    #[inline]
    fn must_stop_before(
        &self,
        index: usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<StopReason> {
        if self.shared.stop.is_raised() {
            return Some(StopReason::Requested);
        }
        if index % DEADLINE_CHECK_EVERY == DEADLINE_CHECK_EVERY - 1
            && deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            return Some(StopReason::LifetimeExpired);
        }
        None
    }

    /// Records a callback's outcome; `Some` when the async loop has work (a commit, a stop).
    #[inline]
    fn after_callback(
        &mut self,
        message: &Message,
        outcome: Result<(), Box<CallbackFailure>>,
    ) -> Option<Step> {
        match outcome {
            Ok(()) => {
                record_handled(
                    &mut self.progress,
                    &self.shared.counters,
                    std::slice::from_ref(message),
                );
                self.count_toward_commit(1);
                self.count_commit_due().then_some(Step::CommitDue)
            }
            Err(failure) => Some(Step::Failed(failure)),
        }
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
        self.progress.forget(&gone);
        self.blocked.forget(&gone);
        if let Some(pool) = self.pool.as_mut() {
            pool.forget(&gone);
        }
        self.metrics.forget(&gone);
    }

    /// Counts `n` settled messages (handled, skipped, dead-lettered, or offsets passed
    /// over) toward the commit policy. The sync tight loop keeps its own copy of the
    /// count in a local and writes it back once per run.
    #[inline]
    fn count_toward_commit(&mut self, n: u64) {
        self.handled_since_commit += n;
    }

    fn count_commit_due(&self) -> bool {
        self.handled_since_commit >= self.commit_every()
    }

    fn interval_commit_due(&self) -> bool {
        match self.config.commit_policy {
            CommitPolicy::Interval(every) => {
                self.handled_since_commit > 0 && self.last_commit_at.elapsed() >= every
            }
            _ => false,
        }
    }

    /// Moves Running to Stopping for reasons the thread found itself; a fault's reason
    /// replaces an earlier stop request, so the report names the failure.
    fn begin_stopping(&self, reason: StopReason) {
        let mut guard = self.shared.lifecycle();
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
            self.shared.apply(guard, trigger);
        }
    }

    fn finish(self, final_commit_error: Option<SharedError>, close_error: Option<SharedError>) {
        let mut guard = self.shared.lifecycle();
        let failed = guard.reason.as_ref().is_some_and(StopReason::is_failure);
        let (final_state, trigger) = if failed {
            (State::Failed, Trigger::FinishedAfterFault)
        } else {
            (State::Stopped, Trigger::Finished)
        };
        guard.report = Some(build_report(
            &self.shared,
            &guard,
            final_state,
            final_commit_error,
            close_error,
        ));
        self.shared.apply(guard, trigger);
        info!("Kafka consumer thread stopped.");
    }

    fn note_error(&self, e: &SourceError) {
        lock(&self.shared.live).last_error = Some(e.to_string());
    }
}

impl<H: Handle> Runner<H> {
    /// Calls the handler off the tight loop: in a `callback` span when `traced`, and
    /// timed for the histogram one call in `SAMPLE_EVERY`.
    async fn call_observed(
        &mut self,
        message: &Message,
        traced: bool,
    ) -> Result<(), Box<CallbackFailure>> {
        let sampled = self.until_sample == 0;
        self.until_sample = if sampled {
            SAMPLE_EVERY - 1
        } else {
            self.until_sample - 1
        };
        let started = sampled.then(Instant::now);
        let outcome = if traced {
            let span = tracing::trace_span!(target: "ktm_core::callback", "callback",
                topic = message.topic(), partition = message.partition(), offset = message.offset());
            #[cfg(feature = "opentelemetry")]
            crate::trace_context::adopt(&span, std::slice::from_ref(message));
            self.handler.call_async(message).instrument(span).await
        } else {
            self.handler.call_async(message).await
        };
        if let Some(started) = started {
            let took = started.elapsed();
            self.progress.callback_sample(message, took);
            self.metrics.callback_sample(message, took);
        }
        outcome
    }
}

/// Marks a run of messages handled: positions for the next commit, and the counter.
fn record_handled(progress: &mut Progress, counters: &Counters, run: &[Message]) {
    for message in run {
        progress.handled(message);
    }
    Counters::add(&counters.handled, run.len() as u64);
}

/// The next report of the worker pool; never completes without one.
async fn next_report(pool: &mut Option<Dispatcher>) -> crate::pool::Report {
    match pool {
        Some(pool) => pool.next_report().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}
