//! A worker thread: takes runs from its queue, calls the handler, retries a failed
//! message (or batch) in place under the retry policy, and reports to the consumer
//! thread. Retrying here keeps the partition's order: nothing behind the failed message
//! on this worker starts before it is settled.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::dispatch::{Dispatcher, Report, WorkEvent};
use super::handler::{RunHandler, RunOutcome};
use super::ownership::{Ownership, RunOwner};
use super::queue::WorkQueue;
use super::WorkerPool;
use crate::backoff::Backoff;
use crate::shared::{lock, Shared};
use crate::{Message, RetryPolicy};

/// What every worker of a pool runs with.
#[derive(Clone, Copy)]
pub(crate) struct WorkerSettings {
    pub(crate) pool: WorkerPool,
    pub(crate) retry: RetryPolicy,
    /// Under `FailurePolicy::Stop`: after giving up on a message the worker takes no more
    /// work, so nothing behind the failed message is handled.
    pub(crate) halt_on_give_up: bool,
}

/// Spawns one thread per handler, named after the consumer thread, and registers them so
/// that `stop()` from a callback is recognised.
pub(crate) fn spawn_workers<R: RunHandler>(
    handlers: Vec<R>,
    settings: WorkerSettings,
    shared: &Shared,
) -> std::io::Result<Dispatcher> {
    let (reports, receiver) = tokio::sync::mpsc::unbounded_channel();
    let ownership = Arc::new(Ownership::default());
    let prefix = std::thread::current()
        .name()
        .unwrap_or("ktm-consumer")
        .to_owned();
    let mut queues = Vec::with_capacity(handlers.len());
    let mut threads = Vec::with_capacity(handlers.len());
    for (i, handler) in handlers.into_iter().enumerate() {
        let queue = Arc::new(WorkQueue::new(settings.pool.capacity()));
        let worker = Worker {
            queue: Arc::clone(&queue),
            ownership: Arc::clone(&ownership),
            reports: reports.clone(),
            settings,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("{prefix}-worker-{i}"))
            .spawn(move || worker.work(handler));
        match spawned {
            Ok(thread) => {
                lock(&shared.worker_threads).push(thread.thread().id());
                queues.push(queue);
                threads.push(thread);
            }
            Err(e) => {
                for q in &queues {
                    q.halt();
                }
                return Err(e);
            }
        }
    }
    Ok(Dispatcher::new(
        queues,
        threads,
        receiver,
        ownership,
        settings.pool,
    ))
}

struct Worker {
    queue: Arc<WorkQueue>,
    ownership: Arc<Ownership>,
    reports: UnboundedSender<Report>,
    settings: WorkerSettings,
}

/// The failed unit being retried (a message, or a batch): attempts so far, its backoff.
/// A unit that was handled ends it, so the next failure starts a new one.
struct Failing {
    attempts: u32,
    first_failed_at: Instant,
    backoff: Backoff,
}

impl Worker {
    fn work<R: RunHandler>(self, mut handler: R) {
        let max_run = handler.max_run(self.settings.pool.batch_limit()).max(1);
        let mut run = Vec::with_capacity(max_run);
        while let Some(generation) = self.queue.take_run(max_run, &mut run) {
            let Some(first) = run.first() else { continue };
            let owner = RunOwner::new(&self.ownership, first.topic_partition(), generation);
            if !self.handle_run(&mut handler, &mut run, &owner) {
                return;
            }
        }
    }

    fn report(&self, owner: &RunOwner<'_>, event: WorkEvent) {
        // The consumer thread is gone only when it stops; then nothing is owed it.
        let _ = self.reports.send(Report {
            tp: owner.tp().clone(),
            generation: owner.generation(),
            event,
        });
    }

    /// Works through one run, retrying a failed unit in place. `false` when the worker
    /// must take no more work (halted, or gave up under the `Stop` policy). A run whose
    /// partition was revoked ends early: no more callbacks, retries or give-ups for it.
    fn handle_run<R: RunHandler>(
        &self,
        handler: &mut R,
        run: &mut Vec<Message>,
        owner: &RunOwner<'_>,
    ) -> bool {
        let must_end = || self.queue.is_halted() || owner.is_stale();
        let mut start = 0;
        let mut failing: Option<Failing> = None;
        while start < run.len() {
            let (outcome, sample) = handler.handle(&run[start..], &must_end);
            let handled = match &outcome {
                RunOutcome::Done => run.len() - start,
                RunOutcome::Halted { handled }
                | RunOutcome::Yielded { handled }
                | RunOutcome::Failed { handled, .. } => *handled,
            };
            if handled > 0 {
                let messages = if start == 0 && handled == run.len() {
                    std::mem::replace(run, Vec::with_capacity(run.capacity()))
                } else {
                    run[start..start + handled].to_vec()
                };
                self.report(owner, WorkEvent::Handled { messages, sample });
                start += handled;
                failing = None;
            }
            let (failed, failure) = match outcome {
                RunOutcome::Done => return true,
                RunOutcome::Halted { .. } => return !self.queue.is_halted(),
                RunOutcome::Yielded { .. } => continue,
                RunOutcome::Failed {
                    failed, failure, ..
                } => (failed, failure),
            };
            let f = failing.get_or_insert_with(|| Failing {
                attempts: 0,
                first_failed_at: Instant::now(),
                backoff: Backoff::new(self.settings.retry.backoff_bounds()),
            });
            f.attempts = f.attempts.saturating_add(1);
            let delay = self.settings.retry.retry_delay(
                failure.kind,
                f.attempts,
                f.first_failed_at,
                Instant::now(),
                &mut f.backoff,
            );
            if let Some(delay) = delay {
                warn!(%failure, attempt = f.attempts, retry_in = ?delay, "callback failed; retrying after a backoff (later messages of the partition on this worker wait)");
                self.report(owner, WorkEvent::AttemptFailed { failure });
                if !self.queue.sleep_unless(delay, &|| owner.is_stale()) {
                    return !self.queue.is_halted();
                }
                self.report(owner, WorkEvent::Retrying);
                continue;
            }
            if owner.is_stale() {
                // Not ours to dispose of: the new owner handles it again.
                return true;
            }
            let attempts = f.attempts;
            let messages = run[start..start + failed].to_vec();
            self.report(
                owner,
                WorkEvent::GaveUp {
                    messages,
                    failure,
                    attempts,
                },
            );
            if self.settings.halt_on_give_up {
                return false;
            }
            start += failed;
            failing = None;
        }
        true
    }
}
