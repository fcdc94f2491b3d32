//! Configuration of a [`ThreadManager`], validated when it is built.

use std::sync::Arc;
use std::time::Duration;

use crate::callback::Handle;
use crate::launch::{Launch, RunConfig};
use crate::pool::{spawn_workers, RunHandler, WorkerSettings};
use crate::preflight::PreflightSettings;
use crate::runner::{fail_to_start, Inline, Pooled, Runner};
use crate::shared::StateListener;
use crate::{
    BuildError, CommitPolicy, FailurePolicy, MessageSource, RetryBackoff, RetryPolicy, StateChange,
    ThreadManager, WorkerPool,
};

mod handlers;
mod preflight;

/// The original's default `thread_lifetime`.
pub const DEFAULT_THREAD_LIFETIME: Duration = Duration::from_secs(40);

/// Builds a [`ThreadManager`]; see [`ThreadManager::builder`].
///
/// Exactly one handler is given, by one of these setters (a second one is
/// [`BuildError::MoreThanOneHandler`]):
///
/// | handler | one at a time | on a [`WorkerPool`] (`Clone`: a clone per worker) |
/// |---|---|---|
/// | closure `FnMut(&Message)` | [`callback(f)`](Self::callback) | [`parallel_callback(pool, f)`](Self::parallel_callback) |
/// | async closure `FnMut(Message) -> impl Future` | [`async_callback(f)`](Self::async_callback) | [`parallel_async_callback(pool, f)`](Self::parallel_async_callback) |
/// | batch closure `FnMut(&[Message])` | [`batch_callback(f)`](Self::batch_callback) | [`parallel_batch_callback(pool, f)`](Self::parallel_batch_callback) |
/// | a [`Callback`](crate::Callback) type | [`handler(h)`](Self::handler) | [`parallel_handler(pool, h)`](Self::parallel_handler) |
/// | an [`AsyncCallback`](crate::AsyncCallback) type | [`async_handler(h)`](Self::async_handler) | [`parallel_async_handler(pool, h)`](Self::parallel_async_handler) |
/// | a [`BatchCallback`](crate::BatchCallback) type | [`batch_handler(h)`](Self::batch_handler) | [`parallel_batch_handler(pool, h)`](Self::parallel_batch_handler) |
///
/// "One at a time" runs on the consumer thread, except batches, which run on one worker
/// thread (`WorkerPool::default()`). A closure returns `()` or `Result<(), E>` (see
/// [`CallbackResult`](crate::CallbackResult)), so its types are usually inferred:
/// `.callback(|msg| { .. })`.
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
    preflight: PreflightSettings,
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
            preflight: PreflightSettings::default(),
        }
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
            ("preflight", self.preflight.timeout),
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
        )
        .with_preflight(self.preflight))
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
