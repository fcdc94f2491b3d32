//! Pausing and resuming partitions of an `RdkafkaSource`, polled directly, on
//! librdkafka's in-process mock cluster (no broker needed), and on a real broker
//! (`KAFKA_BOOTSTRAP_SERVERS`; skipped, saying so, without it).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::mock::Fixture;
use common::{create_topic, init_tracing, produce_batched, runtime, unique};
use ktm_core::{MessageSource, PollBatch, SourceEvent, TopicPartition};
use ktm_rdkafka::RdkafkaSource;

/// Short, so that a pause soon outlasts it: a paused member must not be evicted.
const SESSION: Duration = Duration::from_millis(3000);

impl Fixture {
    /// A member of the group.
    fn source(&self) -> RdkafkaSource {
        self.subscriber(SESSION)
            .close_timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    }
}

/// What direct polls of a source returned.
#[derive(Default)]
struct Polled {
    /// Every record, as (partition, offset), in the order received.
    seen: Vec<(i32, i64)>,
    /// Every event.
    events: Vec<SourceEvent>,
    /// Each partition's latest high watermark.
    high_watermarks: BTreeMap<i32, i64>,
}

impl Polled {
    /// The offsets received from `partition`, in order.
    fn offsets(&self, partition: i32) -> Vec<i64> {
        self.seen
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|&(_, o)| o)
            .collect()
    }

    /// Polls once; checks each partition's high watermark comes at most once per poll.
    async fn poll(&mut self, source: &mut RdkafkaSource, batch: &mut PollBatch) {
        batch.clear();
        source
            .poll(Duration::from_millis(100), batch)
            .await
            .unwrap();
        self.events.extend(batch.events().iter().cloned());
        self.seen
            .extend(batch.messages().iter().map(|m| (m.partition(), m.offset())));
        let reported: Vec<&TopicPartition> =
            batch.high_watermarks().iter().map(|(tp, _)| tp).collect();
        let unique: BTreeSet<&TopicPartition> = reported.iter().copied().collect();
        assert_eq!(reported.len(), unique.len(), "reported twice in one poll");
        for (tp, hw) in batch.high_watermarks() {
            self.high_watermarks.insert(tp.partition(), *hw);
        }
    }

    /// Polls until `done`, failing after `limit`.
    async fn poll_until(
        &mut self,
        source: &mut RdkafkaSource,
        batch: &mut PollBatch,
        limit: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        let end = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; events {:?}",
                self.events
            );
            self.poll(source, batch).await;
        }
    }
}

#[test]
fn a_paused_partition_stops_while_the_member_stays_and_resumes_right_after_the_last_record() {
    let f = Fixture::new(1, 2);
    // librdkafka prefetches far ahead (queued.min.messages): by the pause, most of
    // partition 0 sits in its queue, which the pause must drop and the resume fetch again.
    f.produce(0, 5000);
    let source = f.source();
    runtime().block_on(pause_and_resume(
        source,
        &f.bootstrap,
        &f.topic,
        5000,
        SESSION,
    ));
}

#[test]
fn pause_and_resume_on_a_broker() {
    init_tracing();
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        eprintln!("skipping pause_and_resume_on_a_broker: KAFKA_BOOTSTRAP_SERVERS is not set (start a broker with scripts/tansu.sh start)");
        return;
    };
    let topic = unique("ktm-rd-pause");
    let rt = runtime();
    rt.block_on(create_topic(&bootstrap, &topic, 2));
    // One record per batch: the resume fetches from inside the log, and Tansu 0.6 returns
    // nothing for a fetch that starts inside a batch.
    produce_batched(&bootstrap, &topic, 2, 0, 2000, 1);
    let session = Duration::from_millis(6000);
    let source = RdkafkaSource::builder()
        .bootstrap_servers(bootstrap.split(','))
        .topics([topic.as_str()])
        .group_id(unique("g"))
        .session_timeout(session)
        .heartbeat_interval(Duration::from_millis(1000))
        .build()
        .unwrap();
    rt.block_on(pause_and_resume(source, &bootstrap, &topic, 2000, session));
}

/// `topic` has two partitions of `n` records each: polls some of partition 0, pauses
/// it for longer than the session timeout (20 more records produced to each partition
/// meanwhile), resumes it, and checks what came when.
async fn pause_and_resume(
    mut source: RdkafkaSource,
    bootstrap: &str,
    topic: &str,
    n: i64,
    session: Duration,
) {
    let tp = |p| TopicPartition::new(topic, p);
    let p0 = tp(0);
    let mut batch = PollBatch::new();
    let mut polled = Polled::default();
    polled
        .poll_until(
            &mut source,
            &mut batch,
            Duration::from_secs(30),
            "partition 0",
            |p| !p.offsets(0).is_empty(),
        )
        .await;
    assert_eq!(
        polled.events,
        [SourceEvent::Assigned(vec![p0.clone(), tp(1)])]
    );
    let last_returned = *polled.offsets(0).last().unwrap();
    assert!(last_returned < n - 1, "partition 0 read to its end at once");
    source.pause(std::slice::from_ref(&p0)).unwrap();

    // Partition 1 goes on, 0 gives nothing, and the member keeps its partitions.
    let paused_at = polled.seen.len();
    let producer = std::thread::spawn({
        let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
        move || produce_batched(&bootstrap, &topic, 2, n, 20, 1)
    });
    let end = Instant::now() + session + Duration::from_secs(2);
    while Instant::now() < end {
        polled.poll(&mut source, &mut batch).await;
    }
    producer.join().unwrap();
    let during = &polled.seen[paused_at..];
    assert!(
        during.iter().all(|(p, _)| *p == 1),
        "records of the paused partition arrived: {:?}",
        during
            .iter()
            .filter(|(p, _)| *p == 0)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(polled.events.len(), 1, "rebalanced: {:?}", polled.events);
    polled
        .poll_until(
            &mut source,
            &mut batch,
            Duration::from_secs(10),
            "partition 1 to the end",
            |p| p.offsets(1).len() == (n + 20) as usize,
        )
        .await;
    assert_eq!(
        polled.offsets(1),
        (0..n + 20).collect::<Vec<_>>(),
        "partition 1 was read on, records produced during the pause included"
    );
    assert_eq!(
        polled.offsets(0).last(),
        Some(&last_returned),
        "still paused"
    );

    source.resume(std::slice::from_ref(&p0)).unwrap();
    let resumed_at = polled.seen.len();
    polled
        .poll_until(
            &mut source,
            &mut batch,
            Duration::from_secs(30),
            "partition 0 to the end",
            |p| p.offsets(0).last() == Some(&(n + 19)),
        )
        .await;
    let first_after = polled.seen[resumed_at..].iter().find(|(p, _)| *p == 0);
    assert_eq!(
        first_after,
        Some(&(0, last_returned + 1)),
        "no gap, no repeat"
    );
    assert_eq!(polled.offsets(0), (0..n + 20).collect::<Vec<_>>());
    assert_eq!(polled.events.len(), 1, "{:?}", polled.events);
    // From librdkafka's statistics, every second by default.
    let want = BTreeMap::from([(0, n + 20), (1, n + 20)]);
    polled
        .poll_until(
            &mut source,
            &mut batch,
            Duration::from_secs(10),
            "the high watermarks",
            |p| p.high_watermarks == want,
        )
        .await;
    source.close().await.unwrap();
}

#[test]
fn a_pause_is_forgotten_when_the_partition_is_revoked() {
    let f = Fixture::new(1, 2);
    const N: i64 = 200;
    f.produce(0, N);
    let mut a = f.source();
    let p0 = f.tp(0);
    let rt = runtime();
    rt.block_on(async {
        let mut batch = PollBatch::new();
        let mut polled = Polled::default();
        polled
            .poll_until(
                &mut a,
                &mut batch,
                Duration::from_secs(30),
                "an assignment",
                |p| !p.events.is_empty(),
            )
            .await;
        a.pause(std::slice::from_ref(&p0)).unwrap();
        polled
            .poll_until(
                &mut a,
                &mut batch,
                Duration::from_secs(30),
                "partition 1",
                |p| p.offsets(1).len() == N as usize,
            )
            .await;
        assert!(polled.offsets(0).is_empty(), "paused from the start");

        // A second member joins and leaves: a rebalance revokes everything from A, then
        // gives both partitions back. Partition 0 must flow without a resume.
        let mut b = f.source();
        let mut b_polled = Polled::default();
        let mut b_batch = PollBatch::new();
        let end = Instant::now() + Duration::from_secs(30);
        while !b_polled
            .events
            .iter()
            .any(|e| matches!(e, SourceEvent::Assigned(_)))
        {
            assert!(
                Instant::now() < end,
                "B never joined; A saw {:?}",
                polled.events
            );
            polled.poll(&mut a, &mut batch).await;
            b_polled.poll(&mut b, &mut b_batch).await;
        }
        b.close().await.unwrap();
        polled
            .poll_until(
                &mut a,
                &mut batch,
                Duration::from_secs(30),
                "partition 0 after the rebalance",
                |p| !p.offsets(0).is_empty(),
            )
            .await;
        assert!(
            polled
                .events
                .iter()
                .any(|e| matches!(e, SourceEvent::Revoked(tps) if tps.contains(&p0))),
            "{:?}",
            polled.events
        );
        a.close().await.unwrap();
    });
}
