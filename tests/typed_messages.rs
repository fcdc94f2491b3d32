//! Typed handlers with JSON payloads on the in-memory backend: valid records reach the
//! handler as values; invalid ones never do, and are settled by the failure policy
//! without retries, counted as decode failures, with the commit moving past them. The
//! behaviour suite's `typed_handler` runs the same rule against every backend.
#![cfg(feature = "json")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_thread_manager::mock::{MockCluster, Record};
use kafka_thread_manager::{
    CommitPolicy, DeadLetter, Decode, DecodeError, FailureKind, FailurePolicy, Json, Message,
    RetryPolicy, State, StopReason, StopReport, ThreadManager, ThreadManagerBuilder, Typed,
    TypedAsync, WorkerPool,
};

const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Order {
    id: u64,
    item: String,
}

/// What each partition holds: `Ok` records decode into an order, `Err` ones do not.
fn payload(p: i32, i: i64) -> Result<String, &'static [u8]> {
    match i % 5 {
        1 => Err(b"{\"id\": 1, \"item\":"), // cut short
        3 if p == 0 => Err(b"{\"id\": \"seven\", \"item\": \"x\"}"), // wrong type
        3 => Err(b"\xff\xfe{}"),            // not even UTF-8
        _ => Ok(format!(r#"{{"id": {}, "item": "p{p}-{i}"}}"#, i)),
    }
}

const PER_PARTITION: i64 = 20;

fn cluster() -> MockCluster {
    let cluster = MockCluster::new();
    cluster.create_topic("orders", 2).unwrap();
    cluster.create_topic("orders.dlq", 1).unwrap();
    for p in 0..2 {
        for i in 0..PER_PARTITION {
            let record = match payload(p, i) {
                Ok(json) => Record::new(json),
                Err(bytes) => Record::new(bytes),
            };
            cluster.produce("orders", p, record).unwrap();
        }
    }
    cluster
}

fn builder(cluster: &MockCluster, policy: FailurePolicy) -> ThreadManagerBuilder {
    ThreadManager::builder(cluster.consumer("g").subscribe(["orders"]).build().unwrap())
        .retry_policy(
            RetryPolicy::retries(5).backoff(Duration::from_millis(10), Duration::from_millis(50)),
        )
        .failure_policy(policy)
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(50))
}

/// `builder` under the dead-letter policy, to "orders.dlq".
fn dead_lettering(cluster: &MockCluster) -> ThreadManagerBuilder {
    let dead_letter = DeadLetter::new(cluster.dead_letter_producer()).topic("orders.dlq");
    builder(cluster, FailurePolicy::DeadLetter(dead_letter))
}

type Seen = Arc<Mutex<Vec<(i32, i64, Order)>>>;

/// Runs until both partitions are committed to their end, then stops.
fn run_to_end(cluster: &MockCluster, m: &ThreadManager) -> StopReport {
    m.start().unwrap();
    let started = Instant::now();
    while (0..2).any(|p| cluster.committed("g", "orders", p) != Some(PER_PARTITION)) {
        assert!(
            started.elapsed() < PATIENCE,
            "not committed: {:?}",
            m.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    m.stop().unwrap()
}

fn valid() -> Vec<(i32, i64, Order)> {
    (0..2)
        .flat_map(|p| (0..PER_PARTITION).map(move |i| (p, i)))
        .filter_map(|(p, i)| {
            payload(p, i).ok()?;
            Some((
                p,
                i,
                Order {
                    id: i as u64,
                    item: format!("p{p}-{i}"),
                },
            ))
        })
        .collect()
}

fn invalid() -> Vec<(i32, i64)> {
    (0..2)
        .flat_map(|p| (0..PER_PARTITION).map(move |i| (p, i)))
        .filter(|&(p, i)| payload(p, i).is_err())
        .collect()
}

/// Every valid record reached the handler once; every invalid one is in the dead-letter
/// topic once, with its decode error, tried once; the counters agree.
fn assert_settled(cluster: &MockCluster, report: &StopReport, seen: &Seen) {
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|(p, i, _)| (*p, *i));
    assert_eq!(seen, valid(), "every valid record, typed, once");
    let bad = invalid();
    let c = report.counts;
    assert_eq!(
        (
            c.decode_failures,
            c.callback_failures,
            c.retries,
            c.dead_lettered
        ),
        (bad.len() as u64, 0, 0, bad.len() as u64),
        "{c:?}"
    );
    let mut dead: Vec<(i32, i64)> = Vec::new();
    for d in cluster.records("orders.dlq", 0).unwrap() {
        let header = |k: &str| {
            let h = d.headers().iter().find(|h| h.key == k).unwrap();
            String::from_utf8(h.value.as_ref().unwrap().to_vec()).unwrap()
        };
        assert_eq!(header("ktm.dlq.failure.kind"), "undecodable");
        assert_eq!(header("ktm.dlq.attempts"), "1", "never retried");
        assert!(
            header("ktm.dlq.error").contains("JSON"),
            "{}",
            header("ktm.dlq.error")
        );
        dead.push((
            header("ktm.dlq.source.partition").parse().unwrap(),
            header("ktm.dlq.source.offset").parse().unwrap(),
        ));
    }
    dead.sort_unstable();
    assert_eq!(dead, bad, "each invalid record dead-lettered once");
}

#[test]
fn json_records_reach_the_handler_typed_and_invalid_ones_are_dead_lettered() {
    let cluster = cluster();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let m = dead_lettering(&cluster)
        .handler(Typed::new(Json::<Order>::new(), move |order, msg| {
            sink.lock()
                .unwrap()
                .push((msg.partition(), msg.offset(), order));
        }))
        .build()
        .unwrap();
    let report = run_to_end(&cluster, &m);
    assert_settled(&cluster, &report, &seen);
}

#[test]
fn async_json_handlers_on_a_worker_pool_settle_the_same_way() {
    let cluster = cluster();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let m = dead_lettering(&cluster)
        .parallel_async_handler(
            WorkerPool::new(2),
            TypedAsync::new(Json::<Order>::new(), move |order, msg| {
                let sink = Arc::clone(&sink);
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    sink.lock()
                        .unwrap()
                        .push((msg.partition(), msg.offset(), order));
                }
            }),
        )
        .build()
        .unwrap();
    let report = run_to_end(&cluster, &m);
    assert_settled(&cluster, &report, &seen);
}

#[test]
fn under_skip_undecodable_records_are_skipped_and_counted() {
    let cluster = cluster();
    let m = builder(&cluster, FailurePolicy::Skip)
        .handler(Typed::new(Json::<Order>::new(), |_, _| {}))
        .build()
        .unwrap();
    let report = run_to_end(&cluster, &m);
    let bad = invalid().len() as u64;
    let c = report.counts;
    assert_eq!(
        (c.decode_failures, c.skipped, c.retries),
        (bad, bad, 0),
        "{c:?}"
    );
    assert_eq!(c.messages_handled, valid().len() as u64);
    assert_eq!(c.callback_failures, 0);
    let partitions = m.stats().partitions;
    assert_eq!(
        partitions.iter().map(|p| p.decode_failures).sum::<u64>(),
        bad,
        "{partitions:?}"
    );
}

#[test]
fn under_stop_the_first_undecodable_record_stops_with_its_decode_error() {
    let cluster = cluster();
    let m = builder(&cluster, FailurePolicy::Stop)
        .handler(Typed::new(Json::<Order>::new(), |_, _| {}))
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(PATIENCE)).unwrap();
    assert_eq!(report.final_state, State::Failed, "{report:?}");
    let StopReason::CallbackFailed(failure) = &report.reason else {
        panic!("{report:?}")
    };
    assert_eq!(failure.kind, FailureKind::Undecodable);
    assert_eq!(
        failure.offset, 1,
        "the first invalid record of its partition"
    );
    let error = failure.error.as_ref().unwrap();
    assert!(matches!(
        error.find::<DecodeError>(),
        Some(DecodeError::Malformed { format: "JSON", .. })
    ));
    let tp = kafka_thread_manager::TopicPartition::new("orders", failure.partition);
    assert_eq!(report.committed.get(&tp), Some(1), "nothing past it");
    assert_eq!(report.counts.retries, 0);
}

/// Decodes JSON, but the first two attempts on each message find the schema
/// registry unreachable.
#[derive(Clone, Default)]
struct Flaky {
    attempts: Arc<Mutex<Vec<i64>>>,
}

impl Decode for Flaky {
    type Output = Order;
    fn decode(&mut self, message: &Message) -> Result<Order, DecodeError> {
        let mut attempts = self.attempts.lock().unwrap();
        attempts.push(message.offset());
        if attempts.iter().filter(|&&o| o == message.offset()).count() <= 2 {
            return Err(DecodeError::SchemaUnavailable {
                id: 1,
                source: "registry unreachable".into(),
            });
        }
        Json::<Order>::new().decode(message)
    }
}

#[test]
fn a_decoder_that_cannot_decode_now_is_retried_not_dead_lettered() {
    let cluster = MockCluster::new();
    cluster.create_topic("orders", 1).unwrap();
    cluster
        .produce("orders", 0, Record::new(r#"{"id": 9, "item": "x"}"#))
        .unwrap();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let m = builder(&cluster, FailurePolicy::Skip)
        .handler(Typed::new(Flaky::default(), move |order, msg| {
            sink.lock()
                .unwrap()
                .push((msg.partition(), msg.offset(), order));
        }))
        .build()
        .unwrap();
    m.start().unwrap();
    let started = Instant::now();
    while cluster.committed("g", "orders", 0) != Some(1) {
        assert!(started.elapsed() < PATIENCE, "{:?}", m.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = m.stop().unwrap();
    let c = report.counts;
    assert_eq!(
        (c.retries, c.decode_failures, c.skipped, c.messages_handled),
        (2, 0, 0, 1),
        "{c:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}
