//! Helpers shared by the facade's test files.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_thread_manager::mock::MockCluster;
use kafka_thread_manager::{Error, StateChange, StopReport, ThreadManager, TopicPartition};

/// A cluster with `topic` of `partitions`, filled with `count` records round-robin.
pub fn cluster_with(topic: &str, partitions: i32, count: u64) -> MockCluster {
    let cluster = MockCluster::new();
    cluster
        .create_topic(topic, partitions)
        .expect("create topic");
    cluster.fill(topic, count, 8).expect("fill");
    cluster
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the manager has handled `n` messages.
pub fn handled_at_least(m: &ThreadManager, n: u64) {
    eventually(
        Duration::from_secs(20),
        &format!("{n} messages handled"),
        || m.stats().counts.messages_handled >= n,
    );
}

/// Every (partition, offset) a callback saw, in order.
pub type Seen = Arc<Mutex<Vec<(TopicPartition, i64)>>>;

/// Records every state change.
pub fn recorder() -> (
    Arc<Mutex<Vec<StateChange>>>,
    impl Fn(StateChange) + Send + Sync + 'static,
) {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&changes);
    (changes, move |c| sink.lock().expect("lock").push(c))
}

/// Kills the process if a test deadlocks, so CI reports it instead of hanging.
pub fn deadlock_watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("deadlock watchdog: test still running after {limit:?}");
        std::process::abort();
    });
}

/// A call the manager made on an [`Observed`] source.
#[derive(Debug)]
pub enum Call<'a> {
    Store(&'a kafka_thread_manager::Offsets),
    Commit(&'a kafka_thread_manager::Offsets),
    Pause(&'a [TopicPartition]),
    Resume(&'a [TopicPartition]),
}

/// Forwards every call to `inner`, telling `observe` about stores, commits, pauses and
/// resumes first (to audit or record them).
pub struct Observed<S> {
    pub inner: S,
    pub observe: Box<dyn Fn(Call<'_>) + Send>,
}

#[kafka_thread_manager::async_trait]
impl<S: kafka_thread_manager::MessageSource> kafka_thread_manager::MessageSource for Observed<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn poll(
        &mut self,
        timeout: Duration,
        batch: &mut kafka_thread_manager::PollBatch,
    ) -> Result<(), kafka_thread_manager::SourceError> {
        self.inner.poll(timeout, batch).await
    }
    fn store(&mut self, positions: &kafka_thread_manager::Offsets) {
        (self.observe)(Call::Store(positions));
        self.inner.store(positions);
    }
    async fn commit(
        &mut self,
        positions: &kafka_thread_manager::Offsets,
    ) -> Result<(), kafka_thread_manager::SourceError> {
        (self.observe)(Call::Commit(positions));
        self.inner.commit(positions).await
    }
    async fn close(&mut self) -> Result<(), kafka_thread_manager::SourceError> {
        self.inner.close().await
    }
    fn group_id(&self) -> Option<&str> {
        self.inner.group_id()
    }
    fn pause(&mut self, tps: &[TopicPartition]) -> Result<(), kafka_thread_manager::SourceError> {
        (self.observe)(Call::Pause(tps));
        self.inner.pause(tps)
    }
    fn resume(&mut self, tps: &[TopicPartition]) -> Result<(), kafka_thread_manager::SourceError> {
        (self.observe)(Call::Resume(tps));
        self.inner.resume(tps)
    }
}

/// A numeric header of a message (a dead letter's `ktm.dlq.source.offset`, say).
pub fn header_number(m: &kafka_thread_manager::Message, key: &str) -> i64 {
    let h = m.headers().iter().find(|h| h.key == key).expect("header");
    std::str::from_utf8(h.value.as_ref().expect("value"))
        .expect("utf-8")
        .parse()
        .expect("a number")
}

/// The value of metric `name` whose labels include `labels`, from Prometheus text.
pub fn prometheus_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A writer for a `tracing_subscriber::fmt` subscriber that keeps what it is given.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// The lines written so far that contain every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // `KTM_TEST_LOG=stderr` also shows the log as it comes, to debug a test.
        if std::env::var_os("KTM_TEST_LOG").is_some_and(|v| v == "stderr") {
            std::io::stderr().write_all(buf)?;
        }
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The manager, reachable from its own callback (built before the manager exists), and
/// the error text of the one call the callback made on it.
#[derive(Clone, Default)]
pub struct FromCallback {
    manager: Arc<Mutex<Option<Arc<ThreadManager>>>>,
    answer: Arc<Mutex<Option<String>>>,
}

impl FromCallback {
    /// In the callback: calls `f` on the manager, which must fail, and keeps the text.
    pub fn call(&self, f: impl FnOnce(&ThreadManager) -> Result<StopReport, Error>) {
        let manager = self
            .manager
            .lock()
            .expect("slot lock")
            .clone()
            .expect("manager set before the callback runs");
        let text = match f(&manager) {
            Ok(report) => format!("unexpected success: {report:?}"),
            Err(e) => e.to_string(),
        };
        *self.answer.lock().expect("answer lock") = Some(text);
    }

    /// Shares the built manager with its callback.
    pub fn set(&self, manager: ThreadManager) -> Arc<ThreadManager> {
        let manager = Arc::new(manager);
        *self.manager.lock().expect("slot lock") = Some(Arc::clone(&manager));
        manager
    }

    /// What the callback's call returned. Drops the callback's handle first: the
    /// manager would keep itself alive through it.
    pub fn answer(&self) -> String {
        self.manager.lock().expect("slot lock").take();
        self.answer
            .lock()
            .expect("answer lock")
            .clone()
            .expect("the callback made its call")
    }
}
