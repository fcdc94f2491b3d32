//! Helpers shared by the facade's test files.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_thread_manager::mock::MockCluster;
use kafka_thread_manager::{StateChange, ThreadManager, TopicPartition};

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
        || m.stats().messages_handled >= n,
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
