//! Broker tests of the rskafka backend through the ThreadManager. They need a broker:
//! `scripts/tansu.sh start` and export the `KAFKA_BOOTSTRAP_SERVERS` it prints.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ktm_core::{
    Message, MessageSource, OffsetReset, PollBatch, SourceEvent, State, ThreadManager,
    TopicPartition,
};
use ktm_rskafka::RskafkaSource;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

#[test]
fn hundred_thousand_messages_over_three_partitions_exactly_once_and_in_order() {
    let Some(bootstrap) = bootstrap("hundred_thousand_messages") else {
        return;
    };
    init_tracing();
    let topic = unique("ktm-100k");
    let rt = runtime();
    let counts = [(0, 33_334_i64), (1, 33_333), (2, 33_333)];
    rt.block_on(async {
        let c = client(&bootstrap).await;
        create_topic(&c, &topic, 3).await;
        for (p, n) in counts {
            produce(&c, &topic, p, usize::try_from(n).unwrap(), 100).await;
        }
    });
    let seen = Seen::default();
    let source = common::source(&bootstrap, &unique("g"))
        .topics([topic.as_str()])
        .build()
        .unwrap();
    let m = manager(source, &seen);
    let started = Instant::now();
    m.start().unwrap();
    wait_until(Duration::from_secs(120), "100,000 messages", || {
        seen.lock().unwrap().len() >= 100_000
    });
    let elapsed = started.elapsed();
    let report = m.stop().unwrap();
    eprintln!("100,000 messages handled in {elapsed:?} (group join included)");
    let seen = seen.lock().unwrap().clone();
    assert_in_order(&seen);
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted.len(), 100_000, "duplicates or extra messages");
    assert_eq!(sorted, expected(&counts));
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    for (p, n) in counts {
        assert_eq!(
            report
                .committed
                .get(&TopicPartition::new(topic.as_str(), p)),
            Some(n)
        );
    }
}

#[test]
fn restart_in_the_same_group_resumes_at_the_committed_offsets() {
    let Some(bootstrap) = bootstrap("restart_resumes") else {
        return;
    };
    init_tracing();
    let topic = unique("ktm-restart");
    let group = unique("g");
    let rt = runtime();
    let c = rt.block_on(async {
        let c = client(&bootstrap).await;
        create_topic(&c, &topic, 3).await;
        for p in 0..3 {
            produce(&c, &topic, p, 100, 10).await;
        }
        c
    });
    // None: no committed offset must be an error, so the first run uses Earliest and
    // the second proves it found the commits.
    let first = Seen::default();
    let m = manager(
        common::source(&bootstrap, &group)
            .topics([topic.as_str()])
            .build()
            .unwrap(),
        &first,
    );
    m.start().unwrap();
    wait_until(Duration::from_secs(60), "the first 300", || {
        first.lock().unwrap().len() >= 300
    });
    let report = m.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    assert_eq!(first.lock().unwrap().len(), 300);
    rt.block_on(async {
        for p in 0..3 {
            produce(&c, &topic, p, 50, 10).await;
        }
    });
    let second = Seen::default();
    let source = common::source(&bootstrap, &group)
        .topics([topic.as_str()])
        .offset_reset(OffsetReset::None)
        .build()
        .unwrap();
    let m = manager(source, &second);
    m.start().unwrap();
    wait_until(Duration::from_secs(60), "the next 150", || {
        second.lock().unwrap().len() >= 150
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = m.stop().unwrap();
    let mut got = second.lock().unwrap().clone();
    assert_in_order(&got);
    got.sort_unstable();
    let want: Vec<(i32, i64)> = (0..3)
        .flat_map(|p| (100..150).map(move |o| (p, o)))
        .collect();
    assert_eq!(got, want, "resumed exactly after the commits");
    assert_eq!(report.counts.poll_errors, 0, "{report:?}");
}

#[test]
fn two_members_split_partitions_and_the_survivor_takes_over_after_a_crash() {
    let Some(bootstrap) = bootstrap("two_members") else {
        return;
    };
    init_tracing();
    let topic = unique("ktm-two");
    let group = unique("g");
    let rt = runtime();
    let c = rt.block_on(async {
        let c = client(&bootstrap).await;
        create_topic(&c, &topic, 4).await;
        for p in 0..4 {
            produce(&c, &topic, p, 200, 10).await;
        }
        c
    });
    let (seen_a, seen_b) = (Seen::default(), Seen::default());
    let source_a = common::source(&bootstrap, &group)
        .topics([topic.as_str()])
        .build()
        .unwrap();
    let crash_a = source_a.crash_switch();
    let a = manager(source_a, &seen_a);
    let b = manager(
        common::source(&bootstrap, &group)
            .topics([topic.as_str()])
            .build()
            .unwrap(),
        &seen_b,
    );
    a.start().unwrap();
    wait_until(Duration::from_secs(30), "A assigned", || {
        !a.stats().assignment.is_empty()
    });
    b.start().unwrap();
    // Both own some partitions; sampled assignments never overlap for two samples in a row.
    let mut overlap_before = BTreeSet::new();
    let mut split = false;
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        let (sa, sb) = (a.stats().assignment, b.stats().assignment);
        let overlap: BTreeSet<_> = sa.iter().filter(|tp| sb.contains(tp)).cloned().collect();
        let both = overlap.intersection(&overlap_before).count();
        assert_eq!(both, 0, "partitions {overlap:?} owned by both members");
        overlap_before = overlap;
        if !sa.is_empty() && !sb.is_empty() && sa.len() + sb.len() == 4 {
            split = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        split,
        "the members never split the partitions: A {:?}, B {:?}",
        a.stats().assignment,
        b.stats().assignment
    );
    wait_until(Duration::from_secs(30), "the first 800", || {
        let mut all: Vec<(i32, i64)> = seen_a.lock().unwrap().clone();
        all.extend(seen_b.lock().unwrap().iter());
        all.sort_unstable();
        all.dedup();
        all.len() >= 800
    });
    // A crashes: no LeaveGroup, no more heartbeats or commits.
    crash_a.crash();
    rt.block_on(async {
        for p in 0..4 {
            produce(&c, &topic, p, 100, 10).await;
        }
    });
    let took_over = Instant::now();
    wait_until(Duration::from_secs(60), "B to own all 4 partitions", || {
        b.stats().assignment.len() == 4
    });
    eprintln!("B took over {:?} after the crash", took_over.elapsed());
    let want = expected(&[(0, 300), (1, 300), (2, 300), (3, 300)]);
    wait_until(Duration::from_secs(30), "every message handled", || {
        let mut all: Vec<(i32, i64)> = seen_a.lock().unwrap().clone();
        all.extend(seen_b.lock().unwrap().iter());
        all.sort_unstable();
        all.dedup();
        all == want
    });
    let t = Instant::now();
    let _ = a.stop();
    let rb = b.stop().unwrap();
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(rb.final_state, State::Stopped, "{rb:?}");
    assert_in_order(&seen_b.lock().unwrap());
}

fn rich(i: u8, value: Option<Vec<u8>>) -> Record {
    Record {
        key: i.is_multiple_of(2).then(|| vec![b'k', i]),
        value,
        headers: BTreeMap::from([
            ("a-header".to_string(), vec![i, 0, 255]),
            ("b-header".to_string(), Vec::new()),
        ]),
        timestamp: now(),
    }
}

#[test]
fn keys_headers_null_and_empty_payloads_and_compressed_batches_arrive_intact() {
    let Some(bootstrap) = bootstrap("payloads") else {
        return;
    };
    init_tracing();
    let topic = unique("ktm-payloads");
    let rt = runtime();
    let mut sent = Vec::new();
    rt.block_on(async {
        let c = client(&bootstrap).await;
        create_topic(&c, &topic, 1).await;
        let pc = c
            .partition_client(topic.as_str(), 0, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut i = 0_u8;
        for compression in [
            Compression::NoCompression,
            Compression::Gzip,
            Compression::Snappy,
        ] {
            let batch: Vec<Record> = [
                None,
                Some(Vec::new()),
                Some(vec![7; 3000]),
                Some(b"hello".to_vec()),
            ]
            .into_iter()
            .map(|v| {
                i += 1;
                rich(i, v)
            })
            .collect();
            sent.extend(batch.clone());
            pc.produce(batch, compression).await.unwrap();
        }
    });
    let got: Arc<Mutex<Vec<Message>>> = Arc::default();
    let sink = Arc::clone(&got);
    let source = common::source(&bootstrap, &unique("g"))
        .assign([TopicPartition::new(topic.as_str(), 0)])
        .build()
        .unwrap();
    let m = ThreadManager::builder(source)
        .thread_lifetime(None)
        .callback(move |m: &Message| -> Result<(), std::io::Error> {
            sink.lock().unwrap().push(m.clone());
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    wait_until(Duration::from_secs(30), "12 messages", || {
        got.lock().unwrap().len() >= sent.len()
    });
    let report = m.stop().unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), sent.len());
    for (i, (m, r)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(m.offset(), i64::try_from(i).unwrap());
        assert_eq!(m.key(), r.key.as_deref(), "key of {i}");
        assert_eq!(m.payload(), r.value.as_deref(), "payload of {i}");
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .iter()
            .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
            .collect();
        let want: Vec<(String, Option<Vec<u8>>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        assert_eq!(headers, want, "headers of {i}");
        assert_eq!(
            m.timestamp().map(|t| t.millis()),
            Some(r.timestamp.timestamp_millis())
        );
    }
    assert_eq!(
        report
            .committed
            .get(&TopicPartition::new(topic.as_str(), 0)),
        Some(12)
    );
}

#[test]
fn an_unreachable_broker_shows_poll_errors_and_stop_is_prompt() {
    // No broker needed: nothing listens on port 1.
    init_tracing();
    let source = RskafkaSource::builder()
        .bootstrap_servers(["127.0.0.1:1"])
        .topics(["t"])
        .group_id("g")
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let m = ThreadManager::builder(source)
        .thread_lifetime(None)
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
        .build()
        .unwrap();
    m.start().unwrap();
    wait_until(Duration::from_secs(20), "two poll errors", || {
        m.stats().counts.poll_errors >= 2
    });
    assert_eq!(m.state(), State::Running);
    assert!(m.stats().last_error.unwrap().contains("rskafka"));
    let t = Instant::now();
    let report = m.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(report.counts.poll_errors >= 2);
    assert_eq!(report.final_state, State::Stopped);
}

/// Produces `n` records to `topic[partition]` in batches of `per_batch`, valued
/// `"{partition}-{i}"` for i from `first`.
async fn produce_numbered(
    c: &rskafka::client::Client,
    topic: &str,
    partition: i32,
    first: usize,
    n: usize,
    per_batch: usize,
) {
    let pc = c
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let mut i = first;
    while i < first + n {
        let k = per_batch.min(first + n - i);
        let batch = (i..i + k)
            .map(|j| record(format!("{partition}-{j}").into_bytes()))
            .collect();
        pc.produce(batch, Compression::NoCompression).await.unwrap();
        i += k;
    }
}

/// What direct polls of a source returned.
#[derive(Default)]
struct Polled {
    /// (partition, offset) of each record, in order.
    seen: Vec<(i32, i64)>,
    events: Vec<SourceEvent>,
    /// The last high watermark reported per partition.
    high_watermarks: BTreeMap<i32, i64>,
}

impl Polled {
    fn offsets(&self, partition: i32) -> Vec<i64> {
        self.seen
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|&(_, o)| o)
            .collect()
    }
}

/// Polls `source` once into `polled`; checks each partition's high watermark is
/// reported at most once per poll.
async fn poll_once(source: &mut RskafkaSource, batch: &mut PollBatch, polled: &mut Polled) {
    batch.clear();
    source
        .poll(Duration::from_millis(200), batch)
        .await
        .unwrap();
    polled.events.extend(batch.events().iter().cloned());
    polled
        .seen
        .extend(batch.messages().iter().map(|m| (m.partition(), m.offset())));
    let reported: Vec<i32> = batch
        .high_watermarks()
        .iter()
        .map(|(tp, _)| tp.partition())
        .collect();
    let unique: BTreeSet<i32> = reported.iter().copied().collect();
    assert_eq!(
        reported.len(),
        unique.len(),
        "a high watermark reported twice in one poll"
    );
    for (tp, hw) in batch.high_watermarks() {
        polled.high_watermarks.insert(tp.partition(), *hw);
    }
}

#[test]
fn a_paused_partition_stops_while_the_member_stays_and_resumes_right_after_the_last_record() {
    let Some(bootstrap) = bootstrap("pause_resume") else {
        return;
    };
    init_tracing();
    let topic = unique("ktm-pause");
    let rt = runtime();
    const N: usize = 300;
    rt.block_on(async {
        let c = client(&bootstrap).await;
        create_topic(&c, &topic, 2).await;
        for p in 0..2 {
            produce_numbered(&c, &topic, p, 0, N, 10).await;
        }
    });
    let p0 = TopicPartition::new(topic.as_str(), 0);
    let mut source = common::source(&bootstrap, &unique("g"))
        .topics([topic.as_str()])
        // Small fetches and a small prefetch budget: partition 0 is many fetches long,
        // so the pause comes while it is still being fetched.
        .max_partition_fetch_bytes(1024)
        .queued_max_bytes(2048)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut batch = PollBatch::new();
        let mut polled = Polled::default();
        let limit = Instant::now() + Duration::from_secs(30);
        while polled.offsets(0).len() < 20 {
            assert!(
                Instant::now() < limit,
                "partition 0 never arrived: {:?}",
                polled.events
            );
            poll_once(&mut source, &mut batch, &mut polled).await;
        }
        assert_eq!(
            polled.events,
            [SourceEvent::Assigned(vec![
                p0.clone(),
                TopicPartition::new(topic.as_str(), 1)
            ])]
        );
        let last_returned = *polled.offsets(0).last().unwrap();
        assert!(
            last_returned < N as i64 - 1,
            "partition 0 was read to its end before the pause"
        );
        source.pause(std::slice::from_ref(&p0)).unwrap();

        // Longer than the session timeout: a member that stopped heartbeating (or polling)
        // would be evicted and see its partitions revoked or lost.
        let paused_at = polled.seen.len();
        let more_for_p1 = spawn_produce_to_p1(&bootstrap, &topic, N);
        let pause_end = Instant::now() + SESSION + Duration::from_secs(2);
        while Instant::now() < pause_end {
            poll_once(&mut source, &mut batch, &mut polled).await;
        }
        more_for_p1.await.unwrap();
        // Still paused: partition 1 goes on to its end, however slowly the broker answers
        // (the window above only proves the member outlives its session timeout).
        let limit = Instant::now() + Duration::from_secs(30);
        while polled.offsets(1).len() < N + 20 && Instant::now() < limit {
            poll_once(&mut source, &mut batch, &mut polled).await;
        }
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
        assert_eq!(
            polled.events.len(),
            1,
            "the member left or lost its partitions: {:?}",
            polled.events
        );
        assert_eq!(
            polled.offsets(1),
            (0..N as i64 + 20).collect::<Vec<_>>(),
            "partition 1 went on while 0 was paused, records produced during the pause included"
        );

        source.resume(std::slice::from_ref(&p0)).unwrap();
        let resumed_at = polled.seen.len();
        let limit = Instant::now() + Duration::from_secs(30);
        while polled.offsets(0).len() < N {
            assert!(Instant::now() < limit, "partition 0 did not resume");
            poll_once(&mut source, &mut batch, &mut polled).await;
        }
        let first_after = polled.seen[resumed_at..].iter().find(|(p, _)| *p == 0);
        assert_eq!(
            first_after,
            Some(&(0, last_returned + 1)),
            "no gap, no repeat"
        );
        assert_eq!(polled.offsets(0), (0..N as i64).collect::<Vec<_>>());
        assert_eq!(polled.events.len(), 1, "{:?}", polled.events);
        assert_eq!(
            polled.high_watermarks,
            BTreeMap::from([(0, N as i64), (1, N as i64 + 20)]),
            "each partition's high watermark, as of its last fetch"
        );
        source.close().await.unwrap();
    });
}

/// Produces 20 more records to partition 1 in the background, numbered from `first`.
fn spawn_produce_to_p1(bootstrap: &str, topic: &str, first: usize) -> tokio::task::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = client(&bootstrap).await;
        produce_numbered(&c, &topic, 1, first, 20, 10).await;
    })
}

#[test]
fn stats_show_each_partitions_high_watermark_and_no_lag_once_everything_is_handled() {
    let Some(bootstrap) = bootstrap("high_watermarks") else {
        return;
    };
    init_tracing();
    let topic = unique("ktm-hw");
    let rt = runtime();
    let counts = [(0, 120_i64), (1, 75)];
    rt.block_on(async {
        let c = client(&bootstrap).await;
        create_topic(&c, &topic, 2).await;
        for (p, n) in counts {
            produce(&c, &topic, p, usize::try_from(n).unwrap(), 10).await;
        }
    });
    let seen = Seen::default();
    let source = common::source(&bootstrap, &unique("g"))
        .topics([topic.as_str()])
        .build()
        .unwrap();
    let m = manager(source, &seen);
    m.start().unwrap();
    wait_until(Duration::from_secs(60), "every message", || {
        seen.lock().unwrap().len() >= 195
    });
    // Lag counts from the committed position: the default policy commits every 5 s.
    wait_until(
        Duration::from_secs(20),
        "high watermarks and zero lag",
        || {
            let partitions = m.stats().partitions;
            counts.iter().all(|&(p, n)| {
                partitions.iter().any(|s| {
                    s.tp.partition() == p && s.high_watermark == Some(n) && s.lag == Some(0)
                })
            })
        },
    );
    let partitions = m.stats().partitions;
    let report = m.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    eprintln!("{partitions:?}");
}
