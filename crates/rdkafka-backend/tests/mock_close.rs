//! Closing an `RdkafkaSource`, polled directly, on librdkafka's in-process mock cluster
//! (no broker needed): once `close()` returns, the member has left the group (the other
//! member is told to rebalance at once, not after the closed member's session expired)
//! and its commits are in; a source dropped without `close()` still commits its handled
//! positions on the revoke of its background close.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::mock::Fixture;
use common::runtime;
use ktm_core::{MessageSource, OffsetReset, Offsets, PollBatch, SourceEvent, TopicPartition};
use ktm_rdkafka::rdkafka::consumer::{BaseConsumer, Consumer};
use ktm_rdkafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use ktm_rdkafka::{RdkafkaSource, RdkafkaSourceBuilder};

const PARTITIONS: i32 = 3;
const PER_PARTITION: i64 = 20;
/// Long, so that a member that did not leave holds the group far longer than the
/// rebalance its leave starts takes to reach the other member (a heartbeat).
const SESSION: Duration = Duration::from_secs(60);
/// Many heartbeats, well before `SESSION`.
const REBALANCE_LIMIT: Duration = Duration::from_secs(20);
/// The mock cluster's response delay while a member closes.
const SLOW: Duration = Duration::from_millis(1500);
const LIMIT: Duration = Duration::from_secs(30);

/// The topic full from the start, so that every test has records to read on each
/// partition.
fn fixture() -> Fixture {
    let f = Fixture::new(1, PARTITIONS);
    f.produce(0, PER_PARTITION);
    f
}

impl Fixture {
    /// A member of the group, as most tests want it.
    fn member(&self) -> RdkafkaSource {
        self.member_builder().build().unwrap()
    }

    /// [`Fixture::member`] before it is built, for a test to adjust.
    fn member_builder(&self) -> RdkafkaSourceBuilder {
        self.subscriber(SESSION)
            .offset_reset(OffsetReset::Earliest)
            .close_timeout(Duration::from_secs(10))
    }

    /// A source reading every partition by assignment, committing under the group.
    fn assigned(&self) -> RdkafkaSource {
        RdkafkaSource::builder()
            .bootstrap_servers([self.bootstrap.as_str()])
            .assign((0..PARTITIONS).map(|p| self.tp(p)))
            .group_id(&self.group)
            .offset_reset(OffsetReset::Earliest)
            .close_timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Distinct positions per partition, none at 0 or the end, so that neither
    /// `auto.offset.reset` nor a stray commit can pass for them.
    fn positions(&self, base: i64) -> Offsets {
        (0..PARTITIONS)
            .map(|p| (self.tp(p), base + i64::from(p)))
            .collect()
    }

    /// The group's committed positions, read without joining it.
    fn committed(&self) -> BTreeMap<i32, i64> {
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.topic, p);
        }
        reader
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }
}

/// Positions by partition, to compare with [`Fixture::committed`].
fn as_map(positions: &Offsets) -> BTreeMap<i32, i64> {
    positions
        .iter()
        .map(|(tp, position)| (tp.partition(), position))
        .collect()
}

/// What direct polls of one source returned.
#[derive(Default)]
struct Polled {
    /// Each partition's first offset received.
    first: BTreeMap<i32, i64>,
    /// Partitions assigned now, as the events said.
    assigned: Vec<TopicPartition>,
    /// Every event, for the failure messages.
    events: Vec<SourceEvent>,
}

impl Polled {
    /// Polls once.
    async fn poll(&mut self, source: &mut RdkafkaSource) {
        let mut batch = PollBatch::new();
        if let Err(e) = source.poll(Duration::from_millis(100), &mut batch).await {
            // A broker going down and up again is reported, as the manager would see it.
            assert!(e.is_transient(), "{e}");
        }
        for event in batch.events() {
            match event {
                SourceEvent::Assigned(tps) => self.assigned.extend(tps.iter().cloned()),
                SourceEvent::Revoked(tps) | SourceEvent::Lost(tps) => {
                    self.assigned.retain(|tp| !tps.contains(tp));
                }
                _ => {}
            }
            self.events.push(event.clone());
        }
        for m in batch.messages() {
            self.first.entry(m.partition()).or_insert(m.offset());
        }
    }

    /// Polls until `done`, failing after `limit`.
    async fn until(
        &mut self,
        source: &mut RdkafkaSource,
        limit: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        let end = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < end,
                "no {what} within {limit:?}; events {:?}",
                self.events
            );
            self.poll(source).await;
        }
    }

    /// Whether every partition is assigned.
    fn owns_everything(&self) -> bool {
        self.assigned.len() == PARTITIONS as usize
    }

    /// Whether records came from every partition.
    fn read_everywhere(&self) -> bool {
        self.first.len() == PARTITIONS as usize
    }
}

#[test]
fn once_close_returns_the_member_has_left_and_the_group_rebalances_without_it() {
    let f = fixture();
    runtime().block_on(async {
        // Both join within the mock's initial rebalance delay, so that one election
        // takes both (a later join would wait `SESSION - 1 s` for the first to rejoin).
        // A heartbeats without pause, one request at a time: once responses are slowed
        // down, its LeaveGroup queues behind a heartbeat in flight, so a close that
        // returned before the leave went out would leave it to a connection about to go.
        let mut a = f
            .member_builder()
            .heartbeat_interval(Duration::from_millis(10))
            .set("max.in.flight.requests.per.connection", "1")
            .build()
            .unwrap();
        let mut b = f.member();
        let (mut a_polled, mut b_polled) = (Polled::default(), Polled::default());
        // A member that misses that delay on a loaded machine (CI runs the tests of
        // this binary at once) waits `SESSION - 1 s` for the next election: set-up only,
        // what is checked comes after.
        let end = Instant::now() + SESSION + LIMIT;
        while a_polled.assigned.is_empty() || b_polled.assigned.is_empty() {
            assert!(
                Instant::now() < end,
                "A and B not both assigned; A saw {:?}, B saw {:?}",
                a_polled.events,
                b_polled.events
            );
            a_polled.poll(&mut a).await;
            b_polled.poll(&mut b).await;
        }
        // As the manager does: store what was handled, commit it, then close.
        let committed: Offsets = a_polled
            .assigned
            .iter()
            .map(|tp| (tp.clone(), 5 + i64::from(tp.partition())))
            .collect();
        a.store(&committed);
        a.commit(&committed).await.unwrap();
        f.mock.broker_round_trip_time(1, SLOW).unwrap();
        // Long enough for a heartbeat to go out under the slow responses.
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.close().await.unwrap();
        // Whatever of A's close had not reached the cluster when `close()` returned never
        // will: a member that had not left by then stays in the group until its session
        // expires, and nothing rebalances before.
        f.mock.broker_down(-1).unwrap();
        f.mock.broker_round_trip_time(1, Duration::ZERO).unwrap();
        f.mock.broker_up(-1).unwrap();
        assert_eq!(f.committed(), as_map(&committed), "committed positions");

        // B hears of the rebalance at its next heartbeat: a revoke of what it had.
        let before = b_polled.events.len();
        b_polled
            .until(
                &mut b,
                REBALANCE_LIMIT,
                "rebalance after A's close (A still a member?)",
                |p| {
                    p.events[before..]
                        .iter()
                        .any(|e| matches!(e, SourceEvent::Revoked(_)))
                },
            )
            .await;
        b.close().await.unwrap();
    });
}

#[test]
fn a_source_dropped_without_close_commits_its_handled_positions_on_the_revoke() {
    let f = fixture();
    let committed = f.positions(3);
    let stored = f.positions(11);
    runtime().block_on(async {
        let mut a = f.member();
        let mut polled = Polled::default();
        polled
            .until(&mut a, LIMIT, "assignment and records for A", |p| {
                p.owns_everything() && p.read_everywhere()
            })
            .await;
        a.store(&committed);
        a.commit(&committed).await.unwrap();
        // Handled but never committed: the revoke of the close that the drop starts in
        // the background commits them before the partitions are given up.
        a.store(&stored);
        drop(a);
    });
    let end = Instant::now() + LIMIT;
    let want = as_map(&stored);
    loop {
        let now = f.committed();
        if now == want {
            break;
        }
        assert!(
            Instant::now() < end,
            "committed {now:?}, stored {want:?}: the revoke on drop did not commit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_static_assignment_closes_and_the_next_consumer_resumes_from_its_commit() {
    let f = fixture();
    let committed = f.positions(7);
    runtime().block_on(async {
        let mut a = f.assigned();
        let mut polled = Polled::default();
        polled
            .until(&mut a, LIMIT, "records for A", Polled::read_everywhere)
            .await;
        a.store(&committed);
        a.commit(&committed).await.unwrap();
        a.close().await.unwrap();

        assert_eq!(f.committed(), as_map(&committed), "committed positions");
        let mut b = f.assigned();
        let mut polled = Polled::default();
        polled
            .until(&mut b, LIMIT, "records for B", Polled::read_everywhere)
            .await;
        assert_eq!(polled.first, as_map(&committed), "B's first offsets");
        b.close().await.unwrap();
    });
}
