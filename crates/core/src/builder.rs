//! Configuration of a [`ThreadManager`], validated when it is built.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::callback::{AsyncFn, AsyncHandler, Handle, SyncHandler};
use crate::launch::{Launch, RunConfig};
use crate::pool::{spawn_workers, PerBatch, PerMessage, RunHandler, WorkerSettings};
use crate::runner::{fail_to_start, Inline, Pooled, Runner};
use crate::shared::StateListener;
use crate::{
    AsyncCallback, BatchCallback, BuildError, Callback, CallbackError, CommitPolicy, FailurePolicy,
    Message, MessageSource, RetryBackoff, RetryPolicy, StateChange, ThreadManager, WorkerPool,
};

/// The original's default `thread_lifetime`.
pub const DEFAULT_THREAD_LIFETIME: Duration = Duration::from_secs(40);

/// Builds a [`ThreadManager`]; see [`ThreadManager::builder`].
#[must_use]
pub struct ThreadManagerBuilder {
    source: Box<dyn MessageSource>,
    launch: Option<Launch>,
    /// The worker pool the handler runs on, if it was given with one.
    pool: Option<WorkerPool>,
    /// How many handler setters were called: exactly one is allowed, so a second one
    /// cannot silently replace the first.
    handlers_given: u8,
    thread_name: Option<String>,
    config: RunConfig,
    shutdown_timeout: Duration,
    stall_threshold: Duration,
    listener: Option<StateListener>,
}

impl ThreadManagerBuilder {
    pub(crate) fn new(source: Box<dyn MessageSource>) -> Self {
        Self {
            source,
            launch: None,
            pool: None,
            handlers_given: 0,
            thread_name: None,
            config: RunConfig {
                thread_lifetime: Some(DEFAULT_THREAD_LIFETIME),
                poll_timeout: Duration::from_secs(1),
                commit_policy: CommitPolicy::default(),
                failure_policy: FailurePolicy::default(),
                retry_policy: RetryPolicy::default(),
                retry_backoff: RetryBackoff::default(),
                close_timeout: Duration::from_secs(10),
            },
            shutdown_timeout: Duration::from_secs(10),
            stall_threshold: Duration::from_secs(60),
            listener: None,
        }
    }

    /// The handler, as a closure: `|msg: &Message| -> Result<(), E> { .. }`.
    pub fn callback<F, E>(self, callback: F) -> Self
    where
        F: FnMut(&Message) -> Result<(), E> + Send + 'static,
        E: Into<CallbackError>,
    {
        self.on_this_thread(launcher(SyncHandler(callback)))
    }

    /// The handler, as a type implementing [`Callback`].
    pub fn handler(self, handler: impl Callback) -> Self {
        self.on_this_thread(launcher(SyncHandler(handler)))
    }

    /// The handler, run on a [`WorkerPool`]: each worker thread calls its own clone of
    /// `callback`, so a slow callback no longer caps the consumer at one message per
    /// callback time.
    ///
    /// Messages of one partition (or one key, see [`ProcessingOrder`](crate::ProcessingOrder))
    /// are handled one after another in offset order; different partitions in parallel.
    /// A partition is committed only up to the first offset whose callback has not
    /// finished. A failed message is retried on its worker under the
    /// [`RetryPolicy`] (what is queued behind it on that worker waits); then the
    /// [`FailurePolicy`] applies: `Stop` stops the manager with nothing after the message
    /// handled on that worker, `Skip` goes on, `DeadLetter` goes on while the dead letter
    /// is produced from the consumer thread (the commit waits for its acknowledgement).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use ktm_core::{Message, ThreadManager, WorkerPool};
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
    ///     .parallel_callback(WorkerPool::new(4), move |_msg: &Message| -> Result<(), std::io::Error> {
    ///         counter.fetch_add(1, Ordering::Relaxed); // a slow write would go here
    ///         Ok(())
    ///     })
    ///     .build()?;
    /// manager.start()?;
    /// manager.stop()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parallel_callback<F, E>(self, pool: WorkerPool, callback: F) -> Self
    where
        F: FnMut(&Message) -> Result<(), E> + Clone + Send + 'static,
        E: Into<CallbackError>,
    {
        self.on_pool(pool, PerMessage(SyncHandler(callback)))
    }

    /// The handler, as a cloneable type implementing [`Callback`], run on a
    /// [`WorkerPool`]; see [`parallel_callback`](Self::parallel_callback).
    pub fn parallel_handler(self, pool: WorkerPool, handler: impl Callback + Clone) -> Self {
        self.on_pool(pool, PerMessage(SyncHandler(handler)))
    }

    /// A batch handler: called with consecutive messages of one partition (at most
    /// [`WorkerPool::DEFAULT_MAX_BATCH`]), on one worker thread, in order. See
    /// [`BatchCallback`] for what a failure means.
    pub fn batch_callback<F, E>(self, callback: F) -> Self
    where
        F: FnMut(&[Message]) -> Result<(), E> + Send + 'static,
        E: Into<CallbackError>,
    {
        self.on_workers(WorkerPool::default(), |_| vec![PerBatch(callback)])
    }

    /// A batch handler on a [`WorkerPool`] (its `max_batch` bounds the batches), each
    /// worker calling its own clone; see [`parallel_callback`](Self::parallel_callback)
    /// for order and commits, and [`BatchCallback`] for failures.
    pub fn parallel_batch_callback<F, E>(self, pool: WorkerPool, callback: F) -> Self
    where
        F: FnMut(&[Message]) -> Result<(), E> + Clone + Send + 'static,
        E: Into<CallbackError>,
    {
        self.on_pool(pool, PerBatch(callback))
    }

    /// A batch handler type on a [`WorkerPool`]; see
    /// [`parallel_batch_callback`](Self::parallel_batch_callback).
    pub fn batch_handler(self, pool: WorkerPool, handler: impl BatchCallback + Clone) -> Self {
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

    /// The handler, as an async closure taking an owned message:
    /// `|msg| async move { .. }`.
    pub fn async_callback<F, Fut, E>(self, callback: F) -> Self
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<CallbackError> + 'static,
    {
        self.on_this_thread(launcher(AsyncHandler(AsyncFn(callback))))
    }

    /// The handler, as a type implementing [`AsyncCallback`].
    pub fn async_handler(self, handler: impl AsyncCallback) -> Self {
        self.on_this_thread(launcher(AsyncHandler(handler)))
    }

    /// The consumer thread's name (default `ktm-consumer-<n>`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = Some(name.into());
        self
    }

    /// How long the thread runs before ending by itself, counted from `start()`.
    /// Default 40 s, as in the original; `None` or zero means no limit.
    pub fn thread_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.config.thread_lifetime = lifetime.into().filter(|d| !d.is_zero());
        self
    }

    /// How long one poll waits for records (default 1 s). `stop()` does not wait it out.
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.config.poll_timeout = timeout;
        self
    }

    /// When to commit (default: every 5 s, and always on stop and revoke).
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.config.commit_policy = policy;
        self
    }

    /// What to do with a message whose callback failed for good: a permanent error, a
    /// panic, or retries exhausted (default: [`FailurePolicy::Stop`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.config.failure_policy = policy;
        self
    }

    /// How a retryable callback error is retried before the failure policy applies
    /// (default: [`RetryPolicy::none`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.config.retry_policy = policy;
        self
    }

    /// Backoff between retries of failed polls and commits (default 100 ms doubling to 5 s).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.retry_backoff = RetryBackoff { initial, max };
        self
    }

    /// Upper bound on the final commit plus closing the source (default 10 s): stopping
    /// never hangs on an unreachable broker for longer.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// How long dropping a running manager waits for its thread (default 10 s) before
    /// detaching it with a warning.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a partition with lag may go without progress before
    /// [`ThreadManager::health`] reports it stalled (default 60 s).
    pub fn stall_threshold(mut self, threshold: Duration) -> Self {
        self.stall_threshold = threshold;
        self
    }

    /// Called on every state change, in order, from the thread that caused it. It must
    /// be quick and must not call `start()` or `stop()`.
    pub fn on_state_change(
        mut self,
        listener: impl Fn(StateChange) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Validates the configuration and builds the manager (not yet started).
    pub fn build(self) -> Result<ThreadManager, BuildError> {
        let launch = self.launch.ok_or(BuildError::MissingCallback)?;
        if self.handlers_given > 1 {
            return Err(BuildError::MoreThanOneHandler {
                given: self.handlers_given,
            });
        }
        if let Some(reason) = self.pool.and_then(|p| p.invalid_setting()) {
            return Err(BuildError::InvalidWorkerPool { reason });
        }
        let c = &self.config;
        if c.poll_timeout.is_zero() {
            return Err(BuildError::ZeroPollTimeout);
        }
        match c.commit_policy {
            CommitPolicy::EveryN(0) => return Err(BuildError::ZeroCommitCount),
            CommitPolicy::Interval(d) if d.is_zero() => return Err(BuildError::ZeroCommitInterval),
            _ => {}
        }
        let RetryBackoff { initial, max } = c.retry_backoff;
        if initial.is_zero() || initial > max {
            return Err(BuildError::InvalidBackoff { initial, max });
        }
        let retry = c.retry_policy;
        let RetryBackoff { initial, max } = retry.backoff_bounds();
        if initial.is_zero() || initial > max {
            return Err(BuildError::InvalidRetryPolicy {
                reason: format!(
                    "backoff initial {initial:?} must be greater than zero and at most max {max:?}"
                ),
            });
        }
        if retry.max_elapsed_limit().is_some_and(|d| d.is_zero()) {
            return Err(BuildError::InvalidRetryPolicy {
                reason: "max_elapsed must be greater than zero".to_owned(),
            });
        }
        if let FailurePolicy::DeadLetter(dead_letter) = &c.failure_policy {
            dead_letter.validate()?;
        }
        for (which, d) in [
            ("close", c.close_timeout),
            ("shutdown", self.shutdown_timeout),
            ("stall", self.stall_threshold),
        ] {
            if d.is_zero() {
                return Err(BuildError::ZeroTimeout { which });
            }
        }
        let thread_name = match self.thread_name {
            Some(name) => validate_thread_name(name)?,
            None => default_thread_name(),
        };
        Ok(ThreadManager::new(
            self.source,
            launch,
            thread_name,
            self.config,
            self.shutdown_timeout,
            self.stall_threshold,
            self.listener,
        ))
    }
}

/// Erases the handler's type here, at the thread boundary, so the runner is compiled for
/// it (a sync callback is inlined into the per-message loop) while `ThreadManager` stays
/// a plain type.
fn launcher<H: Handle>(handler: H) -> Launch {
    Box::new(move |args| Runner::new(args, Inline::new(handler)).run())
}

/// Starts a pool of `handlers(pool.workers())` on the consumer thread, then the runner
/// that feeds it.
fn pool_launcher<R: RunHandler>(
    pool: WorkerPool,
    handlers: impl FnOnce(usize) -> Vec<R> + Send + 'static,
) -> Launch {
    Box::new(move |args| {
        let settings = WorkerSettings {
            pool,
            retry: args.config.retry_policy,
            halt_on_give_up: matches!(args.config.failure_policy, FailurePolicy::Stop),
        };
        match spawn_workers(handlers(pool.workers()), settings, &args.shared) {
            Ok(dispatcher) => Runner::new(args, Pooled::new(dispatcher)).run(),
            Err(e) => fail_to_start(args, format!("could not spawn a worker thread: {e}")),
        }
    })
}

fn validate_thread_name(name: String) -> Result<String, BuildError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(name);
    };
    Err(BuildError::InvalidThreadName { name, reason })
}

fn default_thread_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("ktm-consumer-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
