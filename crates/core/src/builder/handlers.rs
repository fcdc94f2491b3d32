//! The handler setters of [`ThreadManagerBuilder`]: one grid of closure and type forms,
//! each on its own or on a [`WorkerPool`] (`parallel_`).

use std::future::Future;

use super::{launcher, pool_launcher, ThreadManagerBuilder};
use crate::callback::{AsyncFn, AsyncHandler, SyncHandler};
use crate::launch::Launch;
use crate::pool::{PerBatch, PerMessage, PerMessageAsync, RunHandler};
use crate::{AsyncCallback, BatchCallback, Callback, CallbackResult, Message, WorkerPool};

impl ThreadManagerBuilder {
    /// The handler, as a closure called on the consumer thread: `|msg| { .. }`, returning
    /// `()` or `Result<(), E>` with `E: Into<CallbackError>` (see [`CallbackResult`]).
    pub fn callback<F, R>(self, callback: F) -> Self
    where
        F: FnMut(&Message) -> R + Send + 'static,
        R: CallbackResult,
    {
        self.on_this_thread(launcher(SyncHandler(callback)))
    }

    /// The handler, as a type implementing [`Callback`], called on the consumer thread.
    pub fn handler(self, handler: impl Callback) -> Self {
        self.on_this_thread(launcher(SyncHandler(handler)))
    }

    /// The handler, as an async closure taking an owned message, on the consumer
    /// thread's runtime: `|msg| async move { .. }`.
    pub fn async_callback<F, Fut, R>(self, callback: F) -> Self
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: CallbackResult + 'static,
    {
        self.on_this_thread(launcher(AsyncHandler(AsyncFn(callback))))
    }

    /// The handler, as a type implementing [`AsyncCallback`], on the consumer thread's
    /// runtime.
    pub fn async_handler(self, handler: impl AsyncCallback) -> Self {
        self.on_this_thread(launcher(AsyncHandler(handler)))
    }

    /// A batch handler: called with consecutive messages of one partition (at most
    /// [`WorkerPool::DEFAULT_MAX_BATCH`]), on one worker thread, in order; it needs no
    /// `Clone`. See [`BatchCallback`] for what a failure means.
    pub fn batch_callback<F, R>(self, callback: F) -> Self
    where
        F: FnMut(&[Message]) -> R + Send + 'static,
        R: CallbackResult,
    {
        self.on_workers(WorkerPool::default(), |_| vec![PerBatch(callback)])
    }

    /// A batch handler type, on one worker thread; see
    /// [`batch_callback`](Self::batch_callback).
    pub fn batch_handler(self, handler: impl BatchCallback) -> Self {
        self.on_workers(WorkerPool::default(), |_| vec![PerBatch(handler)])
    }

    /// The handler, run on a [`WorkerPool`]: each worker thread calls its own clone of
    /// `callback`, so a slow callback no longer caps the consumer at one message per
    /// callback time.
    ///
    /// Messages of one partition (or one key, see [`ProcessingOrder`](crate::ProcessingOrder))
    /// are handled one after another in offset order; different partitions in parallel.
    /// A partition is committed only up to the first offset whose callback has not
    /// finished. A failed message is retried on its worker under the
    /// [`RetryPolicy`](crate::RetryPolicy) (what is queued behind it on that worker
    /// waits); then the [`FailurePolicy`](crate::FailurePolicy) applies: `Stop` stops the
    /// manager with nothing after the message handled on that worker, `Skip` goes on,
    /// `DeadLetter` goes on while the dead letter is produced from the consumer thread
    /// (the commit waits for its acknowledgement).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use ktm_core::{ThreadManager, WorkerPool};
    /// # use ktm_core::{MessageSource, Offsets, PollBatch, SourceError};
    /// # use std::time::Duration;
    /// # struct Idle;
    /// # #[async_trait::async_trait]
    /// # impl MessageSource for Idle {
    /// #     fn backend(&self) -> &'static str { "idle" }
    /// #     async fn poll(&mut self, t: Duration, _: &mut PollBatch) -> Result<(), SourceError> {
    /// #         tokio::time::sleep(t).await; Ok(())
    /// #     }
    /// #     fn store(&mut self, _: &Offsets) {}
    /// #     async fn commit(&mut self, _: &Offsets) -> Result<(), SourceError> { Ok(()) }
    /// #     async fn close(&mut self) -> Result<(), SourceError> { Ok(()) }
    /// # }
    /// # let source = Idle;
    /// let written = Arc::new(AtomicU64::new(0));
    /// let counter = Arc::clone(&written);
    /// let manager = ThreadManager::builder(source)
    ///     .parallel_callback(WorkerPool::new(4), move |_msg| {
    ///         counter.fetch_add(1, Ordering::Relaxed); // a slow write would go here
    ///     })
    ///     .build()?;
    /// manager.start()?;
    /// manager.stop()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parallel_callback<F, R>(self, pool: WorkerPool, callback: F) -> Self
    where
        F: FnMut(&Message) -> R + Clone + Send + 'static,
        R: CallbackResult,
    {
        self.on_pool(pool, PerMessage(SyncHandler(callback)))
    }

    /// The handler, as a cloneable type implementing [`Callback`], run on a
    /// [`WorkerPool`]; see [`parallel_callback`](Self::parallel_callback).
    pub fn parallel_handler(self, pool: WorkerPool, handler: impl Callback + Clone) -> Self {
        self.on_pool(pool, PerMessage(SyncHandler(handler)))
    }

    /// An async closure run on a [`WorkerPool`], with the order, backpressure, retries
    /// and commits of [`parallel_callback`](Self::parallel_callback). Each worker drives
    /// its own clone's futures on its own current-thread runtime (timers and I/O
    /// enabled), one message at a time: a worker's next message starts when the previous
    /// future finished, so parallelism comes from the workers, as for a sync callback.
    pub fn parallel_async_callback<F, Fut, R>(self, pool: WorkerPool, callback: F) -> Self
    where
        F: FnMut(Message) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: CallbackResult + 'static,
    {
        self.on_pool(pool, PerMessageAsync::new(AsyncFn(callback)))
    }

    /// A cloneable [`AsyncCallback`] type run on a [`WorkerPool`]; see
    /// [`parallel_async_callback`](Self::parallel_async_callback).
    pub fn parallel_async_handler(
        self,
        pool: WorkerPool,
        handler: impl AsyncCallback + Clone,
    ) -> Self {
        self.on_pool(pool, PerMessageAsync::new(handler))
    }

    /// A batch closure on a [`WorkerPool`] (its `max_batch` bounds the batches), each
    /// worker calling its own clone; see [`parallel_callback`](Self::parallel_callback)
    /// for order and commits, and [`BatchCallback`] for failures.
    pub fn parallel_batch_callback<F, R>(self, pool: WorkerPool, callback: F) -> Self
    where
        F: FnMut(&[Message]) -> R + Clone + Send + 'static,
        R: CallbackResult,
    {
        self.on_pool(pool, PerBatch(callback))
    }

    /// A cloneable [`BatchCallback`] type on a [`WorkerPool`]; see
    /// [`parallel_batch_callback`](Self::parallel_batch_callback).
    pub fn parallel_batch_handler(
        self,
        pool: WorkerPool,
        handler: impl BatchCallback + Clone,
    ) -> Self {
        self.on_pool(pool, PerBatch(handler))
    }

    fn on_this_thread(mut self, launch: Launch) -> Self {
        self.launch = Some(launch);
        self.pool = None;
        self.handlers_given = self.handlers_given.saturating_add(1);
        self
    }

    /// Each worker gets a clone; cloned when the thread starts, so a bad worker count
    /// fails at `build()` before anything is cloned.
    fn on_pool<R: RunHandler + Clone>(self, pool: WorkerPool, handler: R) -> Self {
        self.on_workers(pool, move |n| vec![handler; n])
    }

    fn on_workers<R: RunHandler>(
        mut self,
        pool: WorkerPool,
        handlers: impl FnOnce(usize) -> Vec<R> + Send + 'static,
    ) -> Self {
        self.launch = Some(pool_launcher(pool, handlers));
        self.pool = Some(pool);
        self.handlers_given = self.handlers_given.saturating_add(1);
        self
    }
}
