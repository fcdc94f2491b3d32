//! Tests against a real broker (Tansu in CI): they read `KAFKA_BOOTSTRAP_SERVERS` and
//! skip, saying why, when it is unset. Start one with `scripts/tansu.sh start`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    check_delivery, check_exactly_once_in_order, init_tracing, produce, produce_batched, start,
    stop_within, unique, Entry, Log,
};
use ktm_core::{State, TopicPartition};
use ktm_rdkafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ktm_rdkafka::rdkafka::client::DefaultClientContext;
use ktm_rdkafka::rdkafka::ClientConfig;
use ktm_rdkafka::RdkafkaSource;

const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(180);
const STOP_BOUND: Duration = Duration::from_secs(15);

fn bootstrap(test: &str) -> Option<String> {
    init_tracing();
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(s) if !s.is_empty() => Some(s),
        _ => {
            eprintln!("skipping {test}: KAFKA_BOOTSTRAP_SERVERS is not set (start a broker with scripts/tansu.sh start)");
            None
        }
    }
}

/// Creates a topic with a random name and `PARTITIONS` partitions.
fn create_topic(bootstrap: &str) -> String {
    let topic = unique("ktm-rd");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
    for r in results {
        r.unwrap();
    }
    topic
}

fn source(bootstrap: &str, topic: &str, group: &str) -> RdkafkaSource {
    RdkafkaSource::builder()
        .bootstrap_servers(bootstrap.split(','))
        .topics([topic])
        .group_id(group)
        .session_timeout(Duration::from_millis(6000))
        .heartbeat_interval(Duration::from_millis(1000))
        .build()
        .unwrap()
}

fn handled(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, Entry::Handled(..)))
        .count()
}

#[test]
fn hundred_thousand_records_exactly_once_in_order() {
    let Some(bootstrap) = bootstrap("hundred_thousand_records_exactly_once_in_order") else {
        return;
    };
    let topic = create_topic(&bootstrap);
    let per_partition = 33_334; // 100,002 records
    produce(&bootstrap, &topic, PARTITIONS, 0, per_partition);
    let log = Arc::new(Log::default());
    let t = Instant::now();
    let manager = start(
        source(&bootstrap, &topic, &unique("g")),
        &log,
        1000,
        Duration::ZERO,
    );
    let total = (i64::from(PARTITIONS) * per_partition) as usize;
    assert!(
        log.wait_distinct(total, WAIT),
        "only {} of {total}",
        log.distinct()
    );
    eprintln!("{total} records in {:?}", t.elapsed());
    let report = stop_within(&manager, STOP_BOUND);
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    assert_eq!(report.final_commit_error, None);
    check_exactly_once_in_order(&log.entries(), PARTITIONS, per_partition);
    for p in 0..PARTITIONS {
        assert_eq!(
            report
                .committed
                .get(&TopicPartition::new(topic.as_str(), p)),
            Some(per_partition)
        );
    }
}

#[test]
fn stop_and_restart_resume_at_committed_offsets() {
    let Some(bootstrap) = bootstrap("stop_and_restart_resume_at_committed_offsets") else {
        return;
    };
    let topic = create_topic(&bootstrap);
    let group = unique("g");
    let per_partition = 2000;
    produce_batched(&bootstrap, &topic, PARTITIONS, 0, per_partition, 1);

    let first_log = Arc::new(Log::default());
    let first = start(
        source(&bootstrap, &topic, &group),
        &first_log,
        100,
        Duration::from_micros(200),
    );
    assert!(first_log.wait_distinct(1500, WAIT));
    let report = stop_within(&first, STOP_BOUND);
    assert_eq!(report.final_commit_error, None, "{report:?}");

    let second_log = Arc::new(Log::default());
    let second = start(
        source(&bootstrap, &topic, &group),
        &second_log,
        100,
        Duration::ZERO,
    );
    let total = (i64::from(PARTITIONS) * per_partition) as usize;
    let before = first_log.distinct();
    assert!(
        second_log.wait_distinct(total - before, WAIT),
        "{} + {before} of {total}",
        second_log.distinct()
    );
    stop_within(&second, STOP_BOUND);

    // The second run starts exactly where the first committed: nothing skipped, nothing again.
    for p in 0..PARTITIONS {
        let committed = report
            .committed
            .get(&TopicPartition::new(topic.as_str(), p))
            .unwrap_or(0);
        let resumed_at = second_log.entries().iter().find_map(|e| match *e {
            Entry::Handled(q, o) if q == p => Some(o),
            _ => None,
        });
        if committed < per_partition {
            assert_eq!(resumed_at, Some(committed), "partition {p}");
        } else {
            assert_eq!(resumed_at, None, "partition {p} was done");
        }
    }
    let mut all = first_log.entries();
    all.extend(second_log.entries());
    assert_eq!(check_delivery(&all, PARTITIONS, per_partition), 0);
    assert_eq!(handled(&all), total);
}

#[test]
fn two_managers_split_the_partitions_and_survive_one_dropped() {
    let Some(bootstrap) = bootstrap("two_managers_split_the_partitions_and_survive_one_dropped")
    else {
        return;
    };
    let topic = create_topic(&bootstrap);
    let group = unique("g");
    let per_partition = 3000;
    produce_batched(&bootstrap, &topic, PARTITIONS, 0, per_partition, 1);

    let log = Arc::new(Log::default());
    let work = Duration::from_millis(1);
    let a = start(source(&bootstrap, &topic, &group), &log, 50, work);
    let b = start(source(&bootstrap, &topic, &group), &log, 50, work);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (sa, sb) = (a.stats(), b.stats());
        if !sa.assignment.is_empty() && !sb.assignment.is_empty() {
            let ta: BTreeSet<_> = sa.assignment.iter().cloned().collect();
            let tb: BTreeSet<_> = sb.assignment.iter().cloned().collect();
            if ta.is_disjoint(&tb) && ta.len() + tb.len() == PARTITIONS as usize {
                eprintln!("split: {ta:?} / {tb:?}");
                break;
            }
        }
        assert!(Instant::now() < end, "no split: {sa:?} / {sb:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(log.wait_distinct(1000, WAIT));
    let t = Instant::now();
    drop(a);
    eprintln!("dropping a manager took {:?}", t.elapsed());

    let total = (i64::from(PARTITIONS) * per_partition) as usize;
    assert!(
        log.wait_distinct(total, WAIT),
        "only {} of {total}; b: {:?}",
        log.distinct(),
        b.stats()
    );
    assert_eq!(b.stats().assignment.len(), PARTITIONS as usize);
    stop_within(&b, STOP_BOUND);
    let duplicates = check_delivery(&log.entries(), PARTITIONS, per_partition);
    eprintln!("two managers: {duplicates} duplicates");
}

#[test]
fn stats_show_each_partitions_high_watermark_and_no_lag_once_everything_is_handled() {
    let Some(bootstrap) = bootstrap("stats_show_high_watermarks") else {
        return;
    };
    let topic = create_topic(&bootstrap);
    let per_partition = 150;
    produce(&bootstrap, &topic, PARTITIONS, 0, per_partition);
    let log = Arc::new(Log::default());
    let manager = start(
        source(&bootstrap, &topic, &unique("g")),
        &log,
        10,
        Duration::ZERO,
    );
    let total = (i64::from(PARTITIONS) * per_partition) as usize;
    assert!(log.wait_distinct(total, WAIT), "only {}", log.distinct());
    // librdkafka's statistics come every second; the last commit (every 10) is at the end.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let partitions = manager.stats().partitions;
        let done = (0..PARTITIONS).all(|p| {
            partitions.iter().any(|s| {
                s.tp.partition() == p && s.high_watermark == Some(per_partition) && s.lag == Some(0)
            })
        });
        if done {
            break;
        }
        assert!(Instant::now() < end, "{partitions:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = stop_within(&manager, STOP_BOUND);
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
}
