#![allow(clippy::unwrap_used)]
//! Cross-client check against a real broker: records produced by librdkafka (gzip and
//! snappy batches) are consumed by the rskafka backend, and records produced by
//! rskafka's client (gzip and snappy) are consumed by the rdkafka backend, each through
//! a `ThreadManager`. Keys, payloads (null distinct from empty), headers, timestamps
//! and offsets must come through unchanged.
//!
//! Every topic is fresh and read from offset 0, so multi-record (compressed) batches are
//! safe on Tansu 0.6.0 here. Header values are unique and non-null and header names are
//! sorted and unique: rskafka keeps headers in a map (sorted, a null value reads as
//! empty), which is documented, not what this test checks.
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_thread_manager::rdkafka::rdkafka;
use kafka_thread_manager::rdkafka::RdkafkaSource;
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{
    CommitPolicy, Message, MessageSource, OffsetReset, State, ThreadManager,
};
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rskafka::chrono::DateTime;
use rskafka::client::partition::Compression;
use rskafka::record::Record;
use support::{consumer_config, KafkaBroker};

/// How long a consumer may take to join and read everything.
const PATIENCE: Duration = Duration::from_secs(60);
const RECORDS: usize = 40;
/// rskafka's producer gives every record of a batch the same timestamp here.
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// One record as both sides see it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sample {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

/// Keys and payloads that are absent, empty, short and long (compressible), and zero to
/// four headers with unique names (in sorted order) and unique binary values.
fn samples(tag: &str, timestamp: impl Fn(usize) -> i64) -> Vec<Sample> {
    (0..RECORDS)
        .map(|i| Sample {
            offset: i64::try_from(i).unwrap(),
            key: match i % 4 {
                0 => None,
                1 => Some(Vec::new()),
                2 => Some(format!("key-{i}").into_bytes()),
                _ => Some(vec![0, 0xff, u8::try_from(i).unwrap(), b'k']),
            },
            payload: match i % 3 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(format!("{tag} payload {i} ").repeat(1 + i * 7).into_bytes()),
            },
            headers: (0..i % 5)
                .map(|h| {
                    (
                        format!("h{h}-{}", ["alpha", "beta", "gamma", "delta"][h]),
                        format!("{tag}/{i}/{h}\u{e9}\0").into_bytes(),
                    )
                })
                .collect(),
            timestamp: Some(timestamp(i)),
        })
        .collect()
}

fn observed(msg: &Message) -> Sample {
    Sample {
        offset: msg.offset(),
        key: msg.key().map(<[u8]>::to_vec),
        payload: msg.payload().map(<[u8]>::to_vec),
        headers: msg
            .headers()
            .iter()
            .map(|h| {
                let value = h.value.as_ref().expect("a non-null header value").to_vec();
                (h.key.clone(), value)
            })
            .collect(),
        timestamp: msg.timestamp().map(|t| t.millis()),
    }
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("xc-{name}-{}-{nanos}", std::process::id())
}

fn broker(test: &str) -> Option<KafkaBroker> {
    // RUST_LOG=ktm_rskafka=debug,ktm_rdkafka=debug shows the backends' view.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    KafkaBroker::any(test)
}

/// Runs a manager over `source` until it has handled `count` messages; returns them.
fn consume(source: impl MessageSource, count: usize) -> Vec<Message> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let manager = ThreadManager::builder(source)
        .callback(move |msg: &Message| -> Result<(), std::io::Error> {
            sink.lock().unwrap().push(msg.clone());
            Ok(())
        })
        .thread_lifetime(None)
        .commit_policy(CommitPolicy::EveryN(10))
        .build()
        .unwrap();
    manager.start().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while seen.lock().unwrap().len() < count {
        assert!(
            Instant::now() < deadline,
            "handled {} of {count} messages in {PATIENCE:?}; stats: {:?}",
            seen.lock().unwrap().len(),
            manager.stats()
        );
        assert_eq!(manager.state(), State::Running, "{:?}", manager.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing beyond the produced records may show up.
    std::thread::sleep(Duration::from_millis(500));
    let report = manager.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    assert_eq!(report.counts.callback_failures, 0);
    let seen = seen.lock().unwrap().clone();
    seen
}

fn assert_same(expected: &[Sample], got: &[Message], direction: &str) {
    let got: Vec<Sample> = got.iter().map(observed).collect();
    assert_eq!(got.len(), expected.len(), "{direction}: message count");
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(g, e, "{direction}: record at offset {}", e.offset);
    }
}

// ---- librdkafka produces, the rskafka backend consumes ----

fn rdkafka_to_rskafka(compression: &str) {
    let test = format!("rdkafka_{compression}_to_rskafka");
    let Some(broker) = broker(&test) else { return };
    let topic = unique(&format!("rd-{compression}"));
    broker.create_topic(&topic, 1);
    let expected = samples(&topic, |i| BASE_TIMESTAMP + i64::try_from(i).unwrap());

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("compression.type", compression)
        // Linger so that the records travel in a few compressed batches, not one each.
        .set("linger.ms", "200")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    // Enqueue everything first (one partition, in order), then wait for the deliveries.
    let deliveries: Vec<_> = expected
        .iter()
        .map(|s| {
            let headers = s.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(RdHeader {
                    key: k,
                    value: Some(v),
                })
            });
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord {
                topic: &topic,
                partition: Some(0),
                payload: s.payload.as_deref(),
                key: s.key.as_deref(),
                timestamp: s.timestamp,
                headers: Some(headers),
            };
            producer.send_result(record).map_err(|(e, _)| e).unwrap()
        })
        .collect();
    broker.block_on(async {
        for (s, delivery) in expected.iter().zip(deliveries) {
            let delivered = delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            assert_eq!(
                (delivered.partition, delivered.offset),
                (0, s.offset),
                "rdkafka delivered a record elsewhere than expected"
            );
        }
    });

    let source = RskafkaSource::builder()
        .config(consumer_config(
            &broker.bootstrap,
            &topic,
            &unique("rs-group"),
            OffsetReset::Earliest,
        ))
        .build()
        .unwrap();
    let got = consume(source, expected.len());
    assert_same(&expected, &got, &test);
}

#[test]
fn rdkafka_gzip_to_rskafka() {
    rdkafka_to_rskafka("gzip");
}

#[test]
fn rdkafka_snappy_to_rskafka() {
    rdkafka_to_rskafka("snappy");
}

// ---- rskafka's client produces, the rdkafka backend consumes ----

fn rskafka_to_rdkafka(compression: Compression, name: &str) {
    let test = format!("rskafka_{name}_to_rdkafka");
    let Some(broker) = broker(&test) else { return };
    let topic = unique(&format!("rs-{name}"));
    broker.create_topic(&topic, 1);
    let expected = samples(&topic, |_| BASE_TIMESTAMP);

    let records: Vec<Record> = expected
        .iter()
        .map(|s| Record {
            key: s.key.clone(),
            value: s.payload.clone(),
            headers: s.headers.iter().cloned().collect::<BTreeMap<_, _>>(),
            timestamp: DateTime::from_timestamp_millis(BASE_TIMESTAMP).unwrap(),
        })
        .collect();
    // Two compressed batches.
    let (first, second) = records.split_at(RECORDS / 2);
    let mut offsets = broker.produce(&topic, 0, first.to_vec(), compression);
    offsets.extend(broker.produce(&topic, 0, second.to_vec(), compression));
    let want: Vec<i64> = expected.iter().map(|s| s.offset).collect();
    assert_eq!(offsets, want, "rskafka produced at unexpected offsets");

    let source = RdkafkaSource::builder()
        .config(consumer_config(
            &broker.bootstrap,
            &topic,
            &unique("rd-group"),
            OffsetReset::Earliest,
        ))
        .build()
        .unwrap();
    let got = consume(source, expected.len());
    assert_same(&expected, &got, &test);
}

#[test]
fn rskafka_gzip_to_rdkafka() {
    rskafka_to_rdkafka(Compression::Gzip, "gzip");
}

#[test]
fn rskafka_snappy_to_rdkafka() {
    rskafka_to_rdkafka(Compression::Snappy, "snappy");
}
