//! Helpers shared by the integration tests: producing, a recording source wrapper, a
//! manager with a recording callback, and the delivery checks; [`mock`] for the tests on
//! librdkafka's in-process mock cluster.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

pub mod mock;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ktm_core::{
    async_trait, CommitPolicy, Message, MessageSource, Offsets, PollBatch, SourceError, StopReport,
    ThreadManager,
};
use ktm_rdkafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ktm_rdkafka::rdkafka::client::DefaultClientContext;
use ktm_rdkafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use ktm_rdkafka::rdkafka::ClientConfig;

/// Sends `per_partition` records to each of `partitions` partitions, numbered from
/// `first`; returns once every record is acknowledged.
pub fn produce(bootstrap: &str, topic: &str, partitions: i32, first: i64, per_partition: i64) {
    produce_batched(bootstrap, topic, partitions, first, per_partition, 10_000);
}

/// As [`produce`], with at most `batch` records per record batch. Tansu 0.6.0 returns
/// nothing for a fetch that starts inside a batch (Kafka returns the whole batch), so
/// tests that resume mid-log against Tansu produce one record per batch.
pub fn produce_batched(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    first: i64,
    per_partition: i64,
    batch: usize,
) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", batch.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in first..first + per_partition {
        for p in 0..partitions {
            let key = format!("{p}-{i}");
            let mut record = BaseRecord::to(topic).partition(p).key(&key).payload(&key);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// What happened, in one order: records handled and positions committed.
#[derive(Clone, Debug)]
pub enum Entry {
    Handled(i32, i64),
    Committed(i32, i64),
}

#[derive(Default)]
pub struct Log {
    entries: Mutex<Vec<Entry>>,
    handled: AtomicU64,
}

impl Log {
    fn push(&self, e: Entry) {
        self.entries.lock().unwrap().push(e);
    }

    /// Records handled so far, duplicates included.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// Waits until `n` distinct records were handled.
    pub fn wait_distinct(&self, n: usize, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.distinct() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn distinct(&self) -> usize {
        let entries = self.entries.lock().unwrap();
        let mut seen = std::collections::HashSet::new();
        for e in entries.iter() {
            if let Entry::Handled(p, o) = e {
                seen.insert((*p, *o));
            }
        }
        seen.len()
    }
}

/// A source that logs the positions its commits got acknowledged for.
pub struct Recording<S> {
    inner: S,
    log: Arc<Log>,
}

#[async_trait]
impl<S: MessageSource> MessageSource for Recording<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError> {
        self.inner.poll(timeout, batch).await
    }
    fn store(&mut self, positions: &Offsets) {
        self.inner.store(positions);
    }
    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError> {
        self.inner.commit(positions).await?;
        for (tp, pos) in positions.iter() {
            self.log.push(Entry::Committed(tp.partition(), pos));
        }
        Ok(())
    }
    async fn close(&mut self) -> Result<(), SourceError> {
        self.inner.close().await
    }
}

/// A started manager over `source`, logging into `log`; each record takes `work`.
pub fn start(
    source: impl MessageSource,
    log: &Arc<Log>,
    commit_every: u64,
    work: Duration,
) -> ThreadManager {
    let callback_log = Arc::clone(log);
    let manager = ThreadManager::builder(Recording {
        inner: source,
        log: Arc::clone(log),
    })
    .callback(move |m: &Message| -> Result<(), std::io::Error> {
        if !work.is_zero() {
            std::thread::sleep(work);
        }
        callback_log.push(Entry::Handled(m.partition(), m.offset()));
        callback_log.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .thread_lifetime(None)
    .poll_timeout(Duration::from_millis(200))
    .commit_policy(CommitPolicy::EveryN(commit_every))
    .retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
    .close_timeout(Duration::from_secs(3))
    .build()
    .unwrap();
    manager.start().unwrap();
    manager
}

/// Stops the manager and checks it took less than `bound`.
pub fn stop_within(manager: &ThreadManager, bound: Duration) -> StopReport {
    let t = Instant::now();
    let report = manager.stop().unwrap();
    let took = t.elapsed();
    assert!(
        took < bound,
        "stop() took {took:?}, bound {bound:?}: {report:?}"
    );
    eprintln!("stop() took {took:?}");
    report
}

/// The delivery checks: every record `0..per_partition` of each partition handled at
/// least once, and every duplicate inside the uncommitted window (no acknowledged commit
/// covered it before it was handled again). Returns the number of duplicates.
pub fn check_delivery(entries: &[Entry], partitions: i32, per_partition: i64) -> usize {
    let mut first_seen: HashMap<(i32, i64), usize> = HashMap::new();
    let mut committed_at: BTreeMap<i32, Vec<(usize, i64)>> = BTreeMap::new();
    let mut duplicates = 0;
    for (i, e) in entries.iter().enumerate() {
        match *e {
            Entry::Committed(p, pos) => committed_at.entry(p).or_default().push((i, pos)),
            Entry::Handled(p, o) => {
                if let Some(&first) = first_seen.get(&(p, o)) {
                    duplicates += 1;
                    let covered = committed_at
                        .get(&p)
                        .into_iter()
                        .flatten()
                        .find(|&&(at, pos)| at > first && pos > o);
                    assert!(
                        covered.is_none(),
                        "record {p}@{o} handled again at #{i} after a commit of position {covered:?} covered it"
                    );
                } else {
                    first_seen.insert((p, o), i);
                }
            }
        }
    }
    for p in 0..partitions {
        let missing: Vec<i64> = (0..per_partition)
            .filter(|o| !first_seen.contains_key(&(p, *o)))
            .collect();
        assert!(
            missing.is_empty(),
            "partition {p}: {} records never handled, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    eprintln!(
        "{} records handled, {} distinct, {duplicates} duplicates",
        entries
            .iter()
            .filter(|e| matches!(e, Entry::Handled(..)))
            .count(),
        first_seen.len()
    );
    duplicates
}

/// Each partition's records handled in offset order, each exactly once.
pub fn check_exactly_once_in_order(entries: &[Entry], partitions: i32, per_partition: i64) {
    let mut next: HashMap<i32, i64> = HashMap::new();
    for e in entries {
        if let Entry::Handled(p, o) = *e {
            let want = next.entry(p).or_insert(0);
            assert_eq!(o, *want, "partition {p}: got offset {o}, expected {want}");
            *want += 1;
        }
    }
    for p in 0..partitions {
        assert_eq!(
            next.get(&p).copied().unwrap_or(0),
            per_partition,
            "partition {p}"
        );
    }
}

/// A unique name for this run.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A runtime for the tests that await a source or producer themselves, on the test's
/// own thread as a caller without a manager would.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates `topic` with `partitions` partitions on a real broker.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}
