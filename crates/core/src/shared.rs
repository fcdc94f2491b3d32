//! What the public handle, the consumer thread and the worker threads share: the
//! lifecycle (state, stop reason, report) with its transitions and waiting, the stop
//! signal, the counters and the live state behind `stats()` and `health()`.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::lifecycle::{next_state, StateChange, Trigger};
use crate::stats::{Counters, LiveState};
use crate::stop_signal::StopSignal;
use crate::{Offsets, SharedError, State, StopReason, StopReport};

pub(crate) type StateListener = Arc<dyn Fn(StateChange) + Send + Sync>;

/// The lifecycle's state and outcome, behind `Shared`'s lock.
pub(crate) struct Lifecycle {
    pub(crate) state: State,
    pub(crate) started_at: Option<Instant>,
    /// Why the thread is stopping or stopped; a fault overrides an earlier request.
    pub(crate) reason: Option<StopReason>,
    pub(crate) report: Option<StopReport>,
}

/// What the handle and the consumer thread share.
pub(crate) struct Shared {
    lifecycle: Mutex<Lifecycle>,
    changed: Condvar,
    /// Serialises listener calls so they are seen in transition order.
    listener_turn: Mutex<()>,
    listener: Option<StateListener>,
    pub(crate) stop: StopSignal,
    pub(crate) counters: Counters,
    pub(crate) live: Mutex<LiveState>,
    pub(crate) thread_id: OnceLock<ThreadId>,
    /// The worker threads of a pool: `stop()` from a callback there must not join either.
    pub(crate) worker_threads: Mutex<Vec<ThreadId>>,
}

/// Poisoning only means another thread panicked while holding the lock; the data is
/// still consistent (every critical section is a few assignments), so carry on.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// A manager's shared state before `start()`; `listener` sees every state change.
    pub(crate) fn new(listener: Option<StateListener>) -> Self {
        Self {
            lifecycle: Mutex::new(Lifecycle {
                state: State::Created,
                started_at: None,
                reason: None,
                report: None,
            }),
            changed: Condvar::new(),
            listener_turn: Mutex::new(()),
            listener,
            stop: StopSignal::default(),
            counters: Counters::default(),
            live: Mutex::new(LiveState::default()),
            thread_id: OnceLock::new(),
            worker_threads: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        lock(&self.lifecycle)
    }

    /// Applies `trigger` if the table allows it from the current state; returns whether
    /// it did. The listener sees the change after the lock is released, in order.
    pub(crate) fn apply(&self, mut guard: MutexGuard<'_, Lifecycle>, trigger: Trigger) -> bool {
        let from = guard.state;
        let Some(to) = next_state(from, trigger) else {
            return false;
        };
        guard.state = to;
        tracing::info!(%from, %to, ?trigger, "consumer state change");
        let turn = self.listener.as_ref().map(|_| lock(&self.listener_turn));
        drop(guard);
        self.changed.notify_all();
        if let Some(listener) = &self.listener {
            listener(StateChange { from, to, trigger });
        }
        drop(turn);
        true
    }

    /// Waits until the thread has ended or `timeout` passes.
    pub(crate) fn wait_terminal(&self, timeout: Option<Duration>) -> Option<StopReport> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut guard = self.lifecycle();
        loop {
            if let Some(report) = &guard.report {
                return Some(report.clone());
            }
            guard = match deadline {
                None => self
                    .changed
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.changed
                        .wait_timeout(guard, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Asks a running thread to stop for `reason`; no-op once it is stopping or ended.
    pub(crate) fn request_stop(&self, reason: StopReason) {
        let mut guard = self.lifecycle();
        if guard.state == State::Running {
            guard.reason.get_or_insert(reason);
            self.apply(guard, Trigger::Stop);
        } else {
            drop(guard);
        }
        self.stop.raise();
    }

    /// Releases `guard` until the next state change or [`wake_waiters`](Self::wake_waiters).
    #[cfg(all(unix, feature = "signals"))]
    pub(crate) fn wait_for_change<'a>(
        &self,
        guard: MutexGuard<'a, Lifecycle>,
    ) -> MutexGuard<'a, Lifecycle> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every [`wait_for_change`](Self::wait_for_change).
    #[cfg(all(unix, feature = "signals"))]
    pub(crate) fn wake_waiters(&self) {
        // A waiter holds the lock from its check until it waits: taking it here
        // means the notification cannot fall in between.
        drop(self.lifecycle());
        self.changed.notify_all();
    }
}

/// The report as of now, from the counters and the lifecycle.
pub(crate) fn build_report(
    shared: &Shared,
    lifecycle: &Lifecycle,
    final_state: State,
    final_commit_error: Option<SharedError>,
    close_error: Option<SharedError>,
) -> StopReport {
    StopReport {
        final_state,
        reason: lifecycle.reason.clone().unwrap_or(StopReason::Requested),
        counts: shared.counters.snapshot(),
        committed: lock(&shared.live).committed.clone(),
        run_time: lifecycle
            .started_at
            .map(|t| t.elapsed())
            .unwrap_or_default(),
        final_commit_error,
        close_error,
    }
}

/// Positions committed so far; shared with the runner.
pub(crate) fn record_committed(shared: &Shared, offsets: &Offsets) {
    lock(&shared.live).committed.merge(offsets);
}
