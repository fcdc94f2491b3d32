//! The behaviour suite: written once, generic over a [`Fixture`], run for every backend
//! (`behaviour_<backend>.rs`), so backends cannot drift apart. A behaviour a backend
//! cannot offer is declared in its [`Caps`], and the test says so when it skips.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_thread_manager::{
    CommitPolicy, DeadLetter, DeadLetterProducer, Decode, FailurePolicy, Message, MessageSource,
    OffsetReset, RetryPolicy, State, StopReason, ThreadManager, ThreadManagerBuilder,
    TopicPartition, Typed, Utf8, WorkerPool,
};

/// A record to produce.
#[derive(Clone, Debug, Default)]
pub struct TestRecord {
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

impl TestRecord {
    pub fn payload(p: &str) -> Self {
        Self {
            payload: Some(Bytes::copy_from_slice(p.as_bytes())),
            ..Self::default()
        }
    }
}

/// What a backend can do; the suite skips (loudly) what it cannot.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Several members in one group, with rebalances.
    pub rebalance: bool,
}

/// A backend under test, with a broker (or mock cluster) it can create topics on.
pub trait Fixture {
    fn name(&self) -> &'static str;
    fn caps(&self) -> Caps;
    /// A fresh topic name for this test.
    fn topic(&self, test: &str) -> String {
        format!("ktm-{}-{test}-{}", self.name(), unique())
    }
    fn create_topic(&self, topic: &str, partitions: i32);
    fn produce(&self, topic: &str, partition: i32, records: Vec<TestRecord>);
    /// A consumer of `topic` in `group`, subscribed through the group protocol.
    fn source(&self, group: &str, topic: &str, reset: OffsetReset) -> Box<dyn MessageSource>;
    /// How long the slowest step of this backend (joining a group) may take.
    fn patience(&self) -> Duration;
    /// Bad configurations, each with a fragment of the typed error's message.
    fn bad_configs(&self) -> Vec<(&'static str, String)>;
    /// The backend's dead-letter producer, connected to this broker.
    fn dead_letter_producer(&self) -> Box<dyn DeadLetterProducer>;
    /// Every record of `topic[partition]`, in offset order, read back from the broker.
    fn read_all(&self, topic: &str, partition: i32) -> Vec<ReadRecord>;
}

/// A record read back from the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

impl ReadRecord {
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &v[..])
    }
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:x}{}", N.fetch_add(1, Ordering::Relaxed))
}

type Seen = Arc<Mutex<Vec<Message>>>;

/// The (partition, offset) of each batch a batch callback was given.
type Batches = Arc<Mutex<Vec<Vec<(i32, i64)>>>>;

/// Decoded values by offset, as a typed handler saw them.
type SeenValues<T> = Arc<Mutex<Vec<(i64, T)>>>;

fn recording(seen: &Seen) -> impl FnMut(&Message) -> Result<(), std::io::Error> + Send + 'static {
    let seen = Arc::clone(seen);
    move |m: &Message| {
        seen.lock().unwrap().push(m.clone());
        Ok(())
    }
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn offsets(seen: &Seen) -> Vec<(i32, i64)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|m| (m.partition(), m.offset()))
        .collect()
}

fn fill(f: &dyn Fixture, topic: &str, partitions: i32, per_partition: usize) {
    for p in 0..partitions {
        let records = (0..per_partition)
            .map(|i| TestRecord::payload(&format!("p{p}-{i}")))
            .collect();
        f.produce(topic, p, records);
    }
}

/// Runs a manager until it has seen `n` messages, then stops it.
fn consume(f: &dyn Fixture, group: &str, topic: &str, n: usize, policy: CommitPolicy) -> Seen {
    let seen: Seen = Arc::default();
    let m = ThreadManager::builder(f.source(group, topic, OffsetReset::Earliest))
        .callback(recording(&seen))
        .commit_policy(policy)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    m.start().unwrap();
    wait_for(f.patience() * 4, &format!("{n} messages"), || {
        seen.lock().unwrap().len() >= n
    });
    let report = m.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    seen
}

// ---- the behaviours -------------------------------------------------------------

/// Lifecycle: start, run, end by lifetime, with the report saying why.
pub fn lifecycle_and_lifetime(f: &dyn Fixture) {
    let topic = f.topic("life");
    f.create_topic(&topic, 1);
    fill(f, &topic, 1, 3);
    let seen: Seen = Arc::default();
    let m = ThreadManager::builder(f.source(&unique(), &topic, OffsetReset::Earliest))
        .callback(recording(&seen))
        .thread_lifetime(f.patience() * 2)
        .build()
        .unwrap();
    assert_eq!(m.state(), State::Created);
    m.start().unwrap();
    assert_eq!(m.state(), State::Running);
    let report = m.wait(Some(f.patience() * 6)).unwrap();
    assert_eq!(report.reason, StopReason::LifetimeExpired);
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(offsets(&seen), vec![(0, 0), (0, 1), (0, 2)]);
    assert!(m.start().is_err(), "no restart after the end");
}

/// `stop()` does not wait out the poll timeout.
pub fn stop_latency_is_bounded(f: &dyn Fixture) {
    let topic = f.topic("stop");
    f.create_topic(&topic, 1);
    let m = ThreadManager::builder(f.source(&unique(), &topic, OffsetReset::Earliest))
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
        .poll_timeout(Duration::from_secs(3600))
        .thread_lifetime(None)
        .build()
        .unwrap();
    m.start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    m.stop().unwrap();
    // A bound on behaviour (an hour-long poll must not be waited out), not a speed target.
    assert!(
        t.elapsed() < f.patience() * 2,
        "stop took {:?}",
        t.elapsed()
    );
}

/// A failing callback: nothing past it is committed; a restart redelivers it.
pub fn at_least_once_under_callback_failure(f: &dyn Fixture) {
    let topic = f.topic("fail");
    let group = unique();
    f.create_topic(&topic, 1);
    fill(f, &topic, 1, 10);
    let m = ThreadManager::builder(f.source(&group, &topic, OffsetReset::Earliest))
        .callback(|m: &Message| -> Result<(), String> {
            if m.offset() == 6 {
                Err("downstream unavailable".into())
            } else {
                Ok(())
            }
        })
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(f.patience() * 4)).unwrap();
    assert_eq!(report.final_state, State::Failed);
    assert!(matches!(report.reason, StopReason::CallbackFailed(ref c) if c.offset == 6));
    let again = consume(f, &group, &topic, 4, CommitPolicy::EveryMessage);
    assert_eq!(
        offsets(&again),
        vec![(0, 6), (0, 7), (0, 8), (0, 9)],
        "resumes at the failed message"
    );
}

/// What was handled is committed on stop; a restart resumes right after it.
pub fn commit_on_stop_and_resume(f: &dyn Fixture) {
    let topic = f.topic("resume");
    let group = unique();
    f.create_topic(&topic, 2);
    fill(f, &topic, 2, 20);
    let first = consume(
        f,
        &group,
        &topic,
        10,
        CommitPolicy::Interval(Duration::from_secs(3600)),
    );
    let handled: BTreeSet<(i32, i64)> = offsets(&first).into_iter().collect();
    let rest = consume(
        f,
        &group,
        &topic,
        40 - handled.len(),
        CommitPolicy::EveryMessage,
    );
    let again: Vec<(i32, i64)> = offsets(&rest);
    for o in &again {
        assert!(
            !handled.contains(o),
            "{o:?} was handled and committed, yet redelivered"
        );
    }
    let all: BTreeSet<(i32, i64)> = handled.iter().copied().chain(again).collect();
    assert_eq!(all.len(), 40, "nothing lost");
}

/// A second member joins: the first commits what it handled before giving partitions up.
pub fn commit_on_revoke(f: &dyn Fixture) {
    if !f.caps().rebalance {
        eprintln!(
            "SKIP commit_on_revoke on {}: the fixture declares no rebalance support",
            f.name()
        );
        return;
    }
    let topic = f.topic("revoke");
    let group = unique();
    f.create_topic(&topic, 4);
    fill(f, &topic, 4, 100);
    let seen: Seen = Arc::default();
    // Slow enough that the first member is still busy when the group has rebalanced:
    // some brokers take seconds to rebalance.
    let work = f.patience() / 750;
    let build = |seen: &Seen| {
        let mut record = recording(seen);
        ThreadManager::builder(f.source(&group, &topic, OffsetReset::Earliest))
            .callback(move |m: &Message| {
                std::thread::sleep(work);
                record(m)
            })
            .commit_policy(CommitPolicy::Interval(Duration::from_secs(3600)))
            .thread_lifetime(None)
            .poll_timeout(Duration::from_millis(200))
            .build()
            .unwrap()
    };
    let a = build(&seen);
    a.start().unwrap();
    wait_for(f.patience() * 4, "first messages", || {
        seen.lock().unwrap().len() >= 10
    });
    let b = build(&seen);
    b.start().unwrap();
    wait_for(f.patience() * 2, "the second member's assignment", || {
        !b.stats().assignment.is_empty()
    });
    wait_for(f.patience() * 8, "all 400 messages", || {
        offsets(&seen).into_iter().collect::<BTreeSet<_>>().len() >= 400
    });
    a.stop().unwrap();
    b.stop().unwrap();
    assert!(
        a.stats().counts.rebalances >= 2,
        "the first member gave partitions up"
    );
    let all = offsets(&seen);
    let unique: BTreeSet<_> = all.iter().copied().collect();
    // Only messages in flight at the revoke (handled after the last store) may repeat:
    // at most one poll's batch per partition; a revoke that committed nothing would
    // repeat everything the first member handled.
    let handled_by_a = a.stats().counts.messages_handled as usize;
    let duplicates = all.len() - unique.len();
    assert!(
        duplicates < handled_by_a.min(200),
        "{duplicates} duplicates of {handled_by_a} handled by the first member"
    );
}

/// Keys, headers, and null versus empty payloads arrive as produced.
pub fn keys_headers_and_payloads(f: &dyn Fixture) {
    let topic = f.topic("fields");
    f.create_topic(&topic, 1);
    let records = vec![
        TestRecord {
            key: Some(Bytes::from_static(b"k1")),
            payload: Some(Bytes::from_static(b"v1")),
            headers: vec![("h".into(), Bytes::from_static(b"x"))],
        },
        TestRecord {
            key: None,
            payload: None,
            headers: vec![],
        },
        TestRecord {
            key: Some(Bytes::from_static(b"")),
            payload: Some(Bytes::new()),
            headers: vec![
                ("a".into(), Bytes::new()),
                ("b".into(), Bytes::from_static(b"2")),
            ],
        },
    ];
    f.produce(&topic, 0, records);
    let seen = consume(f, &unique(), &topic, 3, CommitPolicy::EveryMessage);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].key(), Some(&b"k1"[..]));
    assert_eq!(seen[0].payload(), Some(&b"v1"[..]));
    assert_eq!(seen[0].headers()[0].key, "h");
    assert_eq!(seen[0].headers()[0].value.as_deref(), Some(&b"x"[..]));
    assert_eq!(seen[1].payload(), None, "null payload stays null");
    assert_eq!(seen[1].key(), None);
    assert_eq!(
        seen[2].payload(),
        Some(&b""[..]),
        "empty payload stays empty"
    );
    let names: Vec<&str> = seen[2].headers().iter().map(|h| h.key.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
}

/// `earliest`, `latest` and `none` without a committed offset.
pub fn offset_reset_policies(f: &dyn Fixture) {
    let topic = f.topic("reset");
    f.create_topic(&topic, 1);
    fill(f, &topic, 1, 5);
    let earliest = consume(f, &unique(), &topic, 5, CommitPolicy::EveryMessage);
    assert_eq!(offsets(&earliest)[0], (0, 0));

    let seen: Seen = Arc::default();
    let latest = ThreadManager::builder(f.source(&unique(), &topic, OffsetReset::Latest))
        .callback(recording(&seen))
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    latest.start().unwrap();
    wait_for(f.patience() * 4, "assignment", || {
        !latest.stats().assignment.is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    f.produce(&topic, 0, vec![TestRecord::payload("after")]);
    wait_for(f.patience() * 4, "the new message", || {
        !seen.lock().unwrap().is_empty()
    });
    latest.stop().unwrap();
    assert_eq!(
        offsets(&seen),
        vec![(0, 5)],
        "latest skips the backlog, not new messages"
    );

    let none = ThreadManager::builder(f.source(&unique(), &topic, OffsetReset::None))
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
        .thread_lifetime(None)
        .build()
        .unwrap();
    none.start().unwrap();
    let report = none.wait(Some(f.patience() * 4)).unwrap();
    assert_eq!(report.final_state, State::Failed, "{report:?}");
    assert!(
        matches!(report.reason, StopReason::SourceFailed(ref s) if s.to_string().contains("offset reset is none")),
        "{report:?}"
    );
}

/// Bad configuration is a typed error at build time, with a clear message.
pub fn bad_config_errors(f: &dyn Fixture) {
    let cases = f.bad_configs();
    assert!(
        !cases.is_empty(),
        "{} declares no bad configurations",
        f.name()
    );
    for (fragment, message) in cases {
        assert!(
            message.contains(fragment),
            "{}: {message:?} should mention {fragment:?}",
            f.name()
        );
    }
}

/// The three failure policies after retries, on 100 messages where offset 10 always
/// fails and two retries are allowed.
pub fn failure_policies(f: &dyn Fixture) {
    for policy in ["dead-letter", "skip", "stop"] {
        failure_policy_run(f, policy);
    }
}

fn failure_policy_run(f: &dyn Fixture, policy: &str) {
    let topic = f.topic(&format!("policy-{policy}"));
    let dead_letters = format!("{topic}.dlq");
    f.create_topic(&topic, 1);
    f.create_topic(&dead_letters, 1);
    let records = (0..100)
        .map(|i| TestRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            payload: Some(Bytes::from(format!("m{i}"))),
            headers: vec![("trace".into(), Bytes::from(format!("t{i}")))],
        })
        .collect();
    f.produce(&topic, 0, records);
    let attempts: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(vec![0; 100]));
    let counted = Arc::clone(&attempts);
    let failure_policy = match policy {
        "dead-letter" => FailurePolicy::DeadLetter(DeadLetter::new(f.dead_letter_producer())),
        "skip" => FailurePolicy::Skip,
        _ => FailurePolicy::Stop,
    };
    let m = ThreadManager::builder(f.source(&unique(), &topic, OffsetReset::Earliest))
        .callback(move |m: &Message| -> Result<(), String> {
            counted.lock().unwrap()[m.offset() as usize] += 1;
            if m.offset() == 10 {
                Err("offset 10 is poison".into())
            } else {
                Ok(())
            }
        })
        .retry_policy(
            RetryPolicy::retries(2).backoff(Duration::from_millis(20), Duration::from_millis(100)),
        )
        .failure_policy(failure_policy)
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    m.start().unwrap();
    let tp = TopicPartition::new(topic.as_str(), 0);
    let report = if policy == "stop" {
        m.wait(Some(f.patience() * 4)).unwrap()
    } else {
        wait_for(f.patience() * 4, "offset 100 committed", || {
            m.stats().committed.get(&tp) == Some(100)
        });
        m.stop().unwrap()
    };
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts[10], 3, "{policy}: offset 10 is tried 1 + 2 times");
    let dead = f.read_all(&dead_letters, 0);
    match policy {
        "stop" => {
            assert_eq!(report.final_state, State::Failed, "{report:?}");
            assert!(
                matches!(report.reason, StopReason::CallbackFailed(ref c) if c.offset == 10),
                "{report:?}"
            );
            assert_eq!(
                report.committed.get(&tp),
                Some(10),
                "nothing past the failure"
            );
            assert!(attempts[..10].iter().all(|&n| n == 1), "{attempts:?}");
            assert!(
                attempts[11..].iter().all(|&n| n == 0),
                "order is kept: {attempts:?}"
            );
            assert!(dead.is_empty());
        }
        _ => {
            assert_eq!(report.final_state, State::Stopped, "{report:?}");
            assert_eq!(report.committed.get(&tp), Some(100));
            let others = attempts.iter().enumerate().filter(|(i, _)| *i != 10);
            assert!(others.clone().all(|(_, &n)| n == 1), "{attempts:?}");
            assert_eq!(report.counts.retries, 2);
            assert_eq!(report.counts.callback_failures, 3);
            let partition = m.stats().partitions;
            let p = partition.iter().find(|p| p.tp == tp).unwrap();
            assert_eq!((p.failures, p.retries), (3, 2), "{p:?}");
            if policy == "skip" {
                assert_eq!(
                    (
                        report.counts.skipped,
                        report.counts.dead_lettered,
                        p.skipped
                    ),
                    (1, 0, 1)
                );
                assert!(dead.is_empty());
            } else {
                assert_eq!(
                    (
                        report.counts.skipped,
                        report.counts.dead_lettered,
                        p.dead_lettered
                    ),
                    (0, 1, 1)
                );
                assert_eq!(dead.len(), 1, "exactly one dead letter: {dead:?}");
                let d = &dead[0];
                assert_eq!(d.payload.as_deref(), Some(&b"m10"[..]));
                assert_eq!(d.key.as_deref(), Some(&b"k10"[..]));
                assert_eq!(d.header("trace"), Some(&b"t10"[..]));
                assert_eq!(d.header("ktm.dlq.source.topic"), Some(topic.as_bytes()));
                assert_eq!(d.header("ktm.dlq.source.partition"), Some(&b"0"[..]));
                assert_eq!(d.header("ktm.dlq.source.offset"), Some(&b"10"[..]));
                assert_eq!(d.header("ktm.dlq.attempts"), Some(&b"3"[..]));
                assert_eq!(d.header("ktm.dlq.error"), Some(&b"offset 10 is poison"[..]));
            }
        }
    }
}

/// Runs a typed handler over `topic`'s one partition up to `end` under the dead-letter
/// policy (with retries allowed, so a retry would show) and checks what every typed case
/// expects: the `expected` values reached the handler once each, in order; every other
/// offset was dead-lettered once as undecodable and never retried; the counters agree.
/// Returns the dead letters' offsets and errors, in order.
pub(crate) fn run_typed<D>(
    f: &dyn Fixture,
    topic: &str,
    end: i64,
    decoder: D,
    expected: &[(i64, D::Output)],
) -> Vec<(i64, String)>
where
    D: Decode,
    D::Output: PartialEq + std::fmt::Debug + Send + 'static,
{
    let seen: SeenValues<D::Output> = Arc::default();
    let sink = Arc::clone(&seen);
    let m = ThreadManager::builder(f.source(&unique(), topic, OffsetReset::Earliest))
        .handler(Typed::new(decoder, move |value, msg| {
            sink.lock().unwrap().push((msg.offset(), value));
        }))
        .retry_policy(
            RetryPolicy::retries(3).backoff(Duration::from_millis(20), Duration::from_millis(100)),
        )
        .failure_policy(FailurePolicy::DeadLetter(DeadLetter::new(
            f.dead_letter_producer(),
        )))
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    m.start().unwrap();
    let tp = TopicPartition::new(topic, 0);
    wait_for(f.patience() * 4, "every offset committed", || {
        m.stats().committed.get(&tp) == Some(end)
    });
    let report = m.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        expected,
        "every valid record, typed, once"
    );
    let bad = end as u64 - expected.len() as u64;
    let c = report.counts;
    assert_eq!(
        (
            c.decode_failures,
            c.dead_lettered,
            c.retries,
            c.callback_failures
        ),
        (bad, bad, 0, 0),
        "{c:?}"
    );
    let dead: Vec<(i64, String)> = f
        .read_all(&format!("{topic}.dlq"), 0)
        .iter()
        .map(|d| {
            let text = |k: &str| String::from_utf8_lossy(d.header(k).unwrap()).into_owned();
            assert_eq!(text("ktm.dlq.failure.kind"), "undecodable");
            assert_eq!(text("ktm.dlq.attempts"), "1", "never retried");
            (
                text("ktm.dlq.source.offset").parse().unwrap(),
                text("ktm.dlq.error"),
            )
        })
        .collect();
    assert_eq!(
        dead.len() as u64,
        bad,
        "each undecodable record dead-lettered once"
    );
    dead
}

/// Typed handlers: the payload is decoded (here as UTF-8) before the handler runs. A
/// record that does not decode (bad bytes, a tombstone) never reaches the handler: it is
/// dead-lettered at once with the decode error, never retried, counted as a decode
/// failure, and the commit moves past it.
pub fn typed_handler(f: &dyn Fixture) {
    let topic = f.topic("typed");
    let dead_letters = format!("{topic}.dlq");
    f.create_topic(&topic, 1);
    f.create_topic(&dead_letters, 1);
    let undecodable = |i: usize| i % 7 == 3 || i == 20;
    let records = (0..40)
        .map(|i| match i {
            20 => TestRecord::default(), // a tombstone: no payload to decode
            i if undecodable(i) => TestRecord {
                payload: Some(Bytes::from_static(b"\xff\xfe not UTF-8")),
                ..TestRecord::default()
            },
            i => TestRecord::payload(&format!("text {i} \u{e9}")),
        })
        .collect();
    f.produce(&topic, 0, records);
    let expected: Vec<(i64, String)> = (0..40)
        .filter(|&i| !undecodable(i))
        .map(|i| (i as i64, format!("text {i} \u{e9}")))
        .collect();
    let dead = run_typed(f, &topic, 40, Utf8, &expected);
    let bad: Vec<i64> = (0..40)
        .filter(|&i| undecodable(i))
        .map(|i| i as i64)
        .collect();
    let offsets: Vec<i64> = dead.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets, bad,
        "each undecodable record dead-lettered once, in order"
    );
    let error = |i: usize| dead[i].1.clone();
    assert!(error(0).contains("UTF-8"), "{}", error(0));
    let tombstone = bad.iter().position(|&o| o == 20).unwrap();
    assert!(
        error(tombstone).contains("no payload"),
        "{}",
        error(tombstone)
    );
}

/// A topic mixing JSON and schema-registry Avro records, valid and not: see
/// `mixed_payloads.rs`. Needs the `json`, `avro` and `schema-registry` features (CI runs
/// with all of them).
pub fn mixed_payloads(f: &dyn Fixture) {
    #[cfg(all(feature = "json", feature = "avro", feature = "schema-registry"))]
    mixed_payloads::run(f);
    #[cfg(not(all(feature = "json", feature = "avro", feature = "schema-registry")))]
    println!(
        "skipped mixed_payloads on {}: needs the json, avro and schema-registry features",
        f.name()
    );
}

#[cfg(all(feature = "json", feature = "avro", feature = "schema-registry"))]
mod mixed_payloads;

/// The worker pool: per-partition order on parallel workers, with queues so small that
/// partitions are paused and resumed at the source; what was handled is committed, and
/// a batch callback in the same group resumes right after it, in ordered batches.
pub fn worker_pool(f: &dyn Fixture) {
    let topic = f.topic("pool");
    let group = unique();
    pool_in_partition_order(f, &topic, &group, |builder, pool, sink| {
        builder.parallel_callback(pool, move |m: &Message| -> Result<(), std::io::Error> {
            std::thread::sleep(Duration::from_millis(2));
            sink.lock().unwrap().push(m.clone());
            Ok(())
        })
    });

    for p in 0..3 {
        let more = (60..80)
            .map(|i| TestRecord::payload(&format!("p{p}-{i}")))
            .collect();
        f.produce(&topic, p, more);
    }
    let batches: Batches = Arc::default();
    let sink = Arc::clone(&batches);
    let m = ThreadManager::builder(f.source(&group, &topic, OffsetReset::Earliest))
        .parallel_batch_callback(
            WorkerPool::new(2).max_batch(8),
            move |batch: &[Message]| -> Result<(), std::io::Error> {
                let b = batch.iter().map(|m| (m.partition(), m.offset())).collect();
                sink.lock().unwrap().push(b);
                Ok(())
            },
        )
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    m.start().unwrap();
    let count = || batches.lock().unwrap().iter().map(Vec::len).sum::<usize>();
    wait_for(f.patience() * 4, "60 more messages", || count() >= 60);
    m.stop().unwrap();
    let batches = batches.lock().unwrap().clone();
    let mut resumed: Vec<(i32, i64)> = Vec::new();
    for b in &batches {
        assert!(b.len() <= 8 && b.iter().all(|(p, _)| *p == b[0].0), "{b:?}");
        assert!(
            b.windows(2).all(|w| w[1].1 == w[0].1 + 1),
            "consecutive: {b:?}"
        );
        resumed.extend(b);
    }
    resumed.sort_unstable();
    let expected: Vec<(i32, i64)> = (0..3).flat_map(|p| (60..80).map(move |o| (p, o))).collect();
    assert_eq!(
        resumed, expected,
        "resumed right after the committed positions"
    );
}

/// The worker pool with an async callback: the same order and commits as
/// [`worker_pool`]'s first half, each future driven on its worker's own runtime.
pub fn worker_pool_async(f: &dyn Fixture) {
    let topic = f.topic("pool-async");
    let group = unique();
    pool_in_partition_order(f, &topic, &group, |builder, pool, sink| {
        builder.parallel_async_callback(pool, move |m| {
            let sink = Arc::clone(&sink);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                sink.lock().unwrap().push(m);
            }
        })
    });
}

/// Runs `handler` (given the builder, a pool of 3 workers with queues of 4, and where to
/// record each message) over 3 partitions of 60 messages in `group` until all 180 were
/// seen, then stops: each partition in order, once, and committed to 60.
fn pool_in_partition_order(
    f: &dyn Fixture,
    topic: &str,
    group: &str,
    handler: impl FnOnce(ThreadManagerBuilder, WorkerPool, Seen) -> ThreadManagerBuilder,
) {
    f.create_topic(topic, 3);
    fill(f, topic, 3, 60);
    let seen: Seen = Arc::default();
    let builder = ThreadManager::builder(f.source(group, topic, OffsetReset::Earliest));
    let m = handler(
        builder,
        WorkerPool::new(3).queue_capacity(4),
        Arc::clone(&seen),
    )
    .commit_policy(CommitPolicy::Interval(Duration::from_secs(3600)))
    .thread_lifetime(None)
    .poll_timeout(Duration::from_millis(200))
    .build()
    .unwrap();
    m.start().unwrap();
    wait_for(f.patience() * 4, "180 messages", || {
        seen.lock().unwrap().len() >= 180
    });
    let report = m.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    for p in 0..3 {
        let got: Vec<i64> = offsets(&seen)
            .into_iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| o)
            .collect();
        assert_eq!(
            got,
            (0..60).collect::<Vec<_>>(),
            "partition {p}: in order, once"
        );
        let tp = TopicPartition::new(topic, p);
        assert_eq!(
            report.committed.get(&tp),
            Some(60),
            "partition {p} committed"
        );
    }
}

/// Declares one `#[test]` per behaviour for a fixture expression of type
/// `Option<impl Fixture>` (`None`: no broker; the reason is printed by the fixture).
#[macro_export]
macro_rules! behaviour_suite {
    ($fixture:expr) => {
        $crate::behaviour_suite!(@tests $fixture;
            lifecycle_and_lifetime, stop_latency_is_bounded, at_least_once_under_callback_failure,
            commit_on_stop_and_resume, commit_on_revoke, keys_headers_and_payloads,
            offset_reset_policies, bad_config_errors, failure_policies, typed_handler, mixed_payloads, worker_pool,
            worker_pool_async);
    };
    (@tests $fixture:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                if let Some(f) = $fixture {
                    behaviour::$name(&f);
                }
            }
        )*
    };
}

#[cfg(any(feature = "rskafka", feature = "rdkafka"))]
pub mod broker_fixture;
