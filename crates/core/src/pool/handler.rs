//! How a worker calls the user's handler on a run of messages of one partition:
//! message by message, or as one batch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::callback::{failure, Handle, SyncHandler};
use crate::{BatchCallback, Callback, CallbackFailure, Message};

/// What became of a run handed to a [`RunHandler`].
pub(crate) enum RunOutcome {
    /// Every message was handled.
    Done,
    /// The run must end after `handled` messages (the worker was halted, or the
    /// partition revoked); the rest were not started.
    Halted { handled: usize },
    /// `handled` messages took the time budget: report them, then go on with the rest.
    Yielded { handled: usize },
    /// The first `handled` messages were handled; the `failed` after them failed as one
    /// unit (one message, or the whole batch).
    Failed {
        handled: usize,
        failed: usize,
        failure: Box<CallbackFailure>,
    },
}

/// The user's handler as a worker runs it.
pub(crate) trait RunHandler: Send + 'static {
    /// The longest run handed to one [`handle`](Self::handle).
    fn max_run(&self, max_batch: usize) -> usize;

    /// Handles `run` (one partition, offset order); `must_end` is checked between
    /// messages. Also returns one sampled callback duration.
    fn handle(
        &mut self,
        run: &[Message],
        must_end: &dyn Fn() -> bool,
    ) -> (RunOutcome, Option<Duration>);
}

/// A per-message [`Callback`], called for each message of the run.
#[derive(Clone)]
pub(crate) struct PerMessage<C>(pub(crate) SyncHandler<C>);

/// Messages a per-message worker takes at once: its reports (and so commits) follow
/// each run, and one lock per run keeps the queue cheap for fast callbacks.
pub(super) const PER_MESSAGE_RUN: usize = 64;
/// How long a per-message run may go before what it handled is reported, so slow
/// callbacks still move the commit (and `health()`) along promptly.
const REPORT_WITHIN: Duration = Duration::from_millis(50);

impl<C: Callback> RunHandler for PerMessage<C> {
    fn max_run(&self, _max_batch: usize) -> usize {
        PER_MESSAGE_RUN
    }

    fn handle(
        &mut self,
        run: &[Message],
        must_end: &dyn Fn() -> bool,
    ) -> (RunOutcome, Option<Duration>) {
        per_message(run, must_end, |message| self.0.call_sync(message))
    }
}

/// The per-message loop of every per-message handler, sync or async: `call` handles one
/// message. Between messages it ends the run when told to, and yields once the run took
/// [`REPORT_WITHIN`]; each call gets a `callback` span when TRACE is on.
pub(super) fn per_message(
    run: &[Message],
    must_end: &dyn Fn() -> bool,
    mut call: impl FnMut(&Message) -> Result<(), Box<CallbackFailure>>,
) -> (RunOutcome, Option<Duration>) {
    let mut sample = None;
    // Asked once per run: a span per callback only when TRACE is on for us.
    let traced = tracing::enabled!(target: "ktm_core::callback", tracing::Level::TRACE);
    let started = Instant::now();
    for (i, message) in run.iter().enumerate() {
        if must_end() {
            return (RunOutcome::Halted { handled: i }, sample);
        }
        if i > 0 && started.elapsed() >= REPORT_WITHIN {
            return (RunOutcome::Yielded { handled: i }, sample);
        }
        let _span = traced.then(|| callback_span(std::slice::from_ref(message)).entered());
        if let Err(failure) = call(message) {
            let outcome = RunOutcome::Failed {
                handled: i,
                failed: 1,
                failure,
            };
            return (outcome, sample);
        }
        // The first message of a run is the run's sample.
        if i == 0 {
            sample = Some(started.elapsed());
        }
    }
    (RunOutcome::Done, sample)
}

/// A [`BatchCallback`], called once per run: a run is its batch.
#[derive(Clone)]
pub(crate) struct PerBatch<B>(pub(crate) B);

impl<B: BatchCallback> RunHandler for PerBatch<B> {
    fn max_run(&self, max_batch: usize) -> usize {
        max_batch
    }

    fn handle(
        &mut self,
        run: &[Message],
        _must_end: &dyn Fn() -> bool,
    ) -> (RunOutcome, Option<Duration>) {
        let Some(first) = run.first() else {
            return (RunOutcome::Done, None);
        };
        let started = Instant::now();
        let _span = tracing::enabled!(target: "ktm_core::callback", tracing::Level::TRACE)
            .then(|| callback_span(run).entered());
        let outcome = match catch_unwind(AssertUnwindSafe(|| self.0.call(run))) {
            Ok(Ok(())) => RunOutcome::Done,
            outcome => RunOutcome::Failed {
                handled: 0,
                failed: run.len(),
                failure: failure(first, outcome),
            },
        };
        (outcome, Some(started.elapsed()))
    }
}

/// The `callback` span of the consumer thread's path, with the batch size added, for a
/// non-empty `run`; with the `opentelemetry` feature its parent is the first message's
/// trace context.
fn callback_span(run: &[Message]) -> tracing::Span {
    let Some(first) = run.first() else {
        return tracing::Span::none();
    };
    let span = tracing::trace_span!(target: "ktm_core::callback", "callback",
        topic = first.topic(), partition = first.partition(), offset = first.offset(), messages = run.len());
    #[cfg(feature = "opentelemetry")]
    crate::trace_context::adopt(&span, run);
    span
}
