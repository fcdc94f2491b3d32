//! The optional worker pool: callbacks on worker threads, in Kafka order per partition
//! (or per key), with bounded queues that pause partitions at the source when full.
//!
//! The consumer thread keeps polling, committing and rebalancing; it hands each message
//! to the worker its partition (or key) is routed to, and commits a partition only up to
//! the first offset whose callback has not finished.

mod async_handler;
mod dispatch;
mod handler;
mod in_flight;
mod ownership;
mod queue;
mod worker;

pub(crate) use async_handler::PerMessageAsync;
pub(crate) use dispatch::{Dispatcher, Report, Settled, WorkEvent};
pub(crate) use handler::{PerBatch, PerMessage, RunHandler};
pub(crate) use worker::{spawn_workers, WorkerSettings};

/// Which messages must be handled one after another, in offset order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessingOrder {
    /// All messages of a partition go to one worker, in offset order (Kafka's own
    /// guarantee). Partitions are spread over the workers, so at most as many workers as
    /// assigned partitions are busy. The default.
    #[default]
    Partition,
    /// Messages with the same key go to one worker, in offset order; messages of one
    /// partition with different keys may be handled in parallel. Messages without a key
    /// are ordered by partition. The commit still never passes an unfinished message.
    Key,
}

/// How many worker threads run the callback, how much each may have queued, and in what
/// order; see [`ThreadManagerBuilder::parallel_callback`](crate::ThreadManagerBuilder::parallel_callback).
///
/// Memory stays bounded whatever the backlog: when a worker's queue is full, the
/// partition whose message did not fit is paused at the source until its queued messages
/// are handed out, instead of being buffered.
///
/// ```
/// use ktm_core::{ProcessingOrder, WorkerPool};
/// let pool = WorkerPool::new(8).queue_capacity(512).order(ProcessingOrder::Key);
/// assert_eq!(pool.workers(), 8);
/// assert_eq!(pool.capacity(), 512);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerPool {
    workers: usize,
    queue_capacity: usize,
    order: ProcessingOrder,
    max_batch: usize,
}

impl WorkerPool {
    /// Default messages queued per worker.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
    /// Default largest batch handed to a batch callback.
    pub const DEFAULT_MAX_BATCH: usize = 500;

    /// `workers` threads (at least 1, checked when the manager is built), each with a
    /// queue of [`DEFAULT_QUEUE_CAPACITY`](Self::DEFAULT_QUEUE_CAPACITY) messages,
    /// ordered by partition.
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
            order: ProcessingOrder::Partition,
            max_batch: Self::DEFAULT_MAX_BATCH,
        }
    }

    /// Messages each worker may have queued (at least 1) before the partition whose
    /// message does not fit is paused at the source.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// What must stay in order; see [`ProcessingOrder`].
    #[must_use]
    pub fn order(mut self, order: ProcessingOrder) -> Self {
        self.order = order;
        self
    }

    /// The largest slice a batch callback is given (at least 1); ignored by per-message
    /// callbacks. A batch is what the worker has queued of one partition at the time, so
    /// it is also at most [`queue_capacity`](Self::queue_capacity).
    #[must_use]
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Messages each worker may have queued.
    pub fn capacity(&self) -> usize {
        self.queue_capacity
    }

    /// What stays in order.
    pub fn processing_order(&self) -> ProcessingOrder {
        self.order
    }

    /// The largest batch handed to a batch callback.
    pub fn batch_limit(&self) -> usize {
        self.max_batch
    }

    /// The first setting that is out of range, if any.
    pub(crate) fn invalid_setting(&self) -> Option<&'static str> {
        if self.workers == 0 {
            Some("workers must be at least 1")
        } else if self.queue_capacity == 0 {
            Some("queue_capacity must be at least 1")
        } else if self.max_batch == 0 {
            Some("max_batch must be at least 1")
        } else {
            None
        }
    }
}

impl Default for WorkerPool {
    /// One worker: the callback runs off the consumer thread, in order.
    fn default() -> Self {
        Self::new(1)
    }
}
