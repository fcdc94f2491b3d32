//! An async per-message handler on a worker: the worker thread drives its futures
//! itself, so an async callback gets the pool's order, backpressure and commits.

use std::time::Duration;

use tokio::runtime::Runtime;

use super::handler::{per_message, RunHandler, RunOutcome, PER_MESSAGE_RUN};
use crate::callback::{failure, AsyncHandler, Handle};
use crate::{AsyncCallback, CallbackError, Message};

/// An [`AsyncCallback`] run by a worker: one message at a time, in order, each future
/// driven to completion on the worker's own current-thread runtime before the next
/// message starts (so per-partition order holds as for a sync callback). Tasks the
/// callback spawns run only while one of its futures is being driven.
pub(crate) struct PerMessageAsync<A> {
    handler: AsyncHandler<A>,
    /// Built on the worker thread at its first run, not when the handler is cloned for
    /// the worker on the consumer thread: a runtime belongs to the thread driving it.
    runtime: Option<Runtime>,
}

impl<A> PerMessageAsync<A> {
    pub(crate) fn new(handler: A) -> Self {
        Self {
            handler: AsyncHandler(handler),
            runtime: None,
        }
    }
}

impl<A: Clone> Clone for PerMessageAsync<A> {
    /// A clone has no runtime yet: each worker builds its own.
    fn clone(&self) -> Self {
        Self::new(self.handler.0.clone())
    }
}

impl<A: AsyncCallback> RunHandler for PerMessageAsync<A> {
    fn max_run(&self, _max_batch: usize) -> usize {
        PER_MESSAGE_RUN
    }

    fn handle(
        &mut self,
        run: &[Message],
        must_end: &dyn Fn() -> bool,
    ) -> (RunOutcome, Option<Duration>) {
        let Self { handler, runtime } = self;
        per_message(run, must_end, |message| match worker_runtime(runtime) {
            // `call_async` catches a panic of the future, as on the consumer thread.
            Ok(rt) => rt.block_on(handler.call_async(message)),
            // Without a runtime no attempt can succeed: permanent, so the failure policy
            // applies at once instead of retries that fail the same way.
            Err(e) => Err(failure(message, Ok(Err(CallbackError::permanent(e))))),
        })
    }
}

/// The worker's runtime, built on first use.
fn worker_runtime(slot: &mut Option<Runtime>) -> std::io::Result<&Runtime> {
    match slot {
        Some(rt) => Ok(rt),
        None => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("the worker's async runtime could not be built: {e}"),
                    )
                })?;
            Ok(slot.insert(rt))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallbackError;

    /// An async callback counting what it saw; fails on offset 2, panics on offset 4.
    #[derive(Clone, Default)]
    struct Picky(Vec<i64>);

    #[async_trait::async_trait]
    impl AsyncCallback for Picky {
        async fn call(&mut self, message: &Message) -> Result<(), CallbackError> {
            tokio::task::yield_now().await;
            match message.offset() {
                2 => Err(CallbackError::retryable("busy")),
                4 => panic!("boom at 4"),
                o => {
                    self.0.push(o);
                    Ok(())
                }
            }
        }
    }

    fn run(offsets: std::ops::Range<i64>) -> Vec<Message> {
        offsets
            .map(|o| Message::builder("t", 0, o).build())
            .collect()
    }

    #[test]
    fn messages_run_in_order_until_the_failed_one() {
        let mut h = PerMessageAsync::new(Picky::default());
        let (outcome, sample) = h.handle(&run(0..4), &|| false);
        match outcome {
            RunOutcome::Failed {
                handled, failed, ..
            } => assert_eq!((handled, failed), (2, 1)),
            _ => panic!("offset 2 must fail"),
        }
        assert!(sample.is_some());
        assert_eq!(h.handler.0 .0, [0, 1]);
    }

    #[test]
    fn a_panic_is_a_permanent_failure_and_the_runtime_survives_it() {
        let mut h = PerMessageAsync::new(Picky::default());
        let (outcome, _) = h.handle(&run(3..6), &|| false);
        let RunOutcome::Failed {
            handled, failure, ..
        } = outcome
        else {
            panic!("offset 4 must fail");
        };
        assert_eq!(handled, 1);
        assert!(failure.panicked && failure.reason.contains("boom at 4"));
        let (outcome, _) = h.handle(&run(5..7), &|| false);
        assert!(matches!(outcome, RunOutcome::Done));
        assert_eq!(h.handler.0 .0, [3, 5, 6]);
    }

    #[test]
    fn a_clone_builds_its_own_runtime_and_a_halted_run_starts_nothing() {
        let mut h = PerMessageAsync::new(Picky::default());
        let _ = h.handle(&run(0..1), &|| false);
        let mut c = h.clone();
        assert!(h.runtime.is_some() && c.runtime.is_none());
        let (outcome, _) = c.handle(&run(0..3), &|| true);
        assert!(matches!(outcome, RunOutcome::Halted { handled: 0 }));
        // The clone carries the handler's state (offset 0); the halted run added nothing.
        assert_eq!(c.handler.0 .0, [0]);
    }
}
