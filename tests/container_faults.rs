//! Faults of a real broker, each in a container of its own, for both Kafka backends:
//! the broker paused past the session timeout, its network cut, and a restart that
//! loses every topic and committed offset (memory storage).
//!
//! Each test checks at-least-once delivery across the fault (every produced message
//! handled, each with the payload produced at its offset), that messages repeat only
//! from inside the uncommitted window, that the manager keeps consuming after the
//! fault, and that `stop()` returns within a bound.
//!
//! Run: `KTM_KAFKA_IMAGE=ktm-tansu:0.6.0 cargo test --all-features --test container_faults`
//! (`scripts/tansu-image.sh` builds the image). Without docker or the image the tests
//! print why they skip. Tests marked `#[ignore]` document a defect (of Tansu 0.6.0,
//! librdkafka or a backend) that makes them fail today; `-- --ignored` runs them.
#![cfg(any(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use kafka_thread_manager::{
    CommitPolicy, Message, MessageSource, OffsetReset, State, ThreadManager, TopicPartition,
};
use rskafka::client::partition::Compression;
use support::{consumer_config, record, KafkaBroker};

/// Longer than the session timeout (`support::SESSION_TIMEOUT`, 6 s): the broker
/// expires the member meanwhile.
const FAULT: Duration = Duration::from_secs(8);
/// For every wait on a condition: generous, so a slow machine does not fail a test.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long `stop()` may take, whatever state the fault left the client in.
const STOP_BOUND: Duration = Duration::from_secs(20);
/// Commit every this many messages: the uncommitted window.
const COMMIT_EVERY: u64 = 10;
const PARTITIONS: i32 = 2;
/// Per partition, produced before the fault.
const BEFORE: usize = 120;
/// Per partition, produced after the fault ends.
const AFTER: usize = 30;
/// Callback work per message, so the stream is still flowing when the fault hits.
const WORK: Duration = Duration::from_millis(10);

type SourceFactory = fn(bootstrap: &str, group: &str, topic: &str) -> Box<dyn MessageSource>;

#[cfg(feature = "rskafka")]
fn rskafka_source(bootstrap: &str, group: &str, topic: &str) -> Box<dyn MessageSource> {
    use kafka_thread_manager::rskafka::RskafkaSource;
    Box::new(
        RskafkaSource::builder()
            .config(consumer_config(
                bootstrap,
                topic,
                group,
                OffsetReset::Earliest,
            ))
            // The group leader notices a recreated topic at its next metadata look, by
            // default every 5 minutes; the restart test waits seconds.
            .metadata_max_age(Duration::from_secs(1))
            .build()
            .expect("valid rskafka config"),
    )
}

/// Reads the topic's partitions by static assignment (no group membership): the fetch
/// positions outlive a broker restart.
#[cfg(feature = "rskafka")]
fn rskafka_assigned_source(bootstrap: &str, group: &str, topic: &str) -> Box<dyn MessageSource> {
    use kafka_thread_manager::rskafka::RskafkaSource;
    Box::new(
        RskafkaSource::builder()
            .bootstrap_servers([bootstrap.to_owned()])
            .assign((0..PARTITIONS).map(|p| TopicPartition::new(topic, p)))
            .group_id(group)
            .offset_reset(OffsetReset::Earliest)
            .fetch_max_wait(Duration::from_millis(100))
            .build()
            .expect("valid rskafka config"),
    )
}

#[cfg(feature = "rdkafka")]
fn rdkafka_source(bootstrap: &str, group: &str, topic: &str) -> Box<dyn MessageSource> {
    use kafka_thread_manager::rdkafka::RdkafkaSource;
    Box::new(
        RdkafkaSource::builder()
            .config(consumer_config(
                bootstrap,
                topic,
                group,
                OffsetReset::Earliest,
            ))
            // librdkafka notices a deleted and recreated topic on its next metadata
            // refresh, by default every 5 minutes; the restart test waits seconds.
            .set("topic.metadata.refresh.interval.ms", "1000")
            .build()
            .expect("valid rdkafka config"),
    )
}

/// As [`rdkafka_source`], but librdkafka waits 20 s (at least 15 s with its jitter)
/// from one connection attempt to a broker to the next: the fetch connection, made
/// seconds before the restart, is not retried until long after the restarted broker has
/// its topic back, and an attempt while the broker is down only pushes the next one 20 s
/// on (see [`rdkafka_restart_recreated_before_reconnect`]).
#[cfg(feature = "rdkafka")]
fn rdkafka_slow_reconnect_source(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> Box<dyn MessageSource> {
    use kafka_thread_manager::rdkafka::RdkafkaSource;
    Box::new(
        RdkafkaSource::builder()
            .config(consumer_config(
                bootstrap,
                topic,
                group,
                OffsetReset::Earliest,
            ))
            .set("topic.metadata.refresh.interval.ms", "1000")
            .set("reconnect.backoff.ms", "20000")
            .set("reconnect.backoff.max.ms", "20000")
            .build()
            .expect("valid rdkafka config"),
    )
}

// ---- the harness ----------------------------------------------------------------

/// One call of the callback.
#[derive(Debug, Clone)]
struct Delivery {
    partition: i32,
    offset: i64,
    payload: String,
    /// The position the manager had committed for this partition when the message was
    /// handed over (the broker's committed offset is at least this).
    committed: Option<i64>,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// A broker of its own, a topic, and a manager recording every delivery.
struct Harness {
    name: String,
    broker: KafkaBroker,
    topic: String,
    manager: Arc<ThreadManager>,
    log: Log,
}

impl Harness {
    /// `None` (the fixture printed why) without docker or the image.
    fn start(name: &str, build: SourceFactory) -> Option<Self> {
        init_tracing();
        let broker = KafkaBroker::container(name)?;
        let topic = format!("ktm-faults-{name}");
        broker.create_topic(&topic, PARTITIONS);
        let source = build(&broker.bootstrap, &format!("{name}-group"), &topic);
        let log: Log = Arc::default();
        let me: Arc<OnceLock<Weak<ThreadManager>>> = Arc::default();
        let callback = {
            let log = Arc::clone(&log);
            let me = Arc::clone(&me);
            let topic = topic.clone();
            move |m: &Message| -> Result<(), std::io::Error> {
                // stats() from the consumer thread: it takes no lock the thread holds
                // while a callback runs.
                let tp = TopicPartition::new(topic.as_str(), m.partition());
                let committed = me
                    .get()
                    .and_then(Weak::upgrade)
                    .and_then(|mgr| mgr.stats().committed.get(&tp));
                log.lock().unwrap().push(Delivery {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into(),
                    committed,
                });
                std::thread::sleep(WORK);
                Ok(())
            }
        };
        let manager = Arc::new(
            ThreadManager::builder(source)
                .callback(callback)
                .commit_policy(CommitPolicy::EveryN(COMMIT_EVERY))
                .thread_lifetime(None)
                .poll_timeout(Duration::from_millis(200))
                .build()
                .unwrap(),
        );
        me.set(Arc::downgrade(&manager)).ok();
        manager.start().unwrap();
        Some(Self {
            name: name.to_owned(),
            broker,
            topic,
            manager,
            log,
        })
    }

    /// Produces `n` records to every partition, one record per batch (Tansu 0.6.0
    /// answers a fetch that starts inside a batch with garbage), with payloads
    /// `<tag>-<partition>-<index>`.
    fn produce(&self, tag: &str, n: usize) {
        for i in 0..n {
            for p in 0..PARTITIONS {
                let payload = format!("{tag}-{p}-{i}").into_bytes();
                let one = record(None, Some(payload), BTreeMap::new());
                self.broker
                    .produce(&self.topic, p, vec![one], Compression::NoCompression);
            }
        }
    }

    fn handled(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Distinct `(partition, offset)` handled with a payload starting with `tag`.
    fn distinct(&self, tag: &str) -> usize {
        let prefix = format!("{tag}-");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.payload.starts_with(&prefix))
            .map(|d| (d.partition, d.offset))
            .collect::<BTreeSet<_>>()
            .len()
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            let stats = self.manager.stats();
            assert!(
                start.elapsed() < PATIENCE,
                "{}: timed out after {PATIENCE:?} waiting for {what}; handled {} messages; {stats:?}",
                self.name,
                self.handled(),
            );
            assert_eq!(
                stats.state,
                State::Running,
                "{}: the manager ended while waiting for {what}: {stats:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the manager on another thread and fails unless it returns in time.
    fn stop_within_bound(&self) {
        let manager = Arc::clone(&self.manager);
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(manager.stop());
        });
        let report = match rx.recv_timeout(STOP_BOUND) {
            Ok(r) => r.unwrap(),
            Err(e) => panic!(
                "{}: stop() did not return within {STOP_BOUND:?}: {e}",
                self.name
            ),
        };
        eprintln!("{}: stop() took {:?}", self.name, started.elapsed());
        assert_eq!(
            report.final_state,
            State::Stopped,
            "{}: {report:?}",
            self.name
        );
    }

    /// Every message produced with `tag` (`n` per partition, offsets from `base`) was
    /// handled with its own payload, and messages repeated only from inside the
    /// uncommitted window. Returns the number of duplicate deliveries.
    fn check_delivery(&self, tag: &str, base: i64, n: usize) -> usize {
        self.check_delivery_with(tag, base, n, true)
    }

    /// [`Harness::check_delivery`]; `window` false skips the uncommitted-window check
    /// (when the broker lost its committed offsets, they bound nothing).
    fn check_delivery_with(&self, tag: &str, base: i64, n: usize, window: bool) -> usize {
        let prefix = format!("{tag}-");
        let log: Vec<Delivery> = self
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.payload.starts_with(&prefix))
            .cloned()
            .collect();
        let mut duplicates = 0;
        let mut rewinds = 0;
        for p in 0..PARTITIONS {
            let deliveries: Vec<&Delivery> = log.iter().filter(|d| d.partition == p).collect();
            // Each offset holds what was produced there: no garbage, nothing shifted.
            for d in &deliveries {
                let index = d.offset - base;
                assert_eq!(
                    d.payload,
                    format!("{tag}-{p}-{index}"),
                    "{}: partition {p} offset {} holds another record",
                    self.name,
                    d.offset
                );
            }
            let seen: BTreeSet<i64> = deliveries.iter().map(|d| d.offset).collect();
            let missing: Vec<i64> = (base..base + n as i64)
                .filter(|o| !seen.contains(o))
                .collect();
            assert!(
                missing.is_empty(),
                "{}: partition {p}: offsets {missing:?} were never handled",
                self.name
            );
            duplicates += deliveries.len() - seen.len();
            // A consumer goes back only to a committed offset, and committed offsets only
            // grow: so after going back, it resumes at or after the position that was
            // committed when the message before the jump was handled.
            for pair in deliveries.windows(2) {
                let (before, after) = (pair[0], pair[1]);
                if window && after.offset <= before.offset {
                    rewinds += 1;
                    let floor = before.committed.unwrap_or(base);
                    eprintln!(
                        "{}: {tag}: partition {p} went back from {} to {} (committed then: {floor})",
                        self.name, before.offset, after.offset
                    );
                    assert!(
                        after.offset >= floor,
                        "{}: partition {p} went back from {} to {}, below the position {floor} \
                         committed before: redelivered outside the uncommitted window",
                        self.name,
                        before.offset,
                        after.offset
                    );
                }
            }
        }
        eprintln!(
            "{}: {tag}: {} deliveries of {} messages, {duplicates} duplicates, {rewinds} rewinds",
            self.name,
            log.len(),
            n * PARTITIONS as usize
        );
        duplicates
    }
}

fn init_tracing() {
    // RUST_LOG=ktm_rskafka=debug,ktm_rdkafka=debug shows the backends' view.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---- the faults -----------------------------------------------------------------

/// A fault that lasts a while mid-stream: the consumer must resume by itself.
fn survives_fault(
    name: &str,
    build: SourceFactory,
    fault: impl Fn(&KafkaBroker),
    heal: impl Fn(&KafkaBroker),
) {
    let Some(h) = Harness::start(name, build) else {
        return;
    };
    let total = BEFORE * PARTITIONS as usize;
    h.produce("a", BEFORE);
    // Mid-stream: some handled, most still to come.
    h.wait_for("the first messages", |h| h.handled() >= total / 4);
    fault(&h.broker);
    let during = h.handled();
    std::thread::sleep(FAULT);
    heal(&h.broker);
    eprintln!(
        "{name}: fault at {during} handled, healed at {} handled; {:?}",
        h.handled(),
        h.manager.stats()
    );
    assert_eq!(
        h.manager.state(),
        State::Running,
        "{name}: survives the fault"
    );
    h.wait_for("every message produced before the fault", |h| {
        h.distinct("a") >= total
    });
    // Progress after the fault: new messages arrive and are handled.
    h.produce("b", AFTER);
    h.wait_for("every message produced after the fault", |h| {
        h.distinct("b") >= AFTER * PARTITIONS as usize
    });
    h.stop_within_bound();
    let mut all = h.check_delivery("a", 0, BEFORE);
    all += h.check_delivery("b", BEFORE as i64, AFTER);
    eprintln!("{name}: {all} duplicates in all; {:?}", h.manager.stats());
}

fn pause_past_session_timeout(name: &str, build: SourceFactory) {
    survives_fault(name, build, KafkaBroker::pause, KafkaBroker::unpause);
}

fn network_cut(name: &str, build: SourceFactory) {
    survives_fault(
        name,
        build,
        |b| b.set_network(false),
        |b| b.set_network(true),
    );
}

/// The broker, frozen past the session timeout, expires the member when it resumes.
/// The member keeps its id when only its own clock says the session is over (as the
/// Java consumer does), and Tansu 0.6.0 re-forms the group only when that id rejoins:
/// see the reason on the rdkafka twin.
#[cfg(feature = "rskafka")]
#[test]
fn rskafka_pause_past_session_timeout() {
    pause_past_session_timeout("rskafka-pause", rskafka_source);
}

#[cfg(feature = "rdkafka")]
#[test]
#[ignore = "Tansu 0.6.0 wedges the group: resumed past the session timeout, it expires the \
            member while the group is formed (Heartbeat: REBALANCE_IN_PROGRESS, then \
            UNKNOWN_MEMBER_ID) but keeps that member id as the group's leader; librdkafka drops \
            its member id on its own session timeout and joins afresh (MEMBER_ID_REQUIRED), \
            every JoinGroup then names the expired id as leader with no members, and every \
            SyncGroup answers REBALANCE_IN_PROGRESS, or UNKNOWN_MEMBER_ID once Tansu expires \
            the new id too (JoinGroup does not refresh its last contact): never assigned again"]
fn rdkafka_pause_past_session_timeout() {
    pause_past_session_timeout("rdkafka-pause", rdkafka_source);
}

#[cfg(feature = "rskafka")]
#[test]
fn rskafka_network_cut() {
    network_cut("rskafka-netcut", rskafka_source);
}

#[cfg(feature = "rdkafka")]
#[test]
fn rdkafka_network_cut() {
    network_cut("rdkafka-netcut", rdkafka_source);
}

/// When the topic comes back after a broker restart: after the consumer has seen it gone
/// for a while, or at once, before the consumer reconnects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recreate {
    AfterObserving,
    BeforeReconnect,
}

/// The broker restarts empty: topics and committed offsets are gone. The manager reports
/// the errors, backs off instead of spinning, stays `Running`, and once the topic is back
/// (shorter than the position it had reached) starts over by its reset policy.
fn restart_loses_topics_and_offsets(name: &str, build: SourceFactory) {
    restart_with(name, build, Recreate::AfterObserving);
}

fn restart_with(name: &str, build: SourceFactory, recreate: Recreate) {
    const FIRST: usize = 40;
    const SECOND: usize = 10;
    // Longer than the rskafka backend's retry deadline for a missing topic (its connect
    // timeout, 10 s by default) plus the restart itself: only then does a poll report the
    // loss. At 10 s the first report raced the window's end (seen once in 8 CI runs).
    const OBSERVE: Duration = Duration::from_secs(20);
    let Some(h) = Harness::start(name, build) else {
        return;
    };
    h.produce("a", FIRST);
    h.wait_for("every message of the first life, committed", |h| {
        let committed = h.manager.stats().committed;
        h.distinct("a") >= FIRST * PARTITIONS as usize
            && (0..PARTITIONS).all(|p| {
                committed.get(&TopicPartition::new(h.topic.as_str(), p)) == Some(FIRST as i64)
            })
    });
    let before = h.manager.stats();
    h.broker.restart();
    let restarted = Instant::now();
    if recreate == Recreate::BeforeReconnect {
        h.broker.create_topic(&h.topic, PARTITIONS);
    }
    // The broker lost the group, the offsets and (for a while) the topic: the manager
    // must neither end nor spin.
    while restarted.elapsed() < OBSERVE {
        assert_eq!(
            h.manager.state(),
            State::Running,
            "{name}: the manager ended after the restart: {:?}",
            h.manager.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = h.manager.stats();
    let errors = after.counts.poll_errors - before.counts.poll_errors;
    eprintln!(
        "{name}: {errors} poll errors in {OBSERVE:?} after the restart; last error: {:?}; {after:?}",
        after.last_error
    );
    assert!(
        errors >= 1 && after.last_error.is_some(),
        "{name}: the lost broker state was not reported: {after:?}"
    );
    assert!(
        errors <= 100,
        "{name}: {errors} poll errors in {OBSERVE:?}: retries are not backing off"
    );
    // The topic comes back, shorter than the position reached: reset policy earliest.
    if recreate == Recreate::AfterObserving {
        h.broker.create_topic(&h.topic, PARTITIONS);
    }
    h.produce("c", SECOND);
    h.wait_for("the messages of the recreated topic", |h| {
        h.distinct("c") >= SECOND * PARTITIONS as usize
    });
    h.stop_within_bound();
    h.check_delivery("a", 0, FIRST);
    h.check_delivery_with("c", 0, SECOND, false);
    eprintln!("{name}: {:?}", h.manager.stats());
}

#[cfg(feature = "rskafka")]
#[test]
fn rskafka_restart_loses_topics_and_offsets() {
    restart_loses_topics_and_offsets("rskafka-restart", rskafka_source);
}

#[cfg(feature = "rdkafka")]
#[test]
#[ignore = "librdkafka 2.12.1 segfaults in about half the runs, killing the test binary: \
            a Fetch for the lost topic gets UNKNOWN_TOPIC_OR_PARTITION from Tansu 0.6.0 with a \
            KIP-951 leader hint under an all-zero topic id, and librdkafka's metadata update \
            from it calls rd_kafka_metadata_cache_find with a NULL topic name (strcmp). \
            rdkafka_restart_recreated_before_reconnect is the variant that runs"]
fn rdkafka_restart_loses_topics_and_offsets() {
    restart_loses_topics_and_offsets("rdkafka-restart", rdkafka_source);
}

/// The nearest this broker allows to the test above for librdkafka: the topic is back
/// before librdkafka reconnects, so it never fetches from a broker that lacks the topic.
/// Otherwise Tansu 0.6.0 answers that Fetch with UNKNOWN_TOPIC_OR_PARTITION plus a
/// leader hint (KIP-951 `CurrentLeader` {0, 0}, `NodeEndpoints`) under an all-zero topic
/// id, and librdkafka 2.12.1 turns the hint into a metadata update with neither topic id
/// nor name, which `rd_kafka_metadata_cache_find` passes to `strcmp` (SIGSEGV). The
/// consumer still loses its group and committed offsets and starts over by its reset
/// policy from a log shorter than the position it had reached.
#[cfg(feature = "rdkafka")]
#[test]
fn rdkafka_restart_recreated_before_reconnect() {
    restart_with(
        "rdkafka-restart-recreated",
        rdkafka_slow_reconnect_source,
        Recreate::BeforeReconnect,
    );
}

/// With a static assignment the fetch position (40) outlives the restart, and the
/// recreated log is shorter (10): Tansu answers such fetches with nothing rather than
/// OFFSET_OUT_OF_RANGE, so the backend must read the high watermark to reset.
#[cfg(feature = "rskafka")]
#[test]
fn rskafka_assigned_restart_loses_topics_and_offsets() {
    restart_loses_topics_and_offsets("rskafka-assigned-restart", rskafka_assigned_source);
}
