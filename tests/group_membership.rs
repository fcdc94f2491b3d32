//! Consumer-group behaviour of the rskafka backend (and of a mixed rskafka/rdkafka
//! group), each test run on two independent brokers: librdkafka's in-process mock
//! cluster always, and the broker named by `KAFKA_BOOTSTRAP_SERVERS` (Tansu in CI) when
//! there is one (the test says so when there is not). Slow callbacks keep their
//! membership (heartbeats do not wait for them), a consumer stuck past
//! `max.poll.interval` leaves and a peer takes over, cooperative rebalances leave
//! retained partitions alone, and static members come back to their partitions.
//! `RUST_LOG=ktm_rskafka=debug KTM_TEST_LOG=stderr` shows the members' view.
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::Captured;
use kafka_thread_manager::rdkafka::RdkafkaSource;
use kafka_thread_manager::rskafka::{Assignor, RskafkaSource};
use kafka_thread_manager::{
    CallbackError, ConsumerConfig, Message, MessageSource, OffsetReset, Offsets, PollBatch,
    SourceError, SourceEvent, State, ThreadManager, TopicPartition, WorkerPool,
};
use support::KafkaBroker;

// ---- brokers, timings, members -----------------------------------------------------

/// A broker to run on, with the timings the tests are built around there.
struct Env {
    broker: KafkaBroker,
    name: &'static str,
    /// The session timeout of every member.
    session: Duration,
    /// How long forming or re-forming the group may take.
    patience: Duration,
}

impl Env {
    fn topic(&self, partitions: i32) -> String {
        let topic = format!("ktm-group-{}", unique());
        self.broker.create_topic(&topic, partitions);
        topic
    }

    /// The settings every member shares: this env's session, heartbeats at a sixth of
    /// it, 50 ms fetch waits, from the earliest offset.
    fn config(&self, topic: &str, group: &str) -> kafka_thread_manager::ConsumerConfigBuilder {
        ConsumerConfig::builder()
            .bootstrap_servers([self.broker.bootstrap.clone()])
            .topics([topic])
            .group_id(group)
            .offset_reset(OffsetReset::Earliest)
            .session_timeout(self.session)
            .heartbeat_interval(self.session / 6)
            .fetch_max_wait(Duration::from_millis(50))
    }

    fn rskafka(&self, config: kafka_thread_manager::ConsumerConfigBuilder) -> RskafkaSource {
        RskafkaSource::builder()
            .config(config.build().unwrap())
            .build()
            .unwrap()
    }

    /// `n` records of 10 bytes to each partition, one produce request (one batch) each.
    fn produce(&self, topic: &str, partitions: i32, n: usize) {
        self.broker.fill(topic, partitions, n, 10);
    }
}

/// The mock cluster, then the external broker if one is named. The mock's first join
/// is held 3 s and a rebalance of a formed group the session less 1 s; Tansu answers a
/// join within half the session and rejoining followers wait about 3 s more.
fn envs(test: &str) -> Vec<Env> {
    let _ = log();
    let mut envs = Vec::new();
    match KafkaBroker::mock_cluster(test) {
        Some(broker) => envs.push(Env {
            broker,
            name: "mock cluster",
            session: Duration::from_secs(3),
            patience: Duration::from_secs(30),
        }),
        None => eprintln!("SKIP {test} on the mock cluster (see above)"),
    }
    if let Some(broker) = KafkaBroker::external(test) {
        envs.push(Env {
            broker,
            name: "external broker",
            session: Duration::from_secs(6),
            patience: Duration::from_secs(60),
        });
    }
    envs
}

/// Whether the external broker is the Tansu that `scripts/test.sh` started (it says so
/// in `KTM_BROKER`), for the few checks its known group defects make impossible.
fn is_tansu(env: &Env) -> bool {
    !env.broker.is_mock() && std::env::var("KTM_BROKER").is_ok_and(|b| b == "tansu")
}

fn unique() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (partition, offset) of every handled record, in handling order.
type Seen = Arc<Mutex<Vec<(i32, i64)>>>;

fn push(seen: &Seen, m: &Message) {
    seen.lock().unwrap().push((m.partition(), m.offset()));
}

fn all(seen: &[&Seen]) -> Vec<(i32, i64)> {
    let mut v: Vec<(i32, i64)> = seen
        .iter()
        .flat_map(|s| s.lock().unwrap().clone())
        .collect();
    v.sort_unstable();
    v
}

fn distinct(seen: &[&Seen]) -> BTreeSet<(i32, i64)> {
    all(seen).into_iter().collect()
}

fn every(partitions: i32, per_partition: i64) -> BTreeSet<(i32, i64)> {
    (0..partitions)
        .flat_map(|p| (0..per_partition).map(move |o| (p, o)))
        .collect()
}

fn duplicates(seen: &[&Seen]) -> Vec<(i32, i64)> {
    all(seen)
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect()
}

/// The partitions of a member's stats, as numbers.
fn owned(m: &ThreadManager) -> BTreeSet<i32> {
    m.stats()
        .assignment
        .iter()
        .map(|tp| tp.partition())
        .collect()
}

/// What a member's source told its manager, with when.
type Events = Arc<Mutex<Vec<(Instant, SourceEvent)>>>;

/// Forwards every call to `inner` and keeps the rebalance events its polls return.
struct Recorded<S> {
    inner: S,
    events: Events,
}

impl<S: MessageSource> Recorded<S> {
    fn new(inner: S) -> (Self, Events) {
        let events = Events::default();
        (
            Self {
                inner,
                events: Arc::clone(&events),
            },
            events,
        )
    }
}

#[kafka_thread_manager::async_trait]
impl<S: MessageSource> MessageSource for Recorded<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError> {
        let result = self.inner.poll(timeout, batch).await;
        let now = Instant::now();
        self.events
            .lock()
            .unwrap()
            .extend(batch.events().iter().map(|e| (now, e.clone())));
        result
    }
    fn store(&mut self, positions: &Offsets) {
        self.inner.store(positions);
    }
    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError> {
        self.inner.commit(positions).await
    }
    async fn close(&mut self) -> Result<(), SourceError> {
        self.inner.close().await
    }
    fn group_id(&self) -> Option<&str> {
        self.inner.group_id()
    }
    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.inner.pause(partitions)
    }
    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.inner.resume(partitions)
    }
}

/// The Revoked and Lost events recorded after `since`.
fn taken_away(events: &Events, since: Instant) -> Vec<SourceEvent> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, e)| *t >= since && matches!(e, SourceEvent::Revoked(_) | SourceEvent::Lost(_)))
        .map(|(_, e)| e.clone())
        .collect()
}

/// A manager with the settings every test shares, around a sync callback.
fn sync_manager(
    source: impl MessageSource,
    callback: impl FnMut(&Message) -> Result<(), std::io::Error> + Send + 'static,
) -> ThreadManager {
    ThreadManager::builder(source)
        .callback(callback)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(100))
        .close_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A callback that records what it handled, after `work` per record.
fn recording(
    seen: &Seen,
    work: Duration,
) -> impl FnMut(&Message) -> Result<(), std::io::Error> + Send + Clone + 'static {
    let seen = Arc::clone(seen);
    move |m: &Message| {
        std::thread::sleep(work);
        push(&seen, m);
        Ok(())
    }
}

/// Everything every member of the test binary logged, captured (global: members log
/// from threads of their own); `KTM_TEST_LOG=stderr` also prints it as it comes.
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .try_init();
        captured
    })
}

/// Produces `per_round` records to each partition every 50 ms from a thread of its own
/// (its own client), until dropped; then says how many each partition got.
struct Flow {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<BTreeMap<i32, i64>>>,
}

impl Flow {
    fn start(bootstrap: &str, topic: &str, partitions: i32, per_round: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (bootstrap, topic, flag) = (bootstrap.to_owned(), topic.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use rskafka::client::partition::{Compression, UnknownTopicHandling};
                let client = rskafka::client::ClientBuilder::new(vec![bootstrap])
                    .build()
                    .await
                    .unwrap();
                let mut clients = Vec::new();
                for p in 0..partitions {
                    clients.push(
                        client
                            .partition_client(&topic, p, UnknownTopicHandling::Retry)
                            .await
                            .unwrap(),
                    );
                }
                let mut counts = BTreeMap::new();
                while !flag.load(Ordering::SeqCst) {
                    for (p, pc) in (0..partitions).zip(&clients) {
                        let records = (0..per_round)
                            .map(|_| {
                                support::record(None, Some(b"flowing".to_vec()), BTreeMap::new())
                            })
                            .collect();
                        pc.produce(records, Compression::NoCompression)
                            .await
                            .unwrap();
                        *counts.entry(p).or_insert(0) += per_round as i64;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                counts
            })
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops producing; what each partition got.
    fn finish(mut self) -> BTreeMap<i32, i64> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn cooperative_sticky() -> Assignor {
    Assignor::from_protocol_name("cooperative-sticky")
        .expect("ktm_rskafka::Assignor has no cooperative-sticky assignor yet")
}

// ---- slow members ------------------------------------------------------------------

/// How member A handles records in [`slow_member`].
#[derive(Clone, Copy, Debug)]
enum Handling {
    Sync,
    Pool,
    Async,
}

/// Two members of a 2-partition topic, one partition each; then 1,200 records per
/// partition, one batch each, and A needs 10 ms per record: 12 s of work in one batch,
/// four sessions of the mock (two of Tansu). Its heartbeats must go on meanwhile: no
/// partition is taken from either member, nothing is handled twice, all is handled.
fn slow_member(test: &str, handling: Handling) {
    for env in envs(test) {
        eprintln!("{test} on the {}", env.name);
        let topic = env.topic(2);
        let group = format!("g-{}", unique());
        let (seen_a, seen_b) = (Seen::default(), Seen::default());
        let (source_a, events_a) = Recorded::new(env.rskafka(env.config(&topic, &group)));
        let (source_b, events_b) = Recorded::new(env.rskafka(env.config(&topic, &group)));
        let slow = recording(&seen_a, Duration::from_millis(10));
        let builder = ThreadManager::builder(source_a)
            .thread_lifetime(None)
            .poll_timeout(Duration::from_millis(100))
            .close_timeout(Duration::from_secs(5));
        let a = match handling {
            Handling::Sync => builder.callback(slow),
            Handling::Pool => builder.parallel_callback(WorkerPool::new(2), slow),
            Handling::Async => {
                let seen = Arc::clone(&seen_a);
                builder.async_callback(move |m: Message| {
                    let seen = Arc::clone(&seen);
                    async move {
                        // Blocking on purpose: the consumer thread's runtime is held
                        // for the whole batch, as a careless async callback holds it.
                        std::thread::sleep(Duration::from_millis(10));
                        push(&seen, &m);
                        Ok::<(), CallbackError>(())
                    }
                })
            }
        }
        .build()
        .unwrap();
        let b = sync_manager(source_b, recording(&seen_b, Duration::ZERO));
        a.start().unwrap();
        b.start().unwrap();
        wait_until(env.patience, "one partition each", || {
            owned(&a).len() == 1 && owned(&b).len() == 1
        });
        let settled = Instant::now();
        env.produce(&topic, 2, 1_200);
        let want = every(2, 1_200);
        wait_until(Duration::from_secs(60), "all 2,400 records", || {
            distinct(&[&seen_a, &seen_b]) == want
        });
        let took = settled.elapsed();
        let (stats_a, stats_b) = (a.stats(), b.stats());
        let (ra, rb) = (a.stop().unwrap(), b.stop().unwrap());
        eprintln!(
            "{test} on the {}: all handled {took:?} after the group settled",
            env.name
        );
        assert_eq!(
            taken_away(&events_a, settled),
            vec![],
            "A lost partitions while it worked"
        );
        assert_eq!(
            taken_away(&events_b, settled),
            vec![],
            "B lost partitions while A worked"
        );
        assert_eq!(duplicates(&[&seen_a, &seen_b]), vec![], "handled twice");
        assert_eq!(stats_a.state, State::Running, "{stats_a:?}");
        assert_eq!(stats_b.state, State::Running, "{stats_b:?}");
        assert!(
            seen_a.lock().unwrap().len() == 1_200,
            "A handled its whole partition"
        );
        assert_eq!(ra.final_state, State::Stopped, "{ra:?}");
        assert_eq!(rb.final_state, State::Stopped, "{rb:?}");
    }
}

#[test]
fn a_slow_sync_callback_keeps_its_partitions() {
    slow_member("a_slow_sync_callback_keeps_its_partitions", Handling::Sync);
}

#[test]
fn a_slow_worker_pool_keeps_its_partitions() {
    slow_member("a_slow_worker_pool_keeps_its_partitions", Handling::Pool);
}

#[test]
fn a_slow_async_callback_keeps_its_partitions() {
    slow_member(
        "a_slow_async_callback_keeps_its_partitions",
        Handling::Async,
    );
}

// ---- stuck past max.poll.interval --------------------------------------------------

/// A's first record blocks its callback past `max.poll.interval` (4 s on the mock)
/// and its session: A's member leaves with a WARN naming `max.poll.interval`, B takes
/// A's partition over within a session of that, A gets its partition reported lost
/// when it polls again, and every record is handled at least once.
#[test]
fn a_member_stuck_past_max_poll_interval_leaves_and_its_peer_takes_over() {
    let test = "a_member_stuck_past_max_poll_interval_leaves_and_its_peer_takes_over";
    for env in envs(test) {
        eprintln!("{test} on the {}", env.name);
        let max_poll = env.session + Duration::from_secs(1);
        let stuck_for = max_poll + env.session * 2;
        let topic = env.topic(2);
        let group = format!("g-{}", unique());
        let (seen_a, seen_b) = (Seen::default(), Seen::default());
        let config = || env.config(&topic, &group).max_poll_interval(max_poll);
        let (source_a, events_a) = Recorded::new(env.rskafka(config()));
        let blocked = Arc::new(AtomicBool::new(false));
        let a = {
            let (seen, blocked) = (Arc::clone(&seen_a), Arc::clone(&blocked));
            sync_manager(source_a, move |m: &Message| {
                if !blocked.swap(true, Ordering::SeqCst) {
                    std::thread::sleep(stuck_for);
                }
                push(&seen, m);
                Ok(())
            })
        };
        let b = sync_manager(env.rskafka(config()), recording(&seen_b, Duration::ZERO));
        a.start().unwrap();
        b.start().unwrap();
        wait_until(env.patience, "one partition each", || {
            owned(&a).len() == 1 && owned(&b).len() == 1
        });
        let a_partition = *owned(&a).iter().next().unwrap();
        env.produce(&topic, 2, 50);
        wait_until(env.patience, "A's callback to block", || {
            blocked.load(Ordering::SeqCst)
        });
        let stuck = Instant::now();
        let warning = || log().lines_with(&["WARN", "max.poll.interval", &group]);
        wait_until(max_poll + env.session, "A's max.poll.interval WARN", || {
            !warning().is_empty()
        });
        let warned = Instant::now();
        eprintln!(
            "warned {:?} after A blocked: {:?}",
            warned - stuck,
            warning()
        );
        wait_until(env.patience, "B to own both partitions", || {
            owned(&b).len() == 2
        });
        let took_over = warned.elapsed();
        eprintln!("B took over {took_over:?} after the WARN");
        let want = every(2, 50);
        wait_until(stuck_for + env.patience, "every record", || {
            distinct(&[&seen_a, &seen_b]) == want
        });
        // A comes back once unblocked: its partition was lost at its next poll.
        wait_until(
            stuck_for + env.patience,
            "A to report its partition lost",
            || {
                events_a.lock().unwrap().iter().any(|(t, e)| {
                *t > stuck
                    && matches!(e, SourceEvent::Lost(tps) if tps.iter().any(|tp| tp.partition() == a_partition))
            })
            },
        );
        let (ra, rb) = (a.stop().unwrap(), b.stop().unwrap());
        assert!(
            warned - stuck >= max_poll - Duration::from_millis(500),
            "A left {:?} after it blocked, before max.poll.interval ({max_poll:?})",
            warned - stuck
        );
        assert!(
            took_over < env.session + Duration::from_secs(1),
            "B took over {took_over:?} after A left (session {:?})",
            env.session
        );
        assert_eq!(ra.final_state, State::Stopped, "{ra:?}");
        assert_eq!(rb.final_state, State::Stopped, "{rb:?}");
    }
}

// ---- cooperative -------------------------------------------------------------------

/// Three cooperative-sticky members on 8 partitions while records flow; a fourth joins,
/// then one of the first three leaves. A partition a member keeps across a rebalance is
/// never revoked from it (only the moved ones are), and nothing is lost.
#[test]
fn cooperative_rebalances_revoke_only_the_partitions_that_move() {
    let test = "cooperative_rebalances_revoke_only_the_partitions_that_move";
    let assignor = cooperative_sticky();
    for env in envs(test) {
        if is_tansu(&env) {
            // Tansu 0.6 answers the leader's rejoin without waiting for the other
            // members to rejoin (seen at RUST_LOG=ktm_rskafka=debug: the leader's
            // JoinGroup answered within 3 ms, listing members that had not rejoined),
            // with their metadata from their previous join: the leader assigns from
            // stale ownership, so no cooperative-sticky leader (ours, Java's or
            // librdkafka's) can keep partitions where they are. The mock cluster run
            // covers it.
            eprintln!("SKIP {test} on Tansu: its JoinGroup answers with the members' stale metadata (see the comment); the mock cluster run covers it");
            continue;
        }
        eprintln!("{test} on the {}", env.name);
        let topic = env.topic(8);
        let group = format!("g-{}", unique());
        let seen: Vec<Seen> = (0..4).map(|_| Seen::default()).collect();
        let mut events: Vec<Events> = Vec::new();
        let mut members: Vec<ThreadManager> = Vec::new();
        let make = |i: usize| {
            let source = RskafkaSource::builder()
                .config(env.config(&topic, &group).build().unwrap())
                .assignor(assignor)
                .build()
                .unwrap();
            let (source, e) = Recorded::new(source);
            let m = sync_manager(source, recording(&seen[i], Duration::ZERO));
            m.start().unwrap();
            (m, e)
        };
        let join = |members: &mut Vec<ThreadManager>, events: &mut Vec<Events>, i: usize| {
            let (m, e) = make(i);
            members.push(m);
            events.push(e);
        };
        let flow = Flow::start(&env.broker.bootstrap, &topic, 8, 5);
        for i in 0..3 {
            join(&mut members, &mut events, i);
        }
        let cover = |members: &[ThreadManager], live: &[usize], each: usize| {
            let sets: Vec<BTreeSet<i32>> = live.iter().map(|&i| owned(&members[i])).collect();
            let total: usize = sets.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
            total == 8 && union.len() == 8 && sets.iter().all(|s| s.len() >= each)
        };
        wait_until(env.patience, "3 members covering 8 partitions", || {
            cover(&members, &[0, 1, 2], 2)
        });
        let before_join: Vec<(Instant, BTreeSet<i32>)> = (0..3)
            .map(|i| (Instant::now(), owned(&members[i])))
            .collect();
        join(&mut members, &mut events, 3);
        wait_until(env.patience, "4 members with 2 partitions each", || {
            cover(&members, &[0, 1, 2, 3], 2)
        });
        let after_join: Vec<BTreeSet<i32>> = (0..4).map(|i| owned(&members[i])).collect();
        let leaving = Instant::now();
        let r0 = members[0].stop().unwrap();
        wait_until(
            env.patience,
            "3 members covering 8 partitions again",
            || cover(&members, &[1, 2, 3], 2),
        );
        let after_leave: Vec<BTreeSet<i32>> = (1..4).map(|i| owned(&members[i])).collect();
        let counts = flow.finish();
        let want: BTreeSet<(i32, i64)> = counts
            .iter()
            .flat_map(|(&p, &n)| (0..n).map(move |o| (p, o)))
            .collect();
        let refs: Vec<&Seen> = seen.iter().collect();
        wait_until(env.patience, "every record produced", || {
            distinct(&refs) == want
        });
        let reports: Vec<_> = members[1..].iter().map(|m| m.stop().unwrap()).collect();
        assert_eq!(r0.final_state, State::Stopped, "{r0:?}");
        for r in &reports {
            assert_eq!(r.final_state, State::Stopped, "{r:?}");
        }
        let revoked_between = |i: usize, from: Instant, to: Instant| -> BTreeSet<i32> {
            events[i]
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .flat_map(|(_, e)| match e {
                    SourceEvent::Revoked(tps) | SourceEvent::Lost(tps) => {
                        tps.iter().map(|tp| tp.partition()).collect()
                    }
                    _ => Vec::new(),
                })
                .collect()
        };
        for i in 0..3 {
            let (since, before) = &before_join[i];
            let kept: BTreeSet<i32> = before.intersection(&after_join[i]).copied().collect();
            let revoked = revoked_between(i, *since, leaving);
            assert!(
                kept.is_disjoint(&revoked),
                "member {i} kept {kept:?} through the 4th member's join, yet {revoked:?} were revoked from it"
            );
            assert!(
                !kept.is_empty(),
                "member {i} kept nothing: {before:?} -> {:?}",
                after_join[i]
            );
        }
        for (k, i) in (1..4).enumerate() {
            let kept: BTreeSet<i32> = after_join[i]
                .intersection(&after_leave[k])
                .copied()
                .collect();
            let revoked = revoked_between(i, leaving, Instant::now());
            assert!(
                kept.is_disjoint(&revoked),
                "member {i} kept {kept:?} through member 0's leave, yet {revoked:?} were revoked from it"
            );
            assert_eq!(
                kept, after_join[i],
                "member {i} lost partitions when another left"
            );
        }
    }
}

// ---- mixed group -------------------------------------------------------------------

/// An rskafka member and an rdkafka member, both cooperative-sticky, in one group of 4
/// partitions: they share the partitions, never both own one, and handle every record.
#[test]
fn rskafka_and_rdkafka_members_share_one_cooperative_group() {
    let test = "rskafka_and_rdkafka_members_share_one_cooperative_group";
    // Checked first: the mock cluster aborts the process when members' first
    // protocols differ (an rd_assert in rd_kafka_mock_cgrp_classic_elect_leader).
    let assignor = cooperative_sticky();
    for env in envs(test) {
        eprintln!("{test} on the {}", env.name);
        let topic = env.topic(4);
        let group = format!("g-{}", unique());
        env.produce(&topic, 4, 100);
        let (seen_r, seen_d) = (Seen::default(), Seen::default());
        let rs = sync_manager(
            RskafkaSource::builder()
                .config(env.config(&topic, &group).build().unwrap())
                .assignor(assignor)
                .build()
                .unwrap(),
            recording(&seen_r, Duration::from_millis(2)),
        );
        let rd = sync_manager(
            RdkafkaSource::builder()
                .config(env.config(&topic, &group).build().unwrap())
                .set("partition.assignment.strategy", "cooperative-sticky")
                .build()
                .unwrap(),
            recording(&seen_d, Duration::from_millis(2)),
        );
        rs.start().unwrap();
        rd.start().unwrap();
        let mut previous_overlap = BTreeSet::new();
        let deadline = Instant::now() + env.patience;
        let mut split = false;
        while Instant::now() < deadline {
            let (r, d) = (owned(&rs), owned(&rd));
            let overlap: BTreeSet<i32> = r.intersection(&d).copied().collect();
            let lasting: Vec<_> = overlap.intersection(&previous_overlap).collect();
            assert!(
                lasting.is_empty(),
                "partitions {lasting:?} owned by both members"
            );
            previous_overlap = overlap;
            if !r.is_empty() && !d.is_empty() && r.len() + d.len() == 4 {
                split = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            split,
            "never split: rskafka {:?}, rdkafka {:?}",
            owned(&rs),
            owned(&rd)
        );
        env.produce(&topic, 4, 100);
        let want = every(4, 200);
        wait_until(env.patience, "all 800 records", || {
            distinct(&[&seen_r, &seen_d]) == want
        });
        let (r, d) = (owned(&rs), owned(&rd));
        let (rr, rd_report) = (rs.stop().unwrap(), rd.stop().unwrap());
        assert!(r.is_disjoint(&d), "rskafka {r:?} and rdkafka {d:?} overlap");
        // Records of the second round sit on each member's own partitions.
        for (who, s, mine) in [("rskafka", &seen_r, &r), ("rdkafka", &seen_d, &d)] {
            let late: BTreeSet<i32> = s
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, o)| *o >= 100)
                .map(|(p, _)| *p)
                .collect();
            assert!(
                late.is_subset(mine),
                "{who} read {late:?} while owning {mine:?}"
            );
        }
        assert_eq!(rr.final_state, State::Stopped, "{rr:?}");
        assert_eq!(rd_report.final_state, State::Stopped, "{rd_report:?}");
    }
}

// ---- static membership -------------------------------------------------------------

/// Two static members; the follower is stopped and restarted (same
/// `group.instance.id`) within the session timeout: its peer sees no revoke, and it gets
/// its partitions back. (A restarted static *leader* needs JoinGroup v9's
/// skip-assignment, KIP-814, which this client does not send: on Kafka before it, and
/// here, the leader's return makes the group rebalance.)
#[test]
fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let test = "a_restarted_static_member_gets_its_partitions_back_without_a_rebalance";
    for env in envs(test) {
        if env.broker.is_mock() {
            // librdkafka 2.12.1 src/rdkafka_mock_cgrp.c, rd_kafka_mock_cgrp_classic_member_add:
            // members are found by member id only, so a restarted static member (empty
            // member id) is a new member and the group rebalances.
            eprintln!(
                "SKIP {test} on the mock cluster: it does not implement static membership (a rejoining group.instance.id is a new member); the external broker run covers it"
            );
            continue;
        }
        if is_tansu(&env) {
            // Tansu 0.6 holds a static member's SyncGroup for 3 s, rebalances the
            // group again meanwhile and then answers the leader's heartbeat
            // UNKNOWN_MEMBER_ID; the rejoin under the same group.instance.id gets a new
            // member id while the old one stays recorded as leader, so the group never
            // forms again (seen at RUST_LOG=ktm_rskafka=debug, before any restart).
            eprintln!("SKIP {test} on Tansu: its static membership fences the members right after the first sync (see the comment); no broker here covers it, a real Kafka named by KAFKA_BOOTSTRAP_SERVERS does");
            continue;
        }
        eprintln!("{test} on the {}", env.name);
        let topic = env.topic(2);
        let group = format!("g-{}", unique());
        env.produce(&topic, 2, 50);
        let (id_a, id_b) = (format!("a-{}", unique()), format!("b-{}", unique()));
        let (seen_a, seen_b) = (Seen::default(), Seen::default());
        let member = |id: &str, seen: &Seen| {
            let (source, events) =
                Recorded::new(env.rskafka(env.config(&topic, &group).group_instance_id(id)));
            (
                sync_manager(source, recording(seen, Duration::ZERO)),
                events,
            )
        };
        // B first, alone, so that it leads the group; A, the follower, restarts.
        let (b, events_b) = member(&id_b, &seen_b);
        b.start().unwrap();
        wait_until(env.patience, "the leader's assignment", || {
            owned(&b).len() == 2
        });
        let (a, _) = member(&id_a, &seen_a);
        a.start().unwrap();
        wait_until(env.patience, "one partition each", || {
            owned(&a).len() == 1 && owned(&b).len() == 1
        });
        wait_until(env.patience, "the first 100 records", || {
            distinct(&[&seen_a, &seen_b]).len() == 100
        });
        let a_partitions = owned(&a);
        let stopping = Instant::now();
        let ra = a.stop().unwrap();
        let (a2, _) = member(&id_a, &seen_a);
        a2.start().unwrap();
        assert!(
            stopping.elapsed() < env.session,
            "restarted within the session"
        );
        wait_until(env.patience, "the restarted member's partitions", || {
            !owned(&a2).is_empty()
        });
        let back = owned(&a2);
        env.produce(&topic, 2, 50);
        wait_until(env.patience, "all 200 records", || {
            distinct(&[&seen_a, &seen_b]) == every(2, 100)
        });
        // Past the old session too: no late expiry of the old incarnation.
        std::thread::sleep(env.session.saturating_sub(stopping.elapsed()) + Duration::from_secs(1));
        let (ra2, rb) = (a2.stop().unwrap(), b.stop().unwrap());
        assert_eq!(back, a_partitions, "the same partitions came back");
        assert_eq!(
            taken_away(&events_b, stopping),
            vec![],
            "the peer saw a rebalance"
        );
        assert_eq!(duplicates(&[&seen_a, &seen_b]), vec![], "handled twice");
        for r in [&ra, &ra2, &rb] {
            assert_eq!(r.final_state, State::Stopped, "{r:?}");
        }
    }
}
