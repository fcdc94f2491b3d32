//! Live statistics and the final report.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{CallbackFailure, CallbackTime, Offsets, SharedError, State, TopicPartition};

/// Why the consumer thread ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// `stop()` was called before `start()`: the thread never ran.
    NeverStarted,
    /// `stop()` was called.
    Requested,
    /// The manager was dropped without `stop()`.
    Dropped,
    /// `thread_lifetime` ran out.
    LifetimeExpired,
    /// The callback failed under the `Stop` failure policy.
    CallbackFailed(CallbackFailure),
    /// A message failed for good under [`FailurePolicy::DeadLetter`](crate::FailurePolicy::DeadLetter)
    /// and producing its dead letter failed fatally; nothing from it on was committed.
    DeadLetterFailed {
        /// The message's last callback failure.
        failure: CallbackFailure,
        /// The producer's error (a [`SourceError`](crate::SourceError) in its chain).
        error: SharedError,
    },
    /// The source failed in a way retrying cannot fix (or panicked): the source's
    /// [`SourceError`](crate::SourceError) ([`SharedError::find`] reaches it and its
    /// own sources), or a panic's message.
    SourceFailed(SharedError),
    /// The consumer thread could not be spawned.
    SpawnFailed(String),
}

impl StopReason {
    /// Whether this reason ends the manager `Failed` rather than `Stopped`.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            StopReason::CallbackFailed(_)
                | StopReason::DeadLetterFailed { .. }
                | StopReason::SourceFailed(_)
                | StopReason::SpawnFailed(_)
        )
    }
}

/// What `stop()` (or `wait()`) returns once the thread has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StopReport {
    /// `Stopped` or `Failed`.
    pub final_state: State,
    /// Why it ended.
    pub reason: StopReason,
    /// The counters as the thread ended.
    pub counts: Counts,
    /// The last position the manager committed for each partition.
    pub committed: Offsets,
    /// From `start()` to the end of the thread.
    pub run_time: Duration,
    /// The final commit's error, if it could not be made (the positions stay
    /// uncommitted: those messages are redelivered, never lost).
    pub final_commit_error: Option<SharedError>,
    /// The source's error on close, if any.
    pub close_error: Option<SharedError>,
}

/// The manager's counters since `start()`: live in [`Stats::counts`], final in
/// [`StopReport::counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Messages whose callback returned `Ok`.
    pub messages_handled: u64,
    /// Callback errors and panics (every failed attempt).
    pub callback_failures: u64,
    /// Callback attempts after a message's first.
    pub retries: u64,
    /// Messages produced to the dead-letter topic.
    pub dead_lettered: u64,
    /// Messages skipped by the failure policy.
    pub skipped: u64,
    /// Messages whose payload did not decode (see [`Decode`](crate::Decode)); their
    /// handler never ran, and they are not counted as callback failures.
    pub decode_failures: u64,
    /// Failed attempts to produce a dead letter (a transient failure is retried, the
    /// offset staying uncommitted meanwhile).
    pub dead_letter_errors: u64,
    /// Transient poll errors, retried with backoff.
    pub poll_errors: u64,
    /// Failed commit attempts.
    pub commit_errors: u64,
    /// Successful commits.
    pub commits: u64,
    /// Assignment changes reported by the source.
    pub rebalances: u64,
}

/// A live snapshot, from [`ThreadManager::stats`](crate::ThreadManager::stats).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The lifecycle state.
    pub state: State,
    /// The counters so far.
    pub counts: Counts,
    /// The last position the manager committed for each partition.
    pub committed: Offsets,
    /// The partitions currently assigned.
    pub assignment: Vec<TopicPartition>,
    /// The last poll, commit or callback error, as text.
    pub last_error: Option<String>,
    /// Per-partition progress and lag, as of the end of the last batch.
    pub partitions: Vec<PartitionStats>,
    /// With a [`WorkerPool`](crate::WorkerPool): messages handed to workers whose
    /// partition position has not yet passed them (queued, running, finished but not yet
    /// reported, or finished behind an earlier unsettled message), as of the last poll.
    pub in_flight: usize,
    /// With a [`WorkerPool`](crate::WorkerPool): messages held back, their partitions
    /// paused, because their worker's queue was full; as of the last poll.
    pub held: usize,
}

/// One partition's progress, as of the end of the consumer thread's last batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The partition.
    pub tp: TopicPartition,
    /// The next offset to handle (last handled + 1), once a message was handled.
    pub position: Option<i64>,
    /// The last position the manager committed.
    pub committed: Option<i64>,
    /// The broker's high watermark, if the backend reports it.
    pub high_watermark: Option<i64>,
    /// High watermark minus committed (minus the position while nothing is committed
    /// yet); unknown without a high watermark or any progress.
    pub lag: Option<i64>,
    /// Messages handled.
    pub messages_handled: u64,
    /// Failed callback attempts (errors and panics).
    pub failures: u64,
    /// Callback attempts after a message's first.
    pub retries: u64,
    /// Messages produced to the dead-letter topic.
    pub dead_lettered: u64,
    /// Messages skipped by the failure policy.
    pub skipped: u64,
    /// Messages whose payload did not decode (see [`Decode`](crate::Decode)); their
    /// handler never ran, and they are not counted as callback failures.
    pub decode_failures: u64,
    /// Sampled callback durations; `None` before the first sample.
    pub callback_time: Option<CallbackTime>,
    /// When the position last moved (or the partition was first seen).
    pub last_progress: Instant,
}

/// Whether the manager is doing its job, from [`ThreadManager::health`](crate::ThreadManager::health).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The lifecycle state.
    pub state: State,
    /// Whether the consumer owns at least one partition.
    pub assigned: bool,
    /// Partitions with lag that made no progress for longer than the stall threshold.
    pub stalled: Vec<TopicPartition>,
    /// Running, and no partition stalled.
    pub healthy: bool,
}

/// Counters the consumer thread bumps and any thread reads.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) handled: AtomicU64,
    pub(crate) callback_failures: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) decode_failures: AtomicU64,
    pub(crate) dead_letter_errors: AtomicU64,
    pub(crate) poll_errors: AtomicU64,
    pub(crate) commit_errors: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) rebalances: AtomicU64,
}

impl Counters {
    /// Only the consumer thread writes counters, so a plain load and store suffices:
    /// no locked read-modify-write on the per-message path.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Single-writer add, as [`Counters::bump`].
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters as of now, for `Stats` and `StopReport` alike.
    pub(crate) fn snapshot(&self) -> Counts {
        Counts {
            messages_handled: Self::read(&self.handled),
            callback_failures: Self::read(&self.callback_failures),
            retries: Self::read(&self.retries),
            dead_lettered: Self::read(&self.dead_lettered),
            skipped: Self::read(&self.skipped),
            decode_failures: Self::read(&self.decode_failures),
            dead_letter_errors: Self::read(&self.dead_letter_errors),
            poll_errors: Self::read(&self.poll_errors),
            commit_errors: Self::read(&self.commit_errors),
            commits: Self::read(&self.commits),
            rebalances: Self::read(&self.rebalances),
        }
    }
}

/// The parts of the stats that are not counters; touched on commits and rebalances only.
#[derive(Default)]
pub(crate) struct LiveState {
    pub(crate) partitions: Vec<PartitionStats>,
    pub(crate) committed: Offsets,
    pub(crate) assignment: BTreeSet<TopicPartition>,
    pub(crate) last_error: Option<String>,
    /// The pool's in-flight and held messages.
    pub(crate) pool_backlog: (usize, usize),
}
