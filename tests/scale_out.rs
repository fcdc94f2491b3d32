#![allow(clippy::unwrap_used)]
//! Scale-out across processes: three consumer processes of one group, each in its own
//! container (a local `FROM scratch` image of this test binary, built by
//! `scripts/consumer-image.sh`, host networking), consume a six-partition topic while it
//! is being produced. One container is killed (`docker kill`, SIGKILL) mid-stream; the
//! other two take over its partitions once its session expires, from its committed
//! positions. Every produced message must be handled, and the only duplicates allowed
//! are the messages the killed process handled after its last commit (its uncommitted
//! window, at most `COMMIT_EVERY` messages since it commits every `COMMIT_EVERY`).
//!
//! Each consumer is this test binary run again as its ignored `scale_out_consumer` test
//! (`--exact scale_out_consumer --ignored`), told what to do by `KTM_SCALE_OUT_CHILD`,
//! so no extra binary ships with the package.
//!
//! Records are produced one per batch: the takeover resumes mid-log, and Tansu 0.6.0
//! answers a fetch that starts inside a batch with garbage.
//!
//! Needs docker (for the broker container and the consumers) and the broker image in
//! `KTM_KAFKA_IMAGE`; skips, saying why, without docker.
#![cfg(feature = "rskafka")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{CommitPolicy, Message, State, ThreadManager};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use support::{record, KafkaBroker};

/// What a consumer process is to do: `bootstrap topic group commit_every lifetime_secs
/// session_timeout_ms`.
const CHILD_ENV: &str = "KTM_SCALE_OUT_CHILD";
const CHILD_TEST: &str = "scale_out_consumer";
const PARTITIONS: i32 = 6;
const CONSUMERS: usize = 3;
const COMMIT_EVERY: u64 = 5;
/// Rounds (one record to each partition) produced after the kill.
const ROUNDS_AFTER_KILL: usize = 150;
/// A bound on the rounds before the kill, whatever happens.
const MAX_ROUNDS: usize = 4_000;
/// Pause between rounds, so that the stream lasts while the group forms.
const ROUND_PAUSE: Duration = Duration::from_millis(15);
/// Until the three consumers share the partitions.
const FORM_PATIENCE: Duration = Duration::from_secs(60);
/// From the kill until every message is handled (session timeout 6 s, rejoins ~3 s).
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(90);
/// The consumers end by themselves after this, should cleanup ever fail.
const CONSUMER_LIFETIME_SECS: u64 = 240;
/// The consumers' session timeout.
const SESSION_TIMEOUT_MS: u64 = 6_000;

/// One member of the group: runs only when re-executed by the test below (with
/// `--ignored`, in a container).
///
/// It runs a [`ThreadManager`] over the rskafka backend and reports on stdout, one
/// flushed line each:
/// - `STARTED` once the manager runs;
/// - `HANDLED <partition> <offset>` for every message, from the callback, so a message
///   is reported before its position can be committed;
/// - `ASSIGNED <p>,<p>,...` when the assignment changes, `COMMITTED <partition>
///   <position>` when a committed position changes and `COMMIT_ERRORS <n>` when failed
///   commits are counted (all sampled from the manager's stats every 20 ms, so they may
///   lag what happened);
/// - `STOPPED <handled>` when the lifetime ran out.
///
/// A lifetime of 0 runs until killed.
#[test]
#[ignore = "a consumer process of killed_consumer_partitions_are_taken_over, which runs it with --ignored"]
fn scale_out_consumer() {
    let spec = std::env::var(CHILD_ENV)
        .unwrap_or_else(|_| panic!("{CHILD_ENV} is not set: run by the test of this file"));
    let args: Vec<&str> = spec.split(' ').collect();
    let [bootstrap, topic, group, commit_every, lifetime_secs, session_timeout_ms] = args[..]
    else {
        panic!(
            "{CHILD_ENV}={spec:?}: expected \
             `bootstrap topic group commit_every lifetime_secs session_timeout_ms`"
        );
    };
    let number = |name: &str, v: &str| -> u64 {
        v.parse()
            .unwrap_or_else(|e| panic!("{CHILD_ENV}: {name} {v:?} is not a number: {e}"))
    };
    let commit_every = number("commit_every", commit_every);
    let lifetime = Duration::from_secs(number("lifetime_secs", lifetime_secs));
    let session_timeout = Duration::from_millis(number("session_timeout_ms", session_timeout_ms));

    // The test harness has written `test scale_out_consumer ... ` without a newline:
    // end that line, so that the first report is a line of its own.
    report(format_args!("")).unwrap();
    let source = RskafkaSource::builder()
        .bootstrap_servers([bootstrap.to_owned()])
        .topics([topic.to_owned()])
        .group_id(group.to_owned())
        .session_timeout(session_timeout)
        .heartbeat_interval(Duration::from_secs(1))
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let manager = ThreadManager::builder(source)
        .callback(|msg: &Message| -> std::io::Result<()> {
            report(format_args!("HANDLED {} {}", msg.partition(), msg.offset()))
        })
        .thread_lifetime(lifetime)
        .commit_policy(CommitPolicy::EveryN(commit_every))
        .build()
        .unwrap();
    manager.start().unwrap();
    report(format_args!("STARTED")).unwrap();

    let mut assignment = Vec::new();
    let mut committed = BTreeMap::new();
    let mut commit_errors = 0;
    loop {
        let stats = manager.stats();
        let now: Vec<i32> = stats.assignment.iter().map(|tp| tp.partition()).collect();
        if now != assignment {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            report(format_args!("ASSIGNED {}", list.join(","))).unwrap();
            assignment = now;
        }
        for (tp, position) in stats.committed.iter() {
            if committed.insert(tp.partition(), position) != Some(position) {
                report(format_args!("COMMITTED {} {position}", tp.partition())).unwrap();
            }
        }
        if stats.counts.commit_errors != commit_errors {
            commit_errors = stats.counts.commit_errors;
            report(format_args!("COMMIT_ERRORS {commit_errors}")).unwrap();
        }
        if !matches!(stats.state, State::Created | State::Running) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = manager.wait(None).unwrap();
    report(format_args!("STOPPED {}", stopped.counts.messages_handled)).unwrap();
    assert!(
        !stopped.reason.is_failure(),
        "the consumer failed: {:?}",
        stopped.reason
    );
}

/// Writes one line to stdout and flushes it, so `docker logs` has it at once.
fn report(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// What one consumer process reported on stdout.
#[derive(Debug, Default)]
struct Report {
    /// In the order handled.
    handled: Vec<(i32, i64)>,
    /// The last assignment reported.
    assignment: Option<Vec<i32>>,
    /// The last committed position reported, per partition.
    committed: BTreeMap<i32, i64>,
    commit_errors: u64,
    started: bool,
}

impl Report {
    fn parse(stdout: &str) -> Self {
        let mut report = Report::default();
        for line in stdout.lines() {
            let mut words = line.split_whitespace();
            let word = words.next();
            let mut number = || -> i64 { words.next().unwrap().parse().unwrap() };
            match word {
                Some("HANDLED") => {
                    let partition = i32::try_from(number()).unwrap();
                    report.handled.push((partition, number()));
                }
                Some("COMMITTED") => {
                    let partition = i32::try_from(number()).unwrap();
                    report.committed.insert(partition, number());
                }
                Some("ASSIGNED") => {
                    let list = line.trim_start_matches("ASSIGNED").trim();
                    report.assignment = Some(
                        list.split(',')
                            .filter(|p| !p.is_empty())
                            .map(|p| p.parse().unwrap())
                            .collect(),
                    );
                }
                Some("COMMIT_ERRORS") => report.commit_errors = number().try_into().unwrap(),
                Some("STARTED") => report.started = true,
                _ => {}
            }
        }
        report
    }
}

/// The consumer containers; removed on drop, also when the test fails.
struct Consumers {
    ids: Vec<String>,
}

impl Consumers {
    /// Starts `count` containers of the image, each running [`scale_out_consumer`] as
    /// `spec` (the value of [`CHILD_ENV`]) says.
    fn start(image: &str, spec: &str, count: usize) -> Self {
        let mut consumers = Consumers { ids: Vec::new() };
        let env = format!("{CHILD_ENV}={spec}");
        for _ in 0..count {
            let out = docker([
                "run",
                "-d",
                "--network",
                "host",
                "-e",
                &env,
                image,
                "--exact",
                CHILD_TEST,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ]);
            consumers.ids.push(out.trim().to_owned());
        }
        consumers
    }

    fn reports(&self) -> Vec<Report> {
        self.ids
            .iter()
            .map(|id| {
                let out = Command::new("docker").args(["logs", id]).output().unwrap();
                assert!(out.status.success(), "docker logs {id} failed");
                Report::parse(&String::from_utf8_lossy(&out.stdout))
            })
            .collect()
    }

    /// What the consumers wrote to stderr, for failure messages.
    fn stderr(&self) -> String {
        self.ids
            .iter()
            .map(|id| {
                let out = Command::new("docker").args(["logs", id]).output().unwrap();
                format!("{id:.12}: {}", String::from_utf8_lossy(&out.stderr))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn running(&self, i: usize) -> bool {
        docker(["inspect", "-f", "{{.State.Running}}", &self.ids[i]]).trim() == "true"
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

fn docker<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The local image of this test binary, which runs as a consumer with the arguments
/// [`Consumers::start`] gives it.
fn consumer_image() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/consumer-image.sh");
    let bin = std::env::current_exe().unwrap();
    let out = Command::new(script).arg(&bin).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Sets the flag when dropped, also on a panic, so that the producer thread ends.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Produces rounds of one record to each partition, each record a batch of its own,
/// until `last_round` rounds are done or `abort` is raised. Returns the offsets produced
/// per partition.
fn produce_rounds(
    broker: &KafkaBroker,
    topic: &str,
    rounds_done: &AtomicUsize,
    last_round: &AtomicUsize,
    abort: &AtomicBool,
) -> BTreeMap<i32, Vec<i64>> {
    let clients: Vec<PartitionClient> = broker.block_on(async {
        let client = ClientBuilder::new(vec![broker.bootstrap.clone()])
            .build()
            .await
            .unwrap();
        let mut clients = Vec::new();
        for p in 0..PARTITIONS {
            clients.push(
                client
                    .partition_client(topic, p, UnknownTopicHandling::Retry)
                    .await
                    .unwrap(),
            );
        }
        clients
    });
    let mut produced: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut round = 0;
    while round < last_round.load(Ordering::SeqCst).min(MAX_ROUNDS) && !abort.load(Ordering::SeqCst)
    {
        broker.block_on(async {
            for (p, client) in (0..PARTITIONS).zip(&clients) {
                let one = record(
                    Some(format!("{p}-{round}").into_bytes()),
                    Some(format!("scale-out message {round} of partition {p}").into_bytes()),
                    BTreeMap::new(),
                );
                let offsets = client
                    .produce(vec![one], Compression::NoCompression)
                    .await
                    .unwrap();
                produced.entry(p).or_default().extend(offsets);
            }
        });
        round += 1;
        rounds_done.store(round, Ordering::SeqCst);
        std::thread::sleep(ROUND_PAUSE);
    }
    produced
}

/// The three members share the six partitions, each has handled some messages.
fn formed(reports: &[Report]) -> bool {
    let mut owned: Vec<i32> = Vec::new();
    for r in reports {
        match &r.assignment {
            Some(a) if !a.is_empty() && r.handled.len() >= 20 => owned.extend(a),
            _ => return false,
        }
    }
    owned.sort_unstable();
    owned == (0..PARTITIONS).collect::<Vec<_>>()
}

#[test]
fn killed_consumer_partitions_are_taken_over() {
    let Some(broker) = KafkaBroker::container("scale_out") else {
        return;
    };
    let image = consumer_image();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("scale-out-{}-{nanos}", std::process::id());
    broker.create_topic(&topic, PARTITIONS);

    let rounds_done = AtomicUsize::new(0);
    let last_round = AtomicUsize::new(usize::MAX);
    let abort = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop_producer = RaiseOnDrop(&abort);
        let producer =
            scope.spawn(|| produce_rounds(&broker, &topic, &rounds_done, &last_round, &abort));

        let spec = format!(
            "{} {topic} {topic}-group {COMMIT_EVERY} {CONSUMER_LIFETIME_SECS} \
             {SESSION_TIMEOUT_MS}",
            broker.bootstrap
        );
        let started = Instant::now();
        let consumers = Consumers::start(&image, &spec, CONSUMERS);

        // Wait for the group of three to form while the stream runs.
        let deadline = Instant::now() + FORM_PATIENCE;
        loop {
            let reports = consumers.reports();
            if formed(&reports) {
                break;
            }
            assert!(
                Instant::now() < deadline && !producer.is_finished(),
                "the three consumers did not share the partitions: {:?}\n{}",
                reports
                    .iter()
                    .map(|r| (r.started, r.assignment.clone(), r.handled.len()))
                    .collect::<Vec<_>>(),
                consumers.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let formed_after = started.elapsed();

        // Kill one mid-stream; the stream goes on for a while.
        const VICTIM: usize = 1;
        docker(["kill", &consumers.ids[VICTIM]]);
        let killed_at = Instant::now();
        let rounds_at_kill = rounds_done.load(Ordering::SeqCst);
        last_round.store(rounds_at_kill + ROUNDS_AFTER_KILL, Ordering::SeqCst);
        let produced = producer.join().unwrap();
        assert!(
            !abort.load(Ordering::SeqCst),
            "the producer was stopped early"
        );
        let total: usize = produced.values().map(Vec::len).sum();
        for (p, offsets) in &produced {
            let want: Vec<i64> = (0..i64::try_from(offsets.len()).unwrap()).collect();
            assert_eq!(offsets, &want, "partition {p} was produced with gaps");
        }
        let produced_set: BTreeSet<(i32, i64)> = produced
            .iter()
            .flat_map(|(p, offsets)| offsets.iter().map(move |o| (*p, *o)))
            .collect();

        // Wait until the union of what the three handled covers everything produced.
        let deadline = killed_at + TAKEOVER_PATIENCE;
        let reports = loop {
            let reports = consumers.reports();
            let handled: BTreeSet<(i32, i64)> = reports
                .iter()
                .flat_map(|r| r.handled.iter().copied())
                .collect();
            let missing: Vec<_> = produced_set.difference(&handled).collect();
            if missing.is_empty() {
                break reports;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {total} messages were never handled within {TAKEOVER_PATIENCE:?} of \
                 the kill, e.g. {:?}\n{}",
                missing.len(),
                &missing[..missing.len().min(10)],
                consumers.stderr()
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        let covered_after_kill = killed_at.elapsed();
        for i in (0..CONSUMERS).filter(|i| *i != VICTIM) {
            assert!(
                consumers.running(i),
                "survivor {i} is not running:\n{}",
                consumers.stderr()
            );
        }

        // Nothing but what was produced.
        for (i, r) in reports.iter().enumerate() {
            for h in &r.handled {
                assert!(
                    produced_set.contains(h),
                    "consumer {i} handled {h:?}, never produced"
                );
            }
        }

        // The survivors took over the victim's partitions, past where it stopped.
        let victim = &reports[VICTIM];
        let victim_partitions = victim.assignment.clone().unwrap();
        assert!(!victim_partitions.is_empty());
        for p in &victim_partitions {
            let victim_last = victim
                .handled
                .iter()
                .filter(|(q, _)| q == p)
                .map(|(_, o)| *o)
                .max()
                .unwrap_or(-1);
            let after = reports
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != VICTIM)
                .flat_map(|(_, r)| r.handled.iter())
                .filter(|(q, o)| q == p && *o > victim_last)
                .count();
            assert!(
                after > 0,
                "no survivor handled partition {p} past the victim's offset {victim_last}"
            );
        }

        // Duplicates: only messages the victim handled after its last commit.
        let mut count: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for r in &reports {
            for h in &r.handled {
                *count.entry(*h).or_default() += 1;
            }
        }
        let duplicates: BTreeMap<(i32, i64), usize> =
            count.into_iter().filter(|(_, n)| *n > 1).collect();
        let extra_handlings: usize = duplicates.values().map(|n| n - 1).sum();
        for (&(p, o), &n) in &duplicates {
            assert_eq!(n, 2, "({p}, {o}) was handled {n} times");
            let victim_offsets: Vec<i64> = victim
                .handled
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, o)| *o)
                .collect();
            assert!(
                victim_offsets.contains(&o),
                "({p}, {o}) was handled twice, but not by the killed consumer"
            );
            // Its window starts at its last reported commit (the reports lag, so the
            // real commit can only be later), else at the first offset it handled.
            let window_start = victim
                .committed
                .get(&p)
                .copied()
                .or_else(|| victim_offsets.iter().min().copied())
                .unwrap();
            assert!(
                o >= window_start,
                "({p}, {o}) was handled twice though the killed consumer had committed \
                 partition {p} up to {window_start}"
            );
        }
        // The manager commits after every COMMIT_EVERY handled messages and before
        // handling more, so at most that many were uncommitted when it died (unless a
        // commit had failed).
        if victim.commit_errors == 0 {
            assert!(
                u64::try_from(extra_handlings).unwrap() <= COMMIT_EVERY,
                "{extra_handlings} duplicates, more than the uncommitted window of \
                 {COMMIT_EVERY}: {duplicates:?}"
            );
        }

        eprintln!(
            "scale_out: {total} messages in {} partitions; group of {CONSUMERS} formed after \
             {formed_after:?}; killed consumer {VICTIM} (partitions {victim_partitions:?}) \
             after round {rounds_at_kill}; everything handled {covered_after_kill:?} after \
             the kill; handled per consumer {:?}; {extra_handlings} duplicates {:?} \
             (uncommitted window <= {COMMIT_EVERY}, victim commit errors {})",
            PARTITIONS,
            reports.iter().map(|r| r.handled.len()).collect::<Vec<_>>(),
            duplicates.keys().collect::<Vec<_>>(),
            victim.commit_errors
        );
    });
}
