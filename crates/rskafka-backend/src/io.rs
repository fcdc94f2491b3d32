//! The backend's I/O thread: a tokio runtime of its own, on which every connection of
//! the source lives (rskafka's fetch and metadata connections, the group and offset
//! connections) and every background task runs (group membership, partition fetches).
//!
//! The manager drives the source on its consumer thread, which runs the user's
//! callbacks; a callback that never awaits blocks that thread's runtime. Were the
//! heartbeats driven there, a slow callback would get the member expelled from its
//! group (librdkafka and the Java client keep a heartbeat thread for the same reason).
//! Here the consumer thread only exchanges messages with the I/O thread.

use std::future::Future;

use ktm_core::SourceError;
use tokio::runtime::{Handle, Runtime};

use crate::BACKEND;

/// The name of the I/O thread, as it shows in `top -H` and debuggers.
const THREAD_NAME: &str = "ktm-rskafka-io";

/// Owns the runtime of the I/O thread; dropping it stops the thread's tasks.
#[derive(Debug)]
pub(crate) struct IoThread {
    handle: Handle,
    /// Taken out only by `drop`.
    runtime: Option<Runtime>,
}

impl IoThread {
    /// Starts the thread.
    pub(crate) fn start() -> Result<Self, SourceError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .map_err(|e| {
                SourceError::fatal(BACKEND, format!("starting the I/O thread: {e}")).with_source(e)
            })?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Where tasks are spawned.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `work` on the I/O thread and waits for its result. If the caller stops
    /// waiting, the work still finishes there (a commit is not cut off half-way).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, SourceError> {
        self.handle().spawn(work).await.map_err(|e| {
            SourceError::transient(BACKEND, format!("I/O task ended: {e}")).with_source(e)
        })
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        // Not `Runtime::drop`, which blocks and panics inside an async context (the
        // source may be dropped on the consumer thread's runtime).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_on_the_io_thread_and_drop_inside_a_runtime_is_fine() {
        let io = IoThread::start().unwrap();
        let name = io
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        drop(io);
    }

    #[test]
    fn a_blocked_caller_does_not_stop_io_work() {
        let io = IoThread::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        io.handle().spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = tx.send(());
        });
        // This thread blocks without awaiting; the timer still fires on the I/O thread.
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    }
}
