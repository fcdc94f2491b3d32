//! Proof that a partition written by a transactional producer is read right, on both
//! backends (issue 16, "Proof (tests in CI)").
//!
//! librdkafka's transactional producer writes one partition: a committed transaction,
//! an aborted one, and a committed one last, so the log ends in a commit marker on a
//! broker that writes markers (see below for a broker without EndTxn). A manager on each backend then reads it with the default
//! isolation (read_committed), and the test checks that:
//! - exactly the records a read_committed reader may see arrive, field by field;
//! - the partition's position, committed offset and high watermark meet (the position
//!   gets past the trailing marker, which no message stands for), its lag is 0 and
//!   `health()` is healthy, with a 1 s stall threshold, after an idle window of 3 s;
//! - the idle partition is not polled in a busy loop: with `fetch.max.wait` 500 ms the
//!   Fetch requests of the idle window stay within 3 x (window / 500 ms). Counted on
//!   librdkafka's mock cluster, which logs every request it receives; Tansu counts
//!   nothing a test can read, so there the count is skipped, saying so.
//!
//! What the brokers do (read in their sources, and asked before each run with raw
//! ApiVersions and read_committed Fetch requests, `proof::wire`): librdkafka 2.12.1's
//! mock cluster (`src/rdkafka_mock_handlers.c`) takes transactional producers but
//! writes no control batch on EndTxn, and answers Fetch with last stable offset = high
//! watermark and an empty aborted-transactions list, so an aborted record is plain data
//! to every reader. Tansu 0.6.0 offers no EndTxn at all (its ApiVersions leaves key 26
//! out, and librdkafka then refuses to commit or abort), so there the log is built the
//! nearest way it allows: plain records, then a transaction left open, which Tansu
//! aborts when the transactional id is initialised again (its InitProducerId rolls the
//! open transaction back, `tansu-storage` `dynostore.rs`), writing an abort marker
//! that ends the log; Tansu also keeps aborted records and sends an empty
//! aborted-transactions list (`service/fetch.rs`). A reader can only drop aborted
//! records the broker lists, so where the broker lists none the test expects every
//! data record (and prints why); the read_committed filtering itself is checked on a
//! broker that lists them (a real Kafka named by `KAFKA_BOOTSTRAP_SERVERS`).
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proof;
mod support;

use std::time::Duration;

use kafka_thread_manager::rdkafka::{rdkafka, RdkafkaSource};
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{
    ConsumerConfig, Message, OffsetReset, State, Timestamp, TopicPartition,
};
use proof::wire;
use proof::{unique, Collected, CountingMock};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use support::KafkaBroker;

const PATIENCE: Duration = Duration::from_secs(45);
/// The consumers' long poll.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How long the test watches the idle partition.
const IDLE: Duration = Duration::from_secs(3);
const STALL_THRESHOLD: Duration = Duration::from_secs(1);
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;
/// For each producer call.
const LIMIT: Duration = Duration::from_secs(30);

/// The broker a run uses.
enum Broker {
    /// librdkafka's mock cluster, counting the requests it serves.
    Mock(CountingMock),
    /// The broker named by `KAFKA_BOOTSTRAP_SERVERS`.
    External(Box<KafkaBroker>),
}

impl Broker {
    fn bootstrap(&self) -> &str {
        match self {
            Broker::Mock(m) => &m.bootstrap,
            Broker::External(b) => &b.bootstrap,
        }
    }

    fn create_topic(&self, topic: &str) {
        match self {
            Broker::Mock(m) => m.create_topic(topic, 1),
            Broker::External(b) => b.create_topic(topic, 1),
        }
    }

    /// Fetch requests served so far, where the broker counts them.
    fn fetches(&self) -> Option<u64> {
        match self {
            Broker::Mock(m) => Some(m.fetches()),
            Broker::External(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Commit,
    Abort,
}

/// One record the transactional producer wrote.
#[derive(Clone, Debug)]
struct Written {
    offset: i64,
    payload: Vec<u8>,
    timestamp: i64,
    outcome: Outcome,
}

/// A producer of `topic[0]`: transactional with `transactional_id`, else idempotent.
fn producer(bootstrap: &str, transactional_id: Option<&str>) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    config.create().expect("a producer")
}

/// Sends `count` records named `name-i` to partition 0 and flushes them (so that they
/// really are in the log even if their transaction is aborted: an abort purges what was
/// not yet sent); appends them to `written`.
fn send(
    producer: &FutureProducer,
    topic: &str,
    name: &str,
    count: i64,
    outcome: Outcome,
    written: &mut Vec<Written>,
) {
    let deliveries: Vec<_> = (0..count)
        .map(|i| {
            let payload = format!("{name}-{i}").into_bytes();
            let timestamp = BASE_TIMESTAMP + i64::try_from(written.len()).unwrap() * 1_000 + i;
            let record = FutureRecord::<(), [u8]>::to(topic)
                .partition(0)
                .payload(&payload)
                .timestamp(timestamp);
            let delivery = producer.send_result(record).map_err(|(e, _)| e).unwrap();
            (payload, timestamp, delivery)
        })
        .collect();
    producer.flush(LIMIT).expect("flush the records");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (payload, timestamp, delivery) in deliveries {
        let delivered = rt
            .block_on(delivery)
            .expect("delivery report")
            .map_err(|(e, _)| e)
            .expect("delivered");
        written.push(Written {
            offset: delivered.offset,
            payload,
            timestamp,
            outcome,
        });
    }
}

/// Three transactions to partition 0: committed, aborted, committed.
fn write_transactions(bootstrap: &str, topic: &str) -> Vec<Written> {
    let producer = producer(bootstrap, Some(&unique("proof-txn")));
    producer
        .init_transactions(LIMIT)
        .expect("init_transactions");
    let mut written = Vec::new();
    let plan = [
        (Outcome::Commit, "first", 3),
        (Outcome::Abort, "aborted", 3),
        (Outcome::Commit, "last", 2),
    ];
    for (outcome, name, count) in plan {
        producer.begin_transaction().expect("begin_transaction");
        send(&producer, topic, name, count, outcome, &mut written);
        match outcome {
            Outcome::Commit => producer
                .commit_transaction(LIMIT)
                .expect("commit_transaction"),
            Outcome::Abort => producer
                .abort_transaction(LIMIT)
                .expect("abort_transaction"),
        }
    }
    written
}

/// For a broker without EndTxn, where no client can end a transaction: plain
/// (idempotent) records, then a transaction left open, which the broker aborts when the
/// same transactional id is initialised again (Tansu 0.6.0's InitProducerId rolls an
/// open transaction back and writes its abort marker), so the log still ends in a
/// marker.
fn write_without_end_txn(bootstrap: &str, topic: &str) -> Vec<Written> {
    let mut written = Vec::new();
    send(
        &producer(bootstrap, None),
        topic,
        "first",
        3,
        Outcome::Commit,
        &mut written,
    );
    let id = unique("proof-txn");
    let open = producer(bootstrap, Some(&id));
    open.init_transactions(LIMIT).expect("init_transactions");
    open.begin_transaction().expect("begin_transaction");
    send(&open, topic, "aborted", 3, Outcome::Abort, &mut written);
    drop(open);
    producer(bootstrap, Some(&id))
        .init_transactions(LIMIT)
        .expect("init_transactions again, which aborts the open transaction");
    written
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Rskafka,
    Rdkafka,
}

fn transactions(backend: Backend, broker: &Broker, test: &str) {
    let topic = unique("txn");
    broker.create_topic(&topic);
    // Kafka's EndTxn: without it no client can commit or abort a transaction.
    let written = if wire::api_keys(broker.bootstrap()).contains(&26) {
        write_transactions(broker.bootstrap(), &topic)
    } else {
        eprintln!(
            "NOTE {test}: the broker does not offer EndTxn (Tansu 0.6.0 has no handler for \
             it), so no transaction can be committed: plain records, then a transaction the \
             broker aborts itself when its id is initialised again"
        );
        write_without_end_txn(broker.bootstrap(), &topic)
    };
    let aborted_first = written
        .iter()
        .find(|w| w.outcome == Outcome::Abort)
        .map(|w| w.offset)
        .unwrap();
    let last_data = written.last().unwrap().offset;

    // What the broker itself says: its high watermark (past the trailing marker, where
    // it writes markers), and whether it lists the aborted transaction.
    let answer = wire::fetch_committed(broker.bootstrap(), &topic, 0, 0);
    let batches = wire::log_batches(broker.bootstrap(), &topic, 0);
    // Bit 5 of a batch's attributes: a control batch (a transaction marker).
    let markers: Vec<i64> = batches
        .iter()
        .filter(|b| b.attributes & 0x20 != 0)
        .map(|b| b.base_offset)
        .collect();
    eprintln!(
        "{test}: data at {:?}; markers at {markers:?}; the broker answers: high watermark {}, \
         last stable offset {}, aborted transactions {:?}",
        written
            .iter()
            .map(|w| (w.offset, w.outcome))
            .collect::<Vec<_>>(),
        answer.high_watermark,
        answer.last_stable_offset,
        answer.aborted
    );
    if !markers.is_empty() {
        assert_eq!(
            markers.last(),
            batches.last().map(|b| &b.base_offset),
            "{test}: the log ends in the last transaction's commit marker"
        );
    }
    let high_watermark = answer.high_watermark;
    assert!(high_watermark > last_data, "{test}: {answer:?}");
    assert_eq!(
        answer.last_stable_offset, high_watermark,
        "{test}: no transaction is open, so everything is stable"
    );
    let lists_abort = answer
        .aborted
        .iter()
        .any(|(_, first)| *first == aborted_first);
    if !lists_abort {
        eprintln!(
            "NOTE {test}: the broker lists no aborted transaction in Fetch, so no reader can \
             tell the aborted records from committed ones: expecting every data record; the \
             read_committed filtering is not checked on this broker"
        );
    }
    let expected: Vec<&Written> = written
        .iter()
        .filter(|w| w.outcome == Outcome::Commit || !lists_abort)
        .collect();
    let last_expected = expected.last().unwrap().offset;

    let tp = TopicPartition::new(topic.as_str(), 0);
    let config = ConsumerConfig::builder()
        .bootstrap_servers([broker.bootstrap().to_owned()])
        .assign([tp.clone()])
        .group_id(unique("txn-group"))
        .offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(FETCH_WAIT)
        .build()
        .unwrap();
    let fetches_before = broker.fetches();
    let collected = match backend {
        Backend::Rskafka => Collected::start(
            RskafkaSource::builder().config(config).build().unwrap(),
            STALL_THRESHOLD,
        ),
        Backend::Rdkafka => Collected::start(
            RdkafkaSource::builder().config(config).build().unwrap(),
            STALL_THRESHOLD,
        ),
    };
    collected.wait_for(
        &format!("message at offset {last_expected}"),
        PATIENCE,
        |seen| seen.iter().any(|m| m.offset() >= last_expected),
    );

    // The partition's progress meets its end: the position passes the trailing marker.
    collected.wait_for_stats(
        &format!("position, committed offset and high watermark {high_watermark}, lag 0"),
        PATIENCE,
        |s| {
            s.partitions.iter().any(|p| {
                p.tp == tp
                    && p.position == Some(high_watermark)
                    && p.committed == Some(high_watermark)
                    && p.high_watermark == Some(high_watermark)
                    && p.lag == Some(0)
            })
        },
    );

    // The idle window: nothing to read, the consumer long-polls.
    let fetches_at_idle = broker.fetches();
    let handled_at_idle = collected.manager.stats().counts.messages_handled;
    std::thread::sleep(IDLE);
    let fetches_after_idle = broker.fetches();

    let stats = collected.manager.stats();
    let health = collected.manager.health();
    let (seen, report) = collected.stop();

    // The records, field by field.
    let want: Vec<i64> = expected.iter().map(|w| w.offset).collect();
    let got: Vec<i64> = seen.iter().map(Message::offset).collect();
    assert_eq!(got, want, "{test}: the offsets delivered");
    for (w, m) in expected.iter().zip(&seen) {
        let at = format!("{test}, offset {}", w.offset);
        assert_eq!(m.topic(), topic, "{at}: topic");
        assert_eq!(m.partition(), 0, "{at}: partition");
        assert_eq!(m.key(), None, "{at}: key");
        assert_eq!(m.payload(), Some(&w.payload[..]), "{at}: payload");
        assert!(m.headers().is_empty(), "{at}: headers {:?}", m.headers());
        assert_eq!(
            m.timestamp(),
            Some(Timestamp::CreateTime(w.timestamp)),
            "{at}: timestamp"
        );
    }

    // Nothing more arrived while idle, and the partition stayed caught up.
    assert_eq!(
        stats.counts.messages_handled, handled_at_idle,
        "{test}: {stats:?}"
    );
    let partition = stats.partitions.iter().find(|p| p.tp == tp).unwrap();
    assert_eq!(
        partition.position,
        Some(high_watermark),
        "{test}: {partition:?}"
    );
    assert_eq!(partition.lag, Some(0), "{test}: {partition:?}");
    assert!(health.healthy, "{test}: {health:?}");
    assert!(health.assigned, "{test}: {health:?}");
    assert!(health.stalled.is_empty(), "{test}: {health:?}");

    // No busy loop.
    match (fetches_before, fetches_at_idle, fetches_after_idle) {
        (Some(before), Some(at_idle), Some(after)) => {
            // The counter works: reading took Fetch requests.
            assert!(at_idle > before, "{test}: no Fetch counted while reading");
            let allowed = 3 * u64::try_from(IDLE.as_millis() / FETCH_WAIT.as_millis()).unwrap();
            let idle_fetches = after - at_idle;
            eprintln!("{test}: {idle_fetches} Fetch requests in the {IDLE:?} idle window (at most {allowed})");
            assert!(
                idle_fetches <= allowed,
                "{test}: {idle_fetches} Fetch requests in {IDLE:?} on an idle partition with a \
                 {FETCH_WAIT:?} long poll (at most {allowed}): a busy loop"
            );
        }
        _ => eprintln!(
            "SKIP {test}: the Fetch count (this broker counts no requests a test can read)"
        ),
    }

    assert_eq!(report.final_state, State::Stopped, "{test}: {report:?}");
    assert_eq!(report.counts.callback_failures, 0, "{test}: {report:?}");
}

fn on_mock(backend: Backend) {
    let test = format!("transactions {backend:?} on the mock cluster");
    transactions(backend, &Broker::Mock(CountingMock::new(1)), &test);
}

fn on_external(backend: Backend) {
    let test = format!("transactions {backend:?} on KAFKA_BOOTSTRAP_SERVERS");
    let Some(broker) = KafkaBroker::external(&test) else {
        return;
    };
    transactions(backend, &Broker::External(Box::new(broker)), &test);
}

#[test]
fn transactions_rskafka_mockcluster() {
    on_mock(Backend::Rskafka);
}

#[test]
fn transactions_rdkafka_mockcluster() {
    on_mock(Backend::Rdkafka);
}

#[test]
fn transactions_rskafka_tansu() {
    on_external(Backend::Rskafka);
}

#[test]
fn transactions_rdkafka_tansu() {
    on_external(Backend::Rdkafka);
}
