//! The public handle: start, stop, state, wait, stats. The consuming loop itself is in
//! `runner`; what the handle shares with it is in `shared`.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::launch::{Launch, LaunchArgs, RunConfig};
use crate::lifecycle::Trigger;
use crate::preflight::PreflightSettings;
use crate::shared::{build_report, lock, Lifecycle, Shared, StateListener};
use crate::{
    Error, Health, MessageSource, State, Stats, StopReason, StopReport, ThreadManagerBuilder,
    TopicPartition,
};

/// What `start()` hands to the thread; `preflight()` borrows the source and config.
pub(crate) struct Pending {
    pub(crate) source: Box<dyn MessageSource>,
    launch: Launch,
    pub(crate) config: RunConfig,
}

/// Runs a Kafka consumer on a managed background thread.
///
/// Built with [`ThreadManager::builder`]. `start()` spawns the named thread, which polls
/// the [`MessageSource`] and calls the callback for each message; `stop()` finishes the
/// in-flight callback, commits what was handled, closes the source and joins. The thread
/// never keeps the process alive: like any Rust thread, it is ended when `main` returns
/// (the Python original's `daemon=True`), so stop the manager before exiting to commit.
///
/// ```
/// # use ktm_core::{MessageSource, Offsets, PollBatch, SourceError, ThreadManager, State};
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
/// let manager = ThreadManager::builder(Idle)
///     .callback(|msg| println!("{}@{}", msg.topic(), msg.offset()))
///     .thread_lifetime(None)
///     .build()?;
/// manager.start()?;
/// assert_eq!(manager.state(), State::Running);
/// let report = manager.stop()?; // prompt: does not wait out the 1 s poll
/// assert_eq!(report.final_state, State::Stopped);
/// # Ok::<(), ktm_core::Error>(())
/// ```
pub struct ThreadManager {
    shared: Arc<Shared>,
    pub(crate) pending: Mutex<Option<Pending>>,
    pub(crate) preflight: PreflightSettings,
    join: Mutex<Option<JoinHandle<()>>>,
    thread_name: String,
    shutdown_timeout: Duration,
    stall_threshold: Duration,
}

impl ThreadManager {
    /// Starts building a manager around `source`.
    pub fn builder(source: impl MessageSource) -> ThreadManagerBuilder {
        ThreadManagerBuilder::new(Box::new(source))
    }

    pub(crate) fn new(
        source: Box<dyn MessageSource>,
        launch: Launch,
        thread_name: String,
        config: RunConfig,
        shutdown_timeout: Duration,
        stall_threshold: Duration,
        listener: Option<StateListener>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(listener)),
            pending: Mutex::new(Some(Pending {
                source,
                launch,
                config,
            })),
            join: Mutex::new(None),
            preflight: PreflightSettings::default(),
            thread_name,
            shutdown_timeout,
            stall_threshold,
        }
    }

    /// Spawns the consumer thread and logs
    /// `Kafka consumer started consuming in thread '<name>'`.
    ///
    /// With [`preflight_on_start`](ThreadManagerBuilder::preflight_on_start), it runs
    /// [`preflight`](Self::preflight) first.
    ///
    /// # Errors
    /// [`Error::InvalidState`] unless the manager is `Created` (it cannot be restarted:
    /// build a new one); [`Error::Spawn`] if the OS refuses the thread;
    /// [`Error::Preflight`] if the preflight failed (nothing was polled, and the manager
    /// is still `Created`).
    pub fn start(&self) -> Result<(), Error> {
        if self.preflight.on_start && self.state() == State::Created {
            self.preflight()?;
        }
        let mut guard = self.shared.lifecycle();
        if guard.state != State::Created {
            return Err(Error::InvalidState {
                action: "start",
                state: guard.state,
            });
        }
        let Some(pending) = lock(&self.pending).take() else {
            return Err(Error::InvalidState {
                action: "start",
                state: guard.state,
            });
        };
        let started_at = Instant::now();
        let args = LaunchArgs {
            source: pending.source,
            config: pending.config,
            shared: Arc::clone(&self.shared),
            started_at,
        };
        let launch = pending.launch;
        // The thread blocks on the lifecycle lock we hold until it is marked Running.
        let spawned = std::thread::Builder::new()
            .name(self.thread_name.clone())
            .spawn(move || launch(args));
        match spawned {
            Ok(handle) => {
                let _ = self.shared.thread_id.set(handle.thread().id());
                *lock(&self.join) = Some(handle);
                guard.started_at = Some(started_at);
                self.shared.apply(guard, Trigger::Start);
                info!(
                    "Kafka consumer started consuming in thread '{}'",
                    self.thread_name
                );
                Ok(())
            }
            Err(e) => {
                guard.reason = Some(StopReason::SpawnFailed(e.to_string()));
                guard.report = Some(self.report_now(&guard, State::Failed));
                self.shared.apply(guard, Trigger::SpawnFailed);
                Err(Error::Spawn(e))
            }
        }
    }

    /// Stops gracefully: the in-flight callback finishes, handled positions are
    /// committed, the source is closed and the thread joined. Returns the report.
    /// Idempotent: later calls return the same report. Before `start()`, it moves the
    /// manager to `Stopped` without running anything.
    ///
    /// # Errors
    /// [`Error::StopFromConsumerThread`] when called from the callback: the stop is
    /// requested and completes when the callback returns.
    pub fn stop(&self) -> Result<StopReport, Error> {
        if self.on_consumer_thread() {
            self.shared.request_stop(StopReason::Requested);
            return Err(Error::StopFromConsumerThread {
                thread: self.thread_name.clone(),
            });
        }
        {
            let mut guard = self.shared.lifecycle();
            if guard.state == State::Created {
                guard.reason = Some(StopReason::NeverStarted);
                guard.report = Some(self.report_now(&guard, State::Stopped));
                lock(&self.pending).take();
                self.shared.apply(guard, Trigger::Stop);
            }
        }
        self.shared.request_stop(StopReason::Requested);
        let report = self
            .shared
            .wait_terminal(None)
            .ok_or(Error::Timeout(Duration::MAX))?;
        self.join_thread();
        Ok(report)
    }

    /// Waits for the thread to end by itself (lifetime, failure) or through `stop()`, up
    /// to `timeout` (`None`: no limit), and returns the report.
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is still running; [`Error::InvalidState`] if it was never
    /// started; [`Error::WaitFromConsumerThread`] at once when called from a callback
    /// while the thread runs (it would wait for itself).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<StopReport, Error> {
        let state = self.state();
        if state == State::Created {
            return Err(Error::InvalidState {
                action: "wait for",
                state,
            });
        }
        if self.on_consumer_thread() {
            if let Some(report) = self.shared.lifecycle().report.clone() {
                return Ok(report);
            }
            return Err(Error::WaitFromConsumerThread {
                thread: self.thread_name.clone(),
            });
        }
        let report = self
            .shared
            .wait_terminal(timeout)
            .ok_or(Error::Timeout(timeout.unwrap_or(Duration::MAX)))?;
        if !self.on_consumer_thread() {
            self.join_thread();
        }
        Ok(report)
    }

    /// The current lifecycle state.
    pub fn state(&self) -> State {
        self.shared.lifecycle().state
    }

    /// The consumer thread's name.
    pub fn thread_name(&self) -> &str {
        &self.thread_name
    }

    /// A live snapshot of counters, committed positions and assignment.
    pub fn stats(&self) -> Stats {
        let state = self.state();
        let counts = self.shared.counters.snapshot();
        let live = lock(&self.shared.live);
        Stats {
            state,
            counts,
            committed: live.committed.clone(),
            assignment: live.assignment.iter().cloned().collect(),
            last_error: live.last_error.clone(),
            partitions: live.partitions.clone(),
            in_flight: live.pool_backlog.0,
            held: live.pool_backlog.1,
        }
    }

    /// Cheap health check: running, assigned, and no partition with lag stalled for
    /// longer than the stall threshold (see [`ThreadManagerBuilder::stall_threshold`]).
    pub fn health(&self) -> Health {
        let state = self.state();
        let live = lock(&self.shared.live);
        let stalled: Vec<TopicPartition> = live
            .partitions
            .iter()
            .filter(|p| {
                p.lag.is_some_and(|lag| lag > 0) && p.last_progress.elapsed() > self.stall_threshold
            })
            .map(|p| p.tp.clone())
            .collect();
        Health {
            state,
            assigned: !live.assignment.is_empty(),
            healthy: state == State::Running && stalled.is_empty(),
            stalled,
        }
    }

    /// Asks the thread to stop and returns at once (for `shutdown.rs`).
    #[cfg(all(unix, feature = "signals"))]
    pub(crate) fn request_stop(&self) {
        self.shared.request_stop(StopReason::Requested);
    }

    /// Waits until the thread has ended (`Ok`: its report, the thread joined) or
    /// `interrupt()` returns something (`Err` with it). `interrupt` is called under the
    /// lifecycle lock, at every state change and every call of a [`waker`](Self::waker),
    /// so no wake-up is missed.
    #[cfg(all(unix, feature = "signals"))]
    pub(crate) fn wait_until<T>(
        &self,
        mut interrupt: impl FnMut() -> Option<T>,
    ) -> Result<StopReport, T> {
        let mut guard = self.shared.lifecycle();
        loop {
            if let Some(report) = guard.report.clone() {
                drop(guard);
                self.join_thread();
                return Ok(report);
            }
            if let Some(interrupted) = interrupt() {
                return Err(interrupted);
            }
            guard = self.shared.wait_for_change(guard);
        }
    }

    /// Wakes every [`wait_until`](Self::wait_until) to check its condition again; call
    /// it after changing what the condition reads.
    #[cfg(all(unix, feature = "signals"))]
    pub(crate) fn waker(&self) -> impl Fn() + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.wake_waiters()
    }

    /// On the consumer thread or one of its workers: where joining would deadlock.
    pub(crate) fn on_consumer_thread(&self) -> bool {
        let me = std::thread::current().id();
        self.shared.thread_id.get() == Some(&me) || lock(&self.shared.worker_threads).contains(&me)
    }

    fn join_thread(&self) {
        if let Some(handle) = lock(&self.join).take() {
            // The runner catches every panic, so a join error cannot carry news.
            let _ = handle.join();
        }
    }

    /// Sets the preflight settings (from the builder).
    pub(crate) fn with_preflight(mut self, preflight: PreflightSettings) -> Self {
        self.preflight = preflight;
        self
    }

    fn report_now(&self, guard: &Lifecycle, final_state: State) -> StopReport {
        build_report(&self.shared, guard, final_state, None, None)
    }
}

impl Drop for ThreadManager {
    fn drop(&mut self) {
        if self.on_consumer_thread() {
            // Dropped from its own callback: it cannot be joined here; ask it to stop.
            self.shared.request_stop(StopReason::Dropped);
            return;
        }
        let state = self.state();
        if state == State::Created || state.is_terminal() {
            self.join_thread();
            return;
        }
        self.shared.request_stop(StopReason::Dropped);
        if self
            .shared
            .wait_terminal(Some(self.shutdown_timeout))
            .is_some()
        {
            self.join_thread();
        } else {
            warn!(
                thread = %self.thread_name,
                timeout = ?self.shutdown_timeout,
                "consumer thread did not stop in time after drop; detaching it"
            );
        }
    }
}

impl std::fmt::Debug for ThreadManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadManager")
            .field("thread_name", &self.thread_name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
