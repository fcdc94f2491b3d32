//! SIGTERM to a child process that runs `run_until_shutdown_signal` with the rskafka
//! backend against a real broker, then the group's committed offsets read back from
//! the broker (through librdkafka's OffsetFetch, an independent client):
//!
//! - one SIGTERM: the child exits 0 and has committed exactly every message it handled
//!   (last handled + 1 on each partition), though its commit policy never commits while
//!   it runs, so the stop made the commit;
//! - a second SIGTERM while the stop waits for a callback stuck on one message: the
//!   child exits at once (status 143), and nothing at or past the stuck message, nor
//!   past what was handled elsewhere, is committed.
//!
//! The child is this test binary run again (`--exact signal_child`), told what to do by
//! `KTM_SIGNAL_CHILD`, so no extra binary ships. Both tests run on librdkafka's mock
//! cluster (in this process; the child reaches it over TCP) and, when
//! `KAFKA_BOOTSTRAP_SERVERS` names one, on a real broker too.
#![cfg(all(unix, feature = "signals", feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_thread_manager::rdkafka::rdkafka::consumer::{BaseConsumer, Consumer};
use kafka_thread_manager::rdkafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{CommitPolicy, Message, OffsetReset, ThreadManager};
use support::KafkaBroker;

/// What the child is to do: `bootstrap topic group mode`, mode `graceful` or
/// `stuck:<partition>:<offset>`.
const CHILD_ENV: &str = "KTM_SIGNAL_CHILD";
const CHILD_TEST: &str = "signal_child";
const PARTITIONS: i32 = 2;
/// The mock cluster holds a group's first join for the session timeout less a second.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long the child may take to exit after the signal that should end it.
const EXIT_WITHIN: Duration = Duration::from_secs(15);
/// How long the stuck callback would block: far past `EXIT_WITHIN`.
const STUCK_FOR: Duration = Duration::from_secs(120);

/// The child's side: runs only when re-executed by a test below (with `--ignored`).
#[test]
#[ignore = "the child process of the tests below, which run it with --ignored"]
fn signal_child() {
    let spec = std::env::var(CHILD_ENV)
        .unwrap_or_else(|_| panic!("{CHILD_ENV} is not set: run by the tests of this file"));
    let args: Vec<&str> = spec.split(' ').collect();
    let [bootstrap, topic, group, mode] = args[..] else {
        panic!("{CHILD_ENV}={spec:?}: expected `bootstrap topic group mode`");
    };
    let stuck: Option<(i32, i64)> = mode.strip_prefix("stuck:").map(|at| {
        let (p, o) = at.split_once(':').unwrap();
        (p.parse().unwrap(), o.parse().unwrap())
    });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter("info")
        .init();

    let source = RskafkaSource::builder()
        .config(support::consumer_config(
            bootstrap,
            topic,
            group,
            OffsetReset::Earliest,
        ))
        .build()
        .unwrap();
    let manager = ThreadManager::builder(source)
        .callback(move |msg: &Message| -> Result<(), std::io::Error> {
            let at = (msg.partition(), msg.offset());
            let mut out = std::io::stdout().lock();
            if Some(at) == stuck {
                writeln!(out, "STUCK {} {}", at.0, at.1)?;
                out.flush()?;
                drop(out);
                std::thread::sleep(STUCK_FOR);
            } else {
                // Slow enough that the stop lands mid-stream.
                std::thread::sleep(Duration::from_millis(10));
            }
            writeln!(std::io::stdout(), "HANDLED {} {}", at.0, at.1)?;
            std::io::stdout().flush()
        })
        .commit_policy(match stuck {
            // Commits only on stop: what is committed, the stop committed.
            None => CommitPolicy::Interval(Duration::from_secs(3600)),
            Some(_) => CommitPolicy::EveryMessage,
        })
        .thread_lifetime(None)
        .build()
        .unwrap();
    let outcome = manager.run_until_shutdown_signal().unwrap();
    println!("OUTCOME {outcome:?}");
    std::process::exit(outcome.exit_code());
}

#[test]
fn sigterm_commits_every_handled_message_and_nothing_more() {
    on_each_broker(
        "sigterm_commits_every_handled_message_and_nothing_more",
        |broker| {
            let (topic, group) = (unique("sigterm"), unique("sigterm-group"));
            broker.create_topic(&topic, PARTITIONS);
            broker.fill(&topic, PARTITIONS, 100, 16);

            let mut child = ChildRun::spawn(&broker.bootstrap, &topic, &group, "graceful");
            // The backend may serve one partition's backlog before the other's: signal
            // once both are under way, so both have something to commit.
            child.until("messages handled on every partition", |run| {
                (0..PARTITIONS).all(|p| run.handled.iter().filter(|h| h.0 == p).count() >= 3)
            });
            child.signal("TERM");
            let status = child.exit_within(EXIT_WITHIN);

            assert_eq!(
                status.code(),
                Some(0),
                "{status}; child output:\n{}",
                child.log()
            );
            let last = child.last_handled();
            assert!(
                child.handled_count() < 2 * 100,
                "the stop should land mid-stream; child output:\n{}",
                child.log()
            );
            let committed = committed_offsets(&broker.bootstrap, &topic, &group);
            for p in 0..PARTITIONS {
                assert_eq!(
                    committed[&p],
                    last.get(&p).map(|o| o + 1),
                    "partition {p}: committed vs last handled + 1; child output:\n{}",
                    child.log()
                );
            }
            eprintln!("committed {committed:?} after handling up to {last:?}");
        },
    );
}

#[test]
fn a_second_sigterm_ends_a_stop_stuck_in_a_callback() {
    on_each_broker(
        "a_second_sigterm_ends_a_stop_stuck_in_a_callback",
        |broker| {
            const STUCK: (i32, i64) = (0, 5);
            let (topic, group) = (unique("second-sigterm"), unique("second-sigterm-group"));
            broker.create_topic(&topic, PARTITIONS);
            broker.fill(&topic, PARTITIONS, 50, 16);

            let mode = format!("stuck:{}:{}", STUCK.0, STUCK.1);
            let mut child = ChildRun::spawn(&broker.bootstrap, &topic, &group, &mode);
            child.until("the stuck callback", |run| run.stuck);
            child.signal("TERM");
            // A second signal counts once the first was read (the stop is logged).
            child.until("the stop to begin", |run| run.stopping);
            let second_sent = Instant::now();
            child.signal("TERM");
            let status = child.exit_within(EXIT_WITHIN);
            let exited_after = second_sent.elapsed();

            assert_eq!(
                status.code(),
                Some(128 + 15),
                "{status}; child output:\n{}",
                child.log()
            );
            assert!(
                exited_after < STUCK_FOR / 4,
                "exited after {exited_after:?}"
            );
            let last = child.last_handled();
            assert!(
                last.get(&STUCK.0).is_none_or(|&o| o < STUCK.1),
                "the stuck message was reported handled: {last:?}"
            );
            let committed = committed_offsets(&broker.bootstrap, &topic, &group);
            for p in 0..PARTITIONS {
                let limit = last.get(&p).map(|o| o + 1);
                assert!(
                    committed[&p].is_none() || committed[&p] <= limit,
                    "partition {p}: committed {:?} past what was handled (last + 1 = {limit:?})",
                    committed[&p]
                );
            }
            assert!(
                committed[&STUCK.0].is_none_or(|c| c <= STUCK.1),
                "committed {:?} past the stuck message {STUCK:?}",
                committed[&STUCK.0]
            );
            eprintln!("committed {committed:?} after handling up to {last:?}; exited {exited_after:?} after the second SIGTERM");
        },
    );
}

/// Runs `body` on librdkafka's mock cluster, then on the external broker if one is named.
fn on_each_broker(test: &str, body: impl Fn(&KafkaBroker)) {
    if let Some(broker) = KafkaBroker::mock_cluster(test) {
        eprintln!("{test}: on librdkafka's mock cluster");
        body(&broker);
    }
    if let Some(broker) = KafkaBroker::external(test) {
        eprintln!("{test}: on {}", broker.bootstrap);
        body(&broker);
    }
}

/// The group's committed offset per partition (`None`: nothing committed), read from
/// the broker by librdkafka.
fn committed_offsets(bootstrap: &str, topic: &str, group: &str) -> BTreeMap<i32, Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(20))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                Offset::Invalid => None,
                other => panic!(
                    "partition {}: unexpected committed offset {other:?}",
                    e.partition()
                ),
            };
            (e.partition(), offset)
        })
        .collect()
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A line of the child's output.
enum Line {
    Out(String),
    Err(String),
}

/// The child process and what it said so far; killed if the test fails first.
struct ChildRun {
    child: Child,
    lines: Receiver<Line>,
    /// Every line, for failure messages.
    transcript: Vec<String>,
    handled: Vec<(i32, i64)>,
    stuck: bool,
    stopping: bool,
}

impl ChildRun {
    fn spawn(bootstrap: &str, topic: &str, group: &str, mode: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                CHILD_TEST,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{bootstrap} {topic} {group} {mode}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out.send(Line::Out(line));
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(Line::Err(line));
            }
        });
        Self {
            child,
            lines,
            transcript: Vec::new(),
            handled: Vec::new(),
            stuck: false,
            stopping: false,
        }
    }

    fn record(&mut self, line: Line) {
        let (text, is_out) = match line {
            Line::Out(t) => (t, true),
            Line::Err(t) => (t, false),
        };
        if is_out {
            // The harness's `test signal_child ... ` has no newline: it can prefix a line.
            let marked = |marker: &str| {
                let (_, rest) = text.split_once(marker)?;
                let (p, o) = rest.split_once(' ')?;
                Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?))
            };
            if let Some(at) = marked("HANDLED ") {
                self.handled.push(at);
            } else if marked("STUCK ").is_some() {
                self.stuck = true;
            }
        } else if text.contains("received SIGTERM: stopping the Kafka consumer") {
            self.stopping = true;
        }
        self.transcript
            .push(format!("{} {text}", if is_out { "out" } else { "err" }));
    }

    /// Reads the child's output until `done` holds; panics after `PATIENCE`.
    fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.record(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "timed out waiting for {what}; child output:\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "the child ended before {what}; child output:\n{}",
                        self.log()
                    )
                }
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the child to exit (panics after `within`), then reads the rest of
    /// its output.
    fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the child did not exit within {within:?}; child output:\n{}",
                self.log()
            );
            while let Ok(line) = self.lines.try_recv() {
                self.record(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Its pipes are closed: the readers end and the channel disconnects.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.record(line);
        }
        status
    }

    fn handled_count(&self) -> usize {
        self.handled.len()
    }

    /// The last offset handled per partition, checking they came in order from 0.
    fn last_handled(&self) -> BTreeMap<i32, i64> {
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for &(p, o) in &self.handled {
            let expected = last.get(&p).map_or(0, |l| l + 1);
            assert_eq!(
                o,
                expected,
                "partition {p} handled out of order:\n{}",
                self.log()
            );
            last.insert(p, o);
        }
        last
    }

    fn log(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Drop for ChildRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
