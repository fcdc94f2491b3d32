//! The runner's own callbacks: the handler runs on the consumer thread, message by
//! message in poll order. A failed message holds its partition back (`retry`); the
//! others go on.

mod retry;

use std::convert::Infallible;
use std::time::Instant;

use tracing::Instrument;

use super::settle::{InOrder, Settlement};
use super::{Mode, Runner};
use crate::callback::Handle;
use crate::{CallbackFailure, Message, StopReason, TopicPartition};
use retry::Retrying;

/// How many messages pass between checks of the lifetime deadline on the async path;
/// reading the clock on every message would cost more than the rest of the loop.
const DEADLINE_CHECK_EVERY: usize = 64;
/// How many handled messages may pass before they are settled and the lifetime checked,
/// on the sync path: settling runs instead of single messages keeps the per-message
/// path short.
const RECORD_EVERY: usize = 64;
/// One callback in this many is timed on the async path (the sync path times one per
/// run of `RECORD_EVERY`): reading the clock twice per message would cost more than a
/// fast callback.
const SAMPLE_EVERY: usize = 64;

/// The handler called on the consumer thread, and the partitions held back behind a
/// failed message.
pub(crate) struct Inline<H> {
    handler: H,
    retrying: Retrying,
    /// Messages on the async path until the next timed callback.
    until_sample: usize,
    positions: InOrder,
}

impl<H: Handle> Inline<H> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            retrying: Retrying::default(),
            until_sample: 0,
            positions: InOrder,
        }
    }
}

/// What the per-message loop hands back to the async loop.
enum Step {
    BatchDone,
    CommitDue,
    /// The message before the cursor failed; the failure policies take it from here.
    Failed(Box<CallbackFailure>),
    Stop(StopReason),
}

impl<H: Handle> Mode for Inline<H> {
    type Positions = InOrder;
    type Wake = Infallible;

    fn positions(&mut self) -> &mut InOrder {
        &mut self.positions
    }

    async fn take_batch(
        runner: &mut Runner<Self>,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<StopReason> {
        runner.handle_batch(deadline).await
    }

    async fn due_work(runner: &mut Runner<Self>) -> Option<StopReason> {
        if runner.mode.retrying.is_empty() {
            return None;
        }
        if let Some(reason) = runner.retry_due().await {
            return Some(reason);
        }
        if let Err(reason) = runner.commit_if_due().await {
            return Some(reason);
        }
        runner.publish_partitions();
        None
    }

    fn next_due(&self) -> Option<Instant> {
        self.retrying.next_due()
    }

    async fn woken(&mut self) -> Infallible {
        std::future::pending().await
    }

    async fn on_wake(_: &mut Runner<Self>, wake: Infallible) -> Option<StopReason> {
        match wake {}
    }

    fn forget(&mut self, gone: &[TopicPartition]) {
        self.retrying.forget(gone);
    }

    fn backlog(&self) -> (usize, usize) {
        (0, 0)
    }

    async fn drain(_: &mut Runner<Self>) {}
}

impl<H: Handle> Runner<Inline<H>> {
    /// Calls back for each message of the batch; `Some` when the thread must stop.
    async fn handle_batch(&mut self, deadline: Option<tokio::time::Instant>) -> Option<StopReason> {
        let messages = self.batch.take_messages();
        let mut next = 0;
        // Asked once per batch: a span per callback only when TRACE is on for us.
        let traced = tracing::enabled!(target: "ktm_core::callback", tracing::Level::TRACE);
        let stop = loop {
            // The tight loop only while no partition is held back (it checks for none)
            // and per-callback spans are off (it opens none).
            let step = if H::SYNC && self.mode.retrying.is_empty() && !traced {
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
    /// Handled messages are settled, and the lifetime checked, once per run of
    /// `RECORD_EVERY` messages; a commit, a stop or the end of the batch ends the run.
    fn run_sync(
        &mut self,
        messages: &[Message],
        next: &mut usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Step {
        let commit_every = self.commit_every();
        let stop = &self.shared.stop;
        let ledger = &mut self.ledger;
        let Inline {
            handler, positions, ..
        } = &mut self.mode;
        let metrics = &mut self.metrics;
        let mut i = *next;
        let mut run_start = i;
        // Settled before this run: the commit policy counts the run's messages on top.
        let mut settled_before = ledger.since_commit;
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
                ledger.progress.callback_sample(message, took);
                metrics.callback_sample(message, took);
            }
            i += 1;
            if settled_before + (i - run_start) as u64 >= commit_every {
                break Step::CommitDue;
            }
            if i - run_start == RECORD_EVERY {
                ledger.settle(&messages[run_start..i], Settlement::Handled, positions);
                settled_before = ledger.since_commit;
                run_start = i;
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    break Step::Stop(StopReason::LifetimeExpired);
                }
            }
        };
        ledger.settle(&messages[run_start..i], Settlement::Handled, positions);
        *next = i;
        match failed {
            Some(failure) => {
                *next += 1;
                Step::Failed(failure)
            }
            None => step,
        }
    }

    /// One message through the handler off the tight loop; `None`: go on with the next.
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
        if !self.mode.retrying.is_empty() && self.mode.retrying.divert(message) {
            return None;
        }
        match self.call_observed(message, traced).await {
            Ok(()) => {
                self.settle_handled(message);
                self.count_commit_due().then_some(Step::CommitDue)
            }
            Err(failure) => Some(Step::Failed(failure)),
        }
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

    /// Settles one handled message.
    fn settle_handled(&mut self, message: &Message) {
        self.ledger.settle(
            std::slice::from_ref(message),
            Settlement::Handled,
            &mut self.mode.positions,
        );
    }

    /// Calls the handler off the tight loop: in a `callback` span when `traced`, and
    /// timed for the histogram one call in `SAMPLE_EVERY`.
    async fn call_observed(
        &mut self,
        message: &Message,
        traced: bool,
    ) -> Result<(), Box<CallbackFailure>> {
        let mode = &mut self.mode;
        let sampled = mode.until_sample == 0;
        mode.until_sample = if sampled {
            SAMPLE_EVERY - 1
        } else {
            mode.until_sample - 1
        };
        let started = sampled.then(Instant::now);
        let outcome = if traced {
            let span = tracing::trace_span!(target: "ktm_core::callback", "callback",
                topic = message.topic(), partition = message.partition(), offset = message.offset());
            #[cfg(feature = "opentelemetry")]
            crate::trace_context::adopt(&span, std::slice::from_ref(message));
            mode.handler.call_async(message).instrument(span).await
        } else {
            mode.handler.call_async(message).await
        };
        if let Some(started) = started {
            let took = started.elapsed();
            self.ledger.progress.callback_sample(message, took);
            self.metrics.callback_sample(message, took);
        }
        outcome
    }
}
