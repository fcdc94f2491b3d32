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
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_thread_manager::rdkafka::RdkafkaSource;
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{
    CommitPolicy, Message, MessageSource, OffsetReset, State, StopReport, ThreadManager,
    TopicPartition,
};
use rskafka::client::partition::Compression;
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

// ---- a Tansu broker of the test's own --------------------------------------------

/// A Tansu child process with SQLite storage in a directory of its own; killed on drop.
struct Tansu {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it has been started (names each run's log).
    starts: u32,
}

impl Tansu {
    /// Starts one; `None` (with the reason printed) without `tansu` on PATH.
    fn start(test: &str) -> Option<Self> {
        if !on_path("tansu") {
            eprintln!("SKIP {test}: no `tansu` on PATH (scripts/tansu.sh install)");
            return None;
        }
        let dir = std::env::temp_dir().join(unique(&format!("ktm-restart-{test}")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut tansu = Self {
            port: free_port(),
            dir,
            child: None,
            starts: 0,
        };
        tansu.spawn();
        Some(tansu)
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process and waits for its "ready in" line.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        self.starts += 1;
        let log_path = self.dir.join(format!("broker-{}.log", self.starts));
        let log = std::fs::File::create(&log_path).unwrap();
        let url = format!("tcp://{}", self.bootstrap());
        // Tansu 0.6.0 opens the path of a `sqlite://` URL relative to its working
        // directory (`sqlite:///tmp/x.db` opens `$PWD/tmp/x.db`): run it in `dir`.
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("ready in") {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "tansu (start {}) did not get ready (exit: {exited:?}); log:\n{text}",
                self.starts
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL: no orderly shutdown) and waits for it to exit.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker, checks that its port is closed, and starts it again on the
    /// same port and the same database file.
    fn restart(&mut self) {
        self.kill();
        assert!(
            std::net::TcpStream::connect(self.bootstrap()).is_err(),
            "the killed broker's port still accepts connections"
        );
        self.spawn();
    }

    /// Every log the broker wrote, for a failure message.
    fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let path = self.dir.join(format!("broker-{n}.log"));
                format!(
                    "--- {} ---\n{}",
                    path.display(),
                    std::fs::read_to_string(&path).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "broker directory kept: {}\n{}",
                self.dir.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

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
    assert_eq!(report.callback_failures, 0, "{report:?}");
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
        report.poll_errors,
        report.commit_errors
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
