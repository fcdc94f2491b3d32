//! Stopping on SIGTERM or SIGINT (feature `signals`, Unix only):
//! [`ThreadManager::run_until_shutdown_signal`].
//!
//! One thread (`ktm-signals`) reads the signals from signal-hook's self-pipe and wakes
//! the caller through the manager's own condition variable, so the caller sleeps until a
//! signal arrives or the manager ends: no polling.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use tracing::{info, warn};

use crate::shared::lock;
use crate::{Error, State, StopReport, ThreadManager};

/// A signal asking the process to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShutdownSignal {
    /// `SIGTERM`: how Kubernetes, systemd and `kill` stop a service.
    Terminate,
    /// `SIGINT`: Ctrl-C in a terminal.
    Interrupt,
}

impl ShutdownSignal {
    /// The signal's number (`SIGTERM` is 15, `SIGINT` 2).
    pub fn number(self) -> i32 {
        match self {
            ShutdownSignal::Terminate => SIGTERM,
            ShutdownSignal::Interrupt => SIGINT,
        }
    }

    /// The signal's name: `"SIGTERM"` or `"SIGINT"`.
    pub fn name(self) -> &'static str {
        match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        }
    }

    fn from_number(number: i32) -> Option<Self> {
        match number {
            SIGTERM => Some(ShutdownSignal::Terminate),
            SIGINT => Some(ShutdownSignal::Interrupt),
            _ => None,
        }
    }
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How [`ThreadManager::run_until_shutdown_signal`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownOutcome {
    /// A signal arrived and the manager stopped gracefully: the in-flight callback
    /// finished, what was handled was committed, the source was closed.
    Stopped {
        /// The signal that asked for the stop.
        signal: ShutdownSignal,
        /// The manager's report (as from [`ThreadManager::stop`]).
        report: StopReport,
    },
    /// The manager ended before any signal: its `thread_lifetime` ran out, it failed, or
    /// `stop()` was called elsewhere.
    Ended {
        /// The manager's report.
        report: StopReport,
    },
    /// A second signal arrived while the manager was stopping, so this returned without
    /// waiting for the in-flight callback. Only settled messages are ever committed, so
    /// nothing past what was handled is committed; what was handled since the last
    /// commit is not, and is redelivered. The stop goes on in the background until the
    /// process exits, which the caller should now do.
    Interrupted {
        /// The signal that started the stop.
        first: ShutdownSignal,
        /// The signal that cut it short.
        second: ShutdownSignal,
    },
}

impl ShutdownOutcome {
    /// The manager's report, unless the stop was interrupted.
    pub fn report(&self) -> Option<&StopReport> {
        match self {
            ShutdownOutcome::Stopped { report, .. } | ShutdownOutcome::Ended { report } => {
                Some(report)
            }
            ShutdownOutcome::Interrupted { .. } => None,
        }
    }

    /// A process exit status for it: 0 when the manager ended `Stopped`, 1 when it ended
    /// `Failed`, and 128 + the second signal's number when interrupted (130 for
    /// `SIGINT`, 143 for `SIGTERM`), as a shell reports a process killed by a signal.
    pub fn exit_code(&self) -> i32 {
        match self {
            ShutdownOutcome::Interrupted { second, .. } => 128 + second.number(),
            ShutdownOutcome::Stopped { report, .. } | ShutdownOutcome::Ended { report } => {
                match report.final_state {
                    State::Failed => 1,
                    _ => 0,
                }
            }
        }
    }
}

impl ThreadManager {
    /// Runs the manager until `SIGTERM` or `SIGINT`, then stops it gracefully (the
    /// in-flight callback finishes, what was handled is committed, the source is closed)
    /// and returns the report: the main loop of a service stopped by Kubernetes, systemd
    /// or Ctrl-C. Logs which signal arrived and that the manager is stopping.
    ///
    /// - Starts the manager if it was not started, after the handlers are installed, so
    ///   no signal can fall between the two (started earlier, a signal before this call
    ///   takes its default action and ends the process without the final commit).
    /// - Returns [`ShutdownOutcome::Ended`] if the manager ends by itself first
    ///   (`thread_lifetime`, a failure, or `stop()` from another thread).
    /// - A second signal while stopping returns [`ShutdownOutcome::Interrupted`] at once,
    ///   so the caller can exit without waiting for a stuck callback; nothing past what
    ///   was handled has been committed.
    ///
    /// While it runs, `SIGTERM` and `SIGINT` are caught for the whole process (through
    /// signal-hook). When it returns, they take their default action again (end the
    /// process) rather than being ignored, which is all signal-hook leaves otherwise:
    /// handlers registered elsewhere through signal-hook (or tokio's `signal`) are still
    /// called, but the process then ends too. It is meant for a service's main thread,
    /// which exits after it, for example with [`ShutdownOutcome::exit_code`].
    ///
    /// Unix only, with the `signals` feature; on other platforms it does not exist (use
    /// `stop()` from your own Ctrl-C handler).
    ///
    /// # Errors
    /// [`Error::Signals`] if the handlers cannot be installed or the signal thread
    /// spawned; the errors of [`start`](Self::start); and
    /// [`Error::WaitFromConsumerThread`] at once when called from a callback.
    ///
    /// ```no_run
    /// # fn demo(manager: ktm_core::ThreadManager) -> Result<(), ktm_core::Error> {
    /// let outcome = manager.run_until_shutdown_signal()?; // starts it, if needed
    /// if let Some(report) = outcome.report() {
    ///     println!("handled {} messages", report.counts.messages_handled);
    /// }
    /// std::process::exit(outcome.exit_code());
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(all(unix, feature = "signals"))))]
    pub fn run_until_shutdown_signal(&self) -> Result<ShutdownOutcome, Error> {
        if self.on_consumer_thread() {
            return Err(Error::WaitFromConsumerThread {
                thread: self.thread_name().to_owned(),
            });
        }
        let watch = SignalWatch::start(self.waker())?;
        if self.state() == State::Created {
            self.start()?;
        }
        let first = match self.wait_for_signal(&watch, 0) {
            Ok(report) => return Ok(ShutdownOutcome::Ended { report }),
            Err(signal) => signal,
        };
        info!(
            signal = %first,
            thread = %self.thread_name(),
            "received {first}: stopping the Kafka consumer gracefully (a second signal ends the wait)"
        );
        self.request_stop();
        match self.wait_for_signal(&watch, 1) {
            Ok(report) => Ok(ShutdownOutcome::Stopped {
                signal: first,
                report,
            }),
            Err(second) => {
                warn!(
                    signal = %second,
                    thread = %self.thread_name(),
                    "received {second} while stopping: not waiting for the in-flight callback; \
                     nothing past what was handled is committed"
                );
                Ok(ShutdownOutcome::Interrupted { first, second })
            }
        }
    }

    /// The manager's report once it ended (`Ok`), or the signal numbered `index` (0: the
    /// first) if it comes first (`Err`).
    fn wait_for_signal(
        &self,
        watch: &SignalWatch,
        index: usize,
    ) -> Result<StopReport, ShutdownSignal> {
        self.wait_until(|| lock(&watch.received).get(index).copied())
    }
}

/// Whether `SIGTERM` and `SIGINT` take their default action: true while no
/// [`SignalWatch`] runs. signal-hook never uninstalls its handler, so once one was
/// installed, only an action that emulates the default keeps the signals from being
/// ignored.
static DEFAULT_ACTION: AtomicBool = AtomicBool::new(false);

/// How many watches run, and whether the default-emulating action is installed.
static WATCHES: Mutex<Watches> = Mutex::new(Watches {
    running: 0,
    default_installed: false,
});

struct Watches {
    running: usize,
    default_installed: bool,
}

/// Counts a running watch (and installs the default-emulating action on the first);
/// when the last one ends, the signals take their default action again.
struct Running;

impl Running {
    fn enter() -> Result<Self, Error> {
        let mut watches = lock(&WATCHES);
        if !watches.default_installed {
            for signal in [SIGTERM, SIGINT] {
                signal_hook::flag::register_conditional_default(signal, &DEFAULT_ACTION)
                    .map_err(Error::Signals)?;
            }
            watches.default_installed = true;
        }
        watches.running += 1;
        DEFAULT_ACTION.store(false, Ordering::SeqCst);
        Ok(Running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut watches = lock(&WATCHES);
        watches.running -= 1;
        if watches.running == 0 {
            DEFAULT_ACTION.store(true, Ordering::SeqCst);
        }
    }
}

/// `SIGTERM` and `SIGINT` caught for as long as this lives; the received ones in order.
struct SignalWatch {
    received: Arc<Mutex<Vec<ShutdownSignal>>>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    /// Taken first on drop: the default action is back before our handler goes, so that
    /// no signal is ignored in between.
    running: Option<Running>,
}

impl SignalWatch {
    /// Installs the handlers and the thread that records signals and calls `wake`.
    fn start(wake: impl Fn() + Send + 'static) -> Result<Self, Error> {
        let running = Running::enter()?;
        let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(Error::Signals)?;
        let handle = signals.handle();
        let received = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&received);
        // On error the closure (and `signals` in it) is dropped: the handlers go with it.
        let thread = std::thread::Builder::new()
            .name("ktm-signals".to_owned())
            .spawn(move || {
                for number in signals.forever() {
                    if let Some(signal) = ShutdownSignal::from_number(number) {
                        lock(&recorded).push(signal);
                        wake();
                    }
                }
            })
            .map_err(Error::Signals)?;
        Ok(Self {
            received,
            handle,
            thread: Some(thread),
            running: Some(running),
        })
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        drop(self.running.take());
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            // The thread only records signals and wakes waiters: nothing to report.
            let _ = thread.join();
        }
    }
}
