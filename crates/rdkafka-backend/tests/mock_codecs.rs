//! Compressed records and unreadable ones, on librdkafka's in-process mock cluster (no
//! broker needed): batches of every codec librdkafka is built with (zstd through the
//! `rdkafka` crate's `zstd` feature; lz4, snappy and gzip are built in) reach the
//! callback through the manager, and a consume error that retrying cannot fix stops the
//! manager `Failed`, naming the partition and offset.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mock::Cluster;
use common::unique;
use ktm_core::{
    CommitPolicy, Message, OffsetReset, State, StopReason, ThreadManager, TopicPartition,
};
use ktm_rdkafka::rdkafka::client::ClientContext;
use ktm_rdkafka::rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext,
};
use ktm_rdkafka::rdkafka::statistics::Statistics;
use ktm_rdkafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use ktm_rdkafka::rdkafka::ClientConfig;
use ktm_rdkafka::RdkafkaSource;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const PER_CODEC: i64 = 100;
const LIMIT: Duration = Duration::from_secs(60);

/// Keeps the producer's last statistics, to tell how many bytes went on the wire.
#[derive(Default)]
struct LastStats(Mutex<Option<Statistics>>);

impl ClientContext for LastStats {
    fn stats(&self, statistics: Statistics) {
        *self.0.lock().unwrap() = Some(statistics);
    }
}

impl ProducerContext for LastStats {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            panic!("delivery failed: {e}");
        }
    }
}

/// A compressible payload, so that librdkafka keeps the compressed batch (it sends a
/// batch uncompressed when compressing does not make it smaller).
fn payload(codec: &str, i: i64) -> String {
    format!("{codec}-{i}-{}", "abcd".repeat(500))
}

/// Sends [`PER_CODEC`] records to `partition`, compressed with `codec`; returns the
/// bytes the producer sent to the broker and the records' own bytes.
fn produce(bootstrap: &str, topic: &str, partition: i32, codec: &str) -> (i64, i64) {
    let producer: BaseProducer<LastStats> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "50")
        .set("statistics.interval.ms", "100")
        .create_with_context(LastStats::default())
        .unwrap_or_else(|e| panic!("a producer with compression.type={codec}: {e}"));
    for i in 0..PER_CODEC {
        let body = payload(codec, i);
        let record = BaseRecord::<str, str>::to(topic)
            .partition(partition)
            .payload(&body);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        producer.poll(Duration::from_millis(100));
        let stats = producer.context().0.lock().unwrap().clone();
        if let Some(s) = stats.filter(|s| s.txmsgs == PER_CODEC) {
            return (s.tx_bytes, s.txmsg_bytes);
        }
        assert!(
            Instant::now() < deadline,
            "no statistics of the {codec} producer"
        );
    }
}

#[test]
fn records_of_every_codec_arrive_through_the_manager() {
    let cluster = Cluster::new(1);
    let partitions = CODECS.len() as i32;
    let topic = cluster.topic(partitions, 1);
    for (partition, codec) in (0..).zip(CODECS) {
        let (wire, records) = produce(&cluster.bootstrap, &topic, partition, codec);
        eprintln!("{codec}: {records} bytes of records, {wire} bytes sent");
        if codec == "none" {
            assert!(wire > records, "{codec}: {wire} <= {records}");
        } else {
            assert!(
                wire < records / 4,
                "{codec} did not compress: {wire} bytes sent for {records}"
            );
        }
    }

    let source = RdkafkaSource::builder()
        .bootstrap_servers([cluster.bootstrap.as_str()])
        .assign((0..partitions).map(|p| TopicPartition::new(topic.as_str(), p)))
        .group_id(unique("g"))
        .offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let manager = ThreadManager::builder(source)
        .callback(move |m: &Message| -> Result<(), std::io::Error> {
            let text = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
            log.lock().unwrap().push((m.partition(), m.offset(), text));
            Ok(())
        })
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .commit_policy(CommitPolicy::EveryN(50))
        .build()
        .unwrap();
    manager.start().unwrap();
    let total = CODECS.len() * PER_CODEC as usize;
    let deadline = Instant::now() + LIMIT;
    while seen.lock().unwrap().len() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = manager.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    let mut seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total, "{report:?}");
    seen.sort();
    for ((partition, codec), records) in (0..).zip(CODECS).zip(seen.chunks(PER_CODEC as usize)) {
        for (i, (p, offset, text)) in (0..).zip(records) {
            assert_eq!((*p, *offset), (partition, i), "{codec}");
            assert!(
                *text == payload(codec, i),
                "{codec}: record {i} is {text:.20}.."
            );
        }
        let tp = TopicPartition::new(topic.as_str(), partition);
        assert_eq!(report.committed.get(&tp), Some(PER_CODEC), "{codec}");
    }
}

#[test]
fn a_consume_error_retrying_cannot_fix_stops_the_manager_failed() {
    let cluster = Cluster::new(1);
    let topic = cluster.topic(1, 1);
    produce(&cluster.bootstrap, &topic, 0, "lz4");
    let source = RdkafkaSource::builder()
        .bootstrap_servers([cluster.bootstrap.as_str()])
        .assign([TopicPartition::new(topic.as_str(), 0)])
        .group_id(unique("g"))
        .offset_reset(OffsetReset::Earliest)
        .build()
        .unwrap();
    let handled = Arc::new(Mutex::new(0_i64));
    let count = Arc::clone(&handled);
    let manager = ThreadManager::builder(source)
        .callback(move |_: &Message| -> Result<(), std::io::Error> {
            *count.lock().unwrap() += 1;
            Ok(())
        })
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    manager.start().unwrap();
    let deadline = Instant::now() + LIMIT;
    while *handled.lock().unwrap() < PER_CODEC {
        assert!(Instant::now() < deadline, "records not handled");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The broker answers the next fetch with CORRUPT_MESSAGE for the partition, which
    // librdkafka hands over as that partition's consumer error at its fetch position.
    cluster.mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_MSG],
    );
    let report = manager.wait(Some(LIMIT)).unwrap();
    assert_eq!(report.final_state, State::Failed, "{report:?}");
    let StopReason::SourceFailed(reason) = &report.reason else {
        panic!("{report:?}");
    };
    let reason = reason.to_string();
    let at = format!("{topic}[0] at offset {PER_CODEC}");
    assert!(reason.contains(&at), "{reason}");
    assert!(reason.contains("Broker: Invalid message"), "{reason}");
    assert_eq!(report.counts.poll_errors, 0, "never retried: {report:?}");
    assert_eq!(
        report
            .committed
            .get(&TopicPartition::new(topic.as_str(), 0)),
        Some(PER_CODEC),
        "what was handled is committed: {report:?}"
    );
}
