//! A broker restart with persistent storage, for both Kafka backends: the test runs a
//! Tansu broker of its own as a child process with SQLite storage, kills it (SIGKILL)
//! and starts it again on the same port and the same database file.
//!
//! A manager in a group handles part of a topic and stops (its `StopReport` names the
//! committed offsets); the broker restarts; more records are produced; a new manager in
//! the same group must start each partition exactly at the committed offset (nothing
//! before the last commit redelivered: `OffsetReset::Earliest` would start it at 0 had
//! the commits been lost) and handle every record from there to the end (nothing lost).
//!
//! Needs `tansu` on PATH (`scripts/tansu.sh install`); without it the tests print
//! `SKIP` and pass. `RUST_LOG=ktm_rskafka=debug,ktm_rdkafka=debug` shows the backends'
//! view; a failing test keeps the broker's directory (logs and database) and names it.
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_thread_manager::rdkafka::RdkafkaSource;
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{
    CommitPolicy, Message, MessageSource, OffsetReset, State, StopReport, ThreadManager,
    TopicPartition,
};
use rskafka::client::partition::Compression;
use support::tansu::{unique, Tansu};
use support::{consumer_config, record, KafkaBroker};

/// For every wait on a condition: generous, so a slow machine does not fail a test.
const PATIENCE: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 2;
/// Per partition, produced before the restart.
const BEFORE: i64 = 40;
/// Per partition, produced after the restart.
const AFTER: i64 = 15;
/// The first manager is stopped (or the broker killed under a running one) once it has
/// handled this many messages of every partition: usually mid-stream (the backends
/// tend to hand over one partition's records before the other's), though the test
/// depends only on something having been committed on every partition.
const HANDLED_FIRST: usize = 5;
/// Callback work per message, so that the stream is still flowing at that point.
const WORK: Duration = Duration::from_millis(25);
/// How long the broker stays down under a running manager.
const DOWN: Duration = Duration::from_secs(3);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---- the sources -----------------------------------------------------------------

type SourceFactory = fn(bootstrap: &str, topic: &str, group: &str) -> Box<dyn MessageSource>;

fn rskafka_source(bootstrap: &str, topic: &str, group: &str) -> Box<dyn MessageSource> {
    Box::new(
        RskafkaSource::builder()
            .config(consumer_config(
                bootstrap,
                topic,
                group,
                OffsetReset::Earliest,
            ))
            .build()
            .expect("valid rskafka config"),
    )
}

fn rdkafka_source(bootstrap: &str, topic: &str, group: &str) -> Box<dyn MessageSource> {
    Box::new(
        RdkafkaSource::builder()
            .config(consumer_config(
                bootstrap,
                topic,
                group,
                OffsetReset::Earliest,
            ))
            .build()
            .expect("valid rdkafka config"),
    )
}

// ---- the scenario ----------------------------------------------------------------

fn payload(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// Produces offsets `from..to` of every partition, one record per batch (Tansu 0.6.0
/// answers a fetch that starts inside a batch wrongly), checking where each lands.
fn produce(broker: &KafkaBroker, topic: &str, from: i64, to: i64) {
    for p in 0..PARTITIONS {
        for offset in from..to {
            let value = payload(topic, p, offset).into_bytes();
            let got = broker.produce(
                topic,
                p,
                vec![record(None, Some(value), BTreeMap::new())],
                Compression::NoCompression,
            );
            assert_eq!(got, vec![offset], "record produced at an unexpected offset");
        }
    }
}

/// After the restart: every record produced before it is still there, with its
/// payload, and [`AFTER`] more per partition follow it. Bounded by [`PATIENCE`]: the
/// support client waits for a missing topic for ever.
fn survived_and_grows(tansu: &Tansu, topic: &str) {
    let bootstrap = tansu.bootstrap();
    let topic = topic.to_owned();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let broker = KafkaBroker::at(bootstrap);
        for p in 0..PARTITIONS {
            let offsets: Vec<i64> = broker
                .read_all(&topic, p)
                .into_iter()
                .map(|(offset, r)| {
                    assert_eq!(
                        r.value,
                        Some(payload(&topic, p, offset).into_bytes()),
                        "partition {p} offset {offset} after the restart"
                    );
                    offset
                })
                .collect();
            assert_eq!(
                offsets,
                (0..BEFORE).collect::<Vec<_>>(),
                "partition {p} after the restart"
            );
        }
        produce(&broker, &topic, BEFORE, BEFORE + AFTER);
        let _ = done.send(());
    });
    match outcome.recv_timeout(PATIENCE) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "reading and producing after the restart took over {PATIENCE:?} \
             (did the topic survive?)"
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("reading or producing after the restart failed (see the panic above)")
        }
    }
}

/// One call of the callback: (partition, offset, payload).
type Handled = Arc<Mutex<Vec<(i32, i64, String)>>>;

/// A started manager in `group` recording every message it handles, committing after
/// each one.
fn manager(source: Box<dyn MessageSource>) -> (ThreadManager, Handled) {
    let handled: Handled = Arc::default();
    let sink = Arc::clone(&handled);
    let manager = ThreadManager::builder(source)
        .callback(move |m: &Message| -> Result<(), std::io::Error> {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            sink.lock()
                .unwrap()
                .push((m.partition(), m.offset(), value));
            std::thread::sleep(WORK);
            Ok(())
        })
        .commit_policy(CommitPolicy::EveryN(1))
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    manager.start().unwrap();
    (manager, handled)
}

/// Waits (up to [`PATIENCE`]) until `done` holds for what the manager has handled.
fn wait_for(
    manager: &ThreadManager,
    handled: &Handled,
    what: &str,
    done: impl Fn(&[(i32, i64, String)]) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if done(&handled.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not done in {PATIENCE:?}; handled {:?}; stats: {:?}",
            offsets_by_partition(&handled.lock().unwrap()),
            manager.stats()
        );
        assert_eq!(manager.state(), State::Running, "{:?}", manager.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(manager: &ThreadManager) -> StopReport {
    let report = manager.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    assert_eq!(report.counts.callback_failures, 0, "{report:?}");
    assert_eq!(report.final_commit_error, None, "{report:?}");
    report
}

/// A Tansu of the test's own on sqlite storage, with a topic of its own (named after
/// `prefix`) holding [`BEFORE`] records per partition, and a group name; `None` (having
/// said why) without tansu.
fn started(test: &str, prefix: &str) -> Option<(Tansu, String, String)> {
    init_tracing();
    let tansu = Tansu::start(test)?;
    let topic = unique(&format!("{prefix}-{test}"));
    let group = unique(&format!("{prefix}-{test}-group"));
    let broker = KafkaBroker::at(tansu.bootstrap());
    broker.create_topic(&topic, PARTITIONS);
    produce(&broker, &topic, 0, BEFORE);
    Some((tansu, topic, group))
}

/// The handled offsets of each partition, in the order handled.
fn offsets_by_partition(handled: &[(i32, i64, String)]) -> BTreeMap<i32, Vec<i64>> {
    let mut out: BTreeMap<i32, Vec<i64>> = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    for (p, offset, _) in handled {
        out.entry(*p).or_default().push(*offset);
    }
    out
}

fn every_partition_has_some(handled: &[(i32, i64, String)]) -> bool {
    offsets_by_partition(handled)
        .values()
        .all(|offsets| offsets.len() >= HANDLED_FIRST)
}

fn check_payloads(topic: &str, handled: &[(i32, i64, String)], who: &str) {
    for (p, offset, value) in handled {
        assert_eq!(
            *value,
            payload(topic, *p, *offset),
            "{who}: wrong payload at partition {p} offset {offset}"
        );
    }
}

fn resumes_at_committed_offsets_after_restart(test: &str, build: SourceFactory) {
    let Some((mut tansu, topic, group)) = started(test, "restart") else {
        return;
    };
    let tp = |p: i32| TopicPartition::new(topic.as_str(), p);

    // Before the restart: a manager handles part of the topic and stops.
    let committed: BTreeMap<i32, i64> = {
        let (first, handled) = manager(build(&tansu.bootstrap(), &topic, &group));
        wait_for(&first, &handled, "first manager", every_partition_has_some);
        let report = stop(&first);
        let handled = handled.lock().unwrap().clone();
        check_payloads(&topic, &handled, "first manager");
        let by_partition = offsets_by_partition(&handled);
        let mut committed = BTreeMap::new();
        for p in 0..PARTITIONS {
            let c = report.committed.get(&tp(p)).unwrap_or(0);
            assert!(
                c > 0,
                "first manager: nothing committed on partition {p}; {report:?}"
            );
            let expected: Vec<i64> = (0..c).collect();
            assert_eq!(
                by_partition[&p], expected,
                "first manager: partition {p} handled otherwise than 0..committed ({c}); {report:?}"
            );
            committed.insert(p, c);
        }
        eprintln!(
            "{test}: first manager handled {} of {} and committed {committed:?}",
            handled.len(),
            i64::from(PARTITIONS) * BEFORE
        );
        committed
    };

    // The restart: same port, same database file.
    tansu.restart();

    survived_and_grows(&tansu, &topic);

    // After the restart: a new member of the same group.
    let (second, handled) = manager(build(&tansu.bootstrap(), &topic, &group));
    let last = BEFORE + AFTER - 1;
    wait_for(&second, &handled, "second manager", |h| {
        (0..PARTITIONS).all(|p| h.iter().any(|(q, offset, _)| *q == p && *offset == last))
    });
    // Nothing beyond the produced records, and no late redelivery, may show up.
    std::thread::sleep(Duration::from_millis(500));
    let report = stop(&second);
    let handled = handled.lock().unwrap().clone();
    check_payloads(&topic, &handled, "second manager");
    let by_partition = offsets_by_partition(&handled);
    for p in 0..PARTITIONS {
        let c = committed[&p];
        let got = &by_partition[&p];
        assert_eq!(
            got.first().copied(),
            Some(c),
            "second manager: partition {p} did not resume at the committed offset {c} \
             (handled {got:?})"
        );
        let expected: Vec<i64> = (c..=last).collect();
        assert_eq!(
            *got, expected,
            "second manager: partition {p} handled otherwise than committed ({c})..={last}"
        );
        assert_eq!(
            report.committed.get(&tp(p)),
            Some(BEFORE + AFTER),
            "second manager: partition {p} final commit; {report:?}"
        );
    }
    // Every record of the topic was handled by one manager or the other, exactly once.
    let distinct: BTreeSet<(i32, i64)> = handled.iter().map(|(p, o, _)| (*p, *o)).collect();
    let total: i64 = committed.values().map(|c| BEFORE + AFTER - c).sum();
    assert_eq!(i64::try_from(distinct.len()).unwrap(), total);
}

/// The broker is killed under a running manager, stays down for [`DOWN`] and comes
/// back on the same storage; the manager goes on. Every record is handled (no gaps),
/// payloads match their offsets, a record is handled again only if it was not yet
/// committed when the broker went down, and the final commit covers everything.
fn keeps_consuming_across_restart(test: &str, build: SourceFactory) {
    let Some((mut tansu, topic, group)) = started(test, "live-restart") else {
        return;
    };
    let tp = |p: i32| TopicPartition::new(topic.as_str(), p);

    let (manager, handled) = manager(build(&tansu.bootstrap(), &topic, &group));
    wait_for(
        &manager,
        &handled,
        "before the restart",
        every_partition_has_some,
    );
    // Commits only grow: whatever is below these was committed before the broker died.
    let stats = manager.stats();
    let committed: BTreeMap<i32, i64> = (0..PARTITIONS)
        .map(|p| (p, stats.committed.get(&tp(p)).unwrap_or(0)))
        .collect();
    tansu.kill();
    std::thread::sleep(DOWN);
    tansu.spawn();
    assert_eq!(manager.state(), State::Running, "{:?}", manager.stats());
    survived_and_grows(&tansu, &topic);

    let last = BEFORE + AFTER - 1;
    wait_for(&manager, &handled, "after the restart", |h| {
        (0..PARTITIONS).all(|p| h.iter().any(|(q, offset, _)| *q == p && *offset == last))
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = stop(&manager);
    let handled = handled.lock().unwrap().clone();
    check_payloads(&topic, &handled, test);
    let by_partition = offsets_by_partition(&handled);
    let mut repeats = 0;
    for p in 0..PARTITIONS {
        let got = &by_partition[&p];
        let distinct: BTreeSet<i64> = got.iter().copied().collect();
        assert_eq!(
            distinct,
            (0..=last).collect::<BTreeSet<_>>(),
            "partition {p}: not every record handled (or one beyond them); handled {got:?}"
        );
        let mut seen = BTreeSet::new();
        for offset in got {
            if !seen.insert(*offset) {
                repeats += 1;
                assert!(
                    *offset >= committed[&p],
                    "partition {p}: offset {offset} handled again although {} was committed \
                     before the restart; handled {got:?}",
                    committed[&p]
                );
            }
        }
        assert_eq!(
            report.committed.get(&tp(p)),
            Some(BEFORE + AFTER),
            "partition {p} final commit; {report:?}"
        );
    }
    eprintln!(
        "{test}: committed {committed:?} when the broker was killed; {} handled, {repeats} \
         again; {} poll errors, {} commit errors",
        handled.len(),
        report.counts.poll_errors,
        report.counts.commit_errors
    );
}

#[test]
fn rskafka_resumes_at_committed_offsets_after_broker_restart() {
    resumes_at_committed_offsets_after_restart("rskafka", rskafka_source);
}

#[test]
fn rdkafka_resumes_at_committed_offsets_after_broker_restart() {
    resumes_at_committed_offsets_after_restart("rdkafka", rdkafka_source);
}

#[test]
fn rskafka_keeps_consuming_across_broker_restart() {
    keeps_consuming_across_restart("rskafka-live", rskafka_source);
}

#[test]
fn rdkafka_keeps_consuming_across_broker_restart() {
    keeps_consuming_across_restart("rdkafka-live", rdkafka_source);
}
