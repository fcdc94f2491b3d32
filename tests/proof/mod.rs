//! Helpers of the proof tests (`record_fidelity.rs`, `transactions.rs`,
//! `connections.rs`): a manager that keeps every message its callback saw, librdkafka's
//! mock cluster built so that the test can count the requests it serves, and the
//! broker connections this process holds, read from `/proc`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_thread_manager::rdkafka::rdkafka;
use kafka_thread_manager::{
    CommitPolicy, Message, MessageSource, State, Stats, StopReport, ThreadManager,
};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientConfig;

/// A name no other test (or earlier run against the same broker) uses.
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

/// A running manager whose callback keeps a copy of every message it is given.
pub struct Collected {
    pub manager: ThreadManager,
    seen: Arc<Mutex<Vec<Message>>>,
}

impl Collected {
    /// Starts a manager over `source`: commits every 100 ms (so that the committed
    /// position follows the handled one closely), no thread lifetime, and
    /// `stall_threshold` for [`ThreadManager::health`].
    pub fn start(source: impl MessageSource, stall_threshold: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let manager = ThreadManager::builder(source)
            .callback(move |m: &Message| -> Result<(), std::io::Error> {
                sink.lock().unwrap().push(m.clone());
                Ok(())
            })
            .thread_lifetime(None)
            .commit_policy(CommitPolicy::Interval(Duration::from_millis(100)))
            .stall_threshold(stall_threshold)
            .build()
            .expect("build the manager");
        manager.start().expect("start the manager");
        Self { manager, seen }
    }

    /// Every message handled so far, in the order the callback saw them.
    pub fn messages(&self) -> Vec<Message> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the messages handled so far. Fails after `patience`,
    /// or as soon as the manager is no longer running, with what it had seen.
    pub fn wait_for(
        &self,
        what: &str,
        patience: Duration,
        mut done: impl FnMut(&[Message]) -> bool,
    ) {
        let deadline = Instant::now() + patience;
        loop {
            if done(&self.seen.lock().unwrap()) {
                return;
            }
            let stats = self.manager.stats();
            assert_eq!(
                stats.state,
                State::Running,
                "the manager stopped before {what}: {stats:?}"
            );
            assert!(
                Instant::now() < deadline,
                "no {what} within {patience:?}; offsets seen: {:?}; stats: {stats:?}",
                offsets(&self.seen.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the manager's stats satisfy `done`; fails after `patience` with the
    /// last stats.
    pub fn wait_for_stats(
        &self,
        what: &str,
        patience: Duration,
        mut done: impl FnMut(&Stats) -> bool,
    ) {
        let deadline = Instant::now() + patience;
        loop {
            let stats = self.manager.stats();
            if done(&stats) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {patience:?}; stats: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the manager; the messages it handled and its report.
    pub fn stop(self) -> (Vec<Message>, StopReport) {
        let report = self.manager.stop().expect("stop the manager");
        let seen = self.seen.lock().unwrap().clone();
        (seen, report)
    }
}

/// The (partition, offset) of each message, for failure messages.
pub fn offsets(messages: &[Message]) -> Vec<(i32, i64)> {
    messages
        .iter()
        .map(|m| (m.partition(), m.offset()))
        .collect()
}

/// librdkafka's mock cluster, created through a client of the test's own (librdkafka's
/// `test.mock.num.brokers`), so that the mock logs through that client: with
/// `debug=mock` it logs every request it receives ("Broker 1: Received FetchRequestV11
/// from 127.0.0.1:40312", `rd_kafka_mock_connection_parse_request` in librdkafka
/// 2.12.1's `src/rdkafka_mock.c`), and [`CountingMock::fetches`] counts the Fetch
/// requests among them (as they are handed over, a few milliseconds after the mock
/// logged them). rdkafka 0.39 does not wrap the mock's own request tracking
/// (`rd_kafka_mock_start_request_tracking`), and the tests forbid `unsafe`.
pub struct CountingMock {
    pub bootstrap: String,
    /// The brokers' ports, in broker order.
    pub ports: Vec<u16>,
    counts: Arc<RequestCounts>,
    /// Owns the cluster: the cluster lives as long as this client. rdkafka hands log
    /// lines over as events of the client's main queue, which a threaded producer's
    /// own thread keeps serving.
    owner: ThreadedProducer<Counting>,
}

#[derive(Default)]
struct RequestCounts {
    fetch: AtomicU64,
    all: AtomicU64,
}

/// The mock-owning client's context: counts the requests the mock logs.
struct Counting(Arc<RequestCounts>);

impl ClientContext for Counting {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, line: &str) {
        if let Some((_, request)) = line.split_once(": Received ") {
            self.0.all.fetch_add(1, Ordering::Relaxed);
            if request.starts_with("FetchRequestV") {
                self.0.fetch.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl CountingMock {
    /// A mock cluster of `brokers` brokers.
    pub fn new(brokers: u16) -> Self {
        let counts = Arc::new(RequestCounts::default());
        let owner: ThreadedProducer<Counting> = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .set("debug", "mock")
            // Debug lines are only handed to the context at this level.
            .set_log_level(RDKafkaLogLevel::Debug)
            .create_with_context(Counting(Arc::clone(&counts)))
            .expect("a client owning a mock cluster");
        let bootstrap = owner
            .client()
            .mock_cluster()
            .expect("the client owns a mock cluster")
            .bootstrap_servers();
        let ports = bootstrap
            .split(',')
            .map(|a| {
                a.rsplit_once(':')
                    .expect("host:port")
                    .1
                    .parse()
                    .expect("a port")
            })
            .collect();
        Self {
            bootstrap,
            ports,
            counts,
            owner,
        }
    }

    /// Creates `topic` (the mock has no CreateTopics handler).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.owner
            .client()
            .mock_cluster()
            .expect("the client owns a mock cluster")
            .create_topic(topic, partitions, 1)
            .expect("create a topic on the mock cluster");
    }

    /// Fetch requests the cluster received so far, from any client.
    pub fn fetches(&self) -> u64 {
        self.counts.fetch.load(Ordering::Relaxed)
    }

    /// Requests of any kind the cluster received so far: shows that counting works.
    pub fn requests(&self) -> u64 {
        self.counts.all.load(Ordering::Relaxed)
    }
}

/// This process's established TCP connections whose remote port is one of `ports`, by
/// socket inode, with that port: the connections this process opened to those brokers. The
/// in-process mock cluster's own ends of the same connections have the broker port as
/// their local port, so they are not counted; nor are sockets of other processes
/// (`/proc/self/net/tcp` lists the whole network namespace, so only inodes that are
/// also open file descriptors of this process count).
pub fn connections_to(ports: &[u16]) -> BTreeMap<u64, u16> {
    let mine = own_socket_inodes();
    let mut found = BTreeMap::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let (Some(remote), Some(state), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            // 01 is TCP_ESTABLISHED.
            if *state != "01" {
                continue;
            }
            let Some(port) = remote
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            if ports.contains(&port) && mine.contains(&inode) {
                found.insert(inode, port);
            }
        }
    }
    found
}

/// The inodes of the sockets among this process's open file descriptors.
fn own_socket_inodes() -> BTreeSet<u64> {
    let mut inodes = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return inodes;
    };
    for entry in dir.flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}
