//! Shared helpers of the broker tests: they need `KAFKA_BOOTSTRAP_SERVERS`
//! (e.g. from `scripts/tansu.sh start`) and skip, saying so, without it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ktm_core::{Message, ThreadManager};
use ktm_rskafka::{RskafkaSource, RskafkaSourceBuilder};
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

pub mod mock;

/// Session timeout for test groups (Tansu may take half of it to form a group).
pub const SESSION: Duration = Duration::from_millis(6000);

/// The broker address, or `None` (after saying why the test is skipped).
pub fn bootstrap(test: &str) -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            eprintln!(
                "skipping {test}: KAFKA_BOOTSTRAP_SERVERS is not set (run scripts/tansu.sh start)"
            );
            None
        }
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn client(bootstrap: &str) -> Client {
    ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await
        .unwrap()
}

pub async fn create_topic(client: &Client, topic: &str, partitions: i32) {
    client
        .controller_client()
        .unwrap()
        .create_topic(topic, partitions, 1, 5_000)
        .await
        .unwrap();
}

pub fn now() -> DateTime<Utc> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap()).unwrap()
}

pub fn record(value: Vec<u8>) -> Record {
    Record {
        key: None,
        value: Some(value),
        headers: BTreeMap::new(),
        timestamp: now(),
    }
}

/// Produces `n` records of `size` bytes to `topic[partition]`, in batches.
pub async fn produce(client: &Client, topic: &str, partition: i32, n: usize, size: usize) {
    let pc = client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let mut left = n;
    while left > 0 {
        let k = left.min(2_000);
        let records = (0..k).map(|_| record(vec![b'x'; size])).collect();
        pc.produce(records, Compression::NoCompression)
            .await
            .unwrap();
        left -= k;
    }
}

/// A source builder with the test settings.
pub fn source(bootstrap: &str, group: &str) -> RskafkaSourceBuilder {
    RskafkaSource::builder()
        .bootstrap_servers([bootstrap])
        .group_id(group)
        .session_timeout(SESSION)
        .heartbeat_interval(Duration::from_millis(1000))
        .fetch_max_wait(Duration::from_millis(50))
        .connect_timeout(Duration::from_secs(3))
}

/// (partition, offset) of every handled message, in handling order.
pub type Seen = Arc<Mutex<Vec<(i32, i64)>>>;

/// A manager that records what it handles.
pub fn manager(source: RskafkaSource, seen: &Seen) -> ThreadManager {
    let seen = Arc::clone(seen);
    ThreadManager::builder(source)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .close_timeout(Duration::from_secs(5))
        .callback(move |m: &Message| -> Result<(), std::io::Error> {
            seen.lock().unwrap().push((m.partition(), m.offset()));
            Ok(())
        })
        .build()
        .unwrap()
}

/// Waits until `done` holds, panicking after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every (partition, offset) of `counts` (partition -> messages from offset 0).
pub fn expected(counts: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let mut v: Vec<(i32, i64)> = counts
        .iter()
        .flat_map(|&(p, n)| (0..n).map(move |o| (p, o)))
        .collect();
    v.sort_unstable();
    v
}

/// Asserts each partition's offsets were handled in increasing order.
pub fn assert_in_order(seen: &[(i32, i64)]) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for &(p, o) in seen {
        if let Some(prev) = last.insert(p, o) {
            assert!(o > prev, "partition {p}: offset {o} handled after {prev}");
        }
    }
}
