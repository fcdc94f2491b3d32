//! Proof that a record written by another client reaches the callback exactly as it was
//! written, on both backends (issue 16, "Proof (tests in CI)").
//!
//! librdkafka's producer (the `rdkafka` crate, idempotent, lingering so that records
//! share batches) writes, with each `compression.codec` of none, gzip, snappy, lz4 and
//! zstd: a null and an empty key and value in every combination, binary (non-UTF-8) keys
//! and values, a 1 MiB value, and headers with a non-ASCII name, an empty value, a
//! repeated name and a null value, in that order; every record with an explicit
//! timestamp, one of them earlier than the record before it. A manager on the rskafka
//! backend and one on the rdkafka backend each read the partition, and every field of
//! every message is compared with what was sent: topic, partition, offset, key and
//! payload (null distinct from empty), headers (order, repeats, null distinct from
//! empty) and the timestamp with its type.
//!
//! Each case runs on librdkafka's in-process mock cluster, and again on the broker
//! named by `KAFKA_BOOTSTRAP_SERVERS` (Tansu in CI) when it is set (the `_tansu` tests
//! say why they skip otherwise).
//!
//! LogAppendTime: neither broker here stamps it (the mock cluster has no topic configs
//! and keeps batches as produced; Tansu 0.6.0 answers every Produce with
//! `log_append_time_ms = -1`, `tansu-storage` `service/produce.rs`). So the
//! `log_append_time_*` tests write, by hand, a batch as a broker serves it after
//! stamping it (the LogAppendTime attribute, the append time as its max timestamp, the
//! records' own timestamps left as the producer set them) to the mock cluster, and
//! expect the append time, as LogAppendTime, on every message.
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proof;
mod support;

use std::time::Duration;

use kafka_thread_manager::rdkafka::{rdkafka, RdkafkaSource};
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{
    ConsumerConfig, Message, OffsetReset, State, Timestamp, TopicPartition,
};
use proof::wire::{self, RawRecord};
use proof::{unique, Collected};
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use support::KafkaBroker;

/// The records go to partition 1 of a two-partition topic, so that a reader that
/// reported partition 0 regardless would be caught.
const PARTITION: i32 = 1;
/// How long a manager may take to read a case's records.
const PATIENCE: Duration = Duration::from_secs(45);
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;
/// The size of the large value: above librdkafka's default `message.max.bytes`.
const BIG: usize = 1 << 20;

/// One record as the producer wrote it.
#[derive(Clone, Debug)]
struct Sent {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

fn header(name: &str, value: Option<&[u8]>) -> (String, Option<Vec<u8>>) {
    (name.to_owned(), value.map(<[u8]>::to_vec))
}

/// `len` bytes of numbered lines: compressible (librdkafka sends a batch uncompressed
/// when compressing would not make it smaller), and any byte out of place shows.
fn lines(tag: &str, len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 64);
    let mut i = 0;
    while text.len() < len {
        text.extend_from_slice(format!("{tag} line {i:07}\n").as_bytes());
        i += 1;
    }
    text.truncate(len);
    text
}

fn samples() -> Vec<Sent> {
    let at = |i: i64| BASE_TIMESTAMP + i * 1_000;
    let plain = |key: Option<&[u8]>, payload: Option<&[u8]>, timestamp| Sent {
        key: key.map(<[u8]>::to_vec),
        payload: payload.map(<[u8]>::to_vec),
        headers: Vec::new(),
        timestamp,
    };
    vec![
        plain(None, None, at(0)),
        plain(Some(b""), Some(b""), at(1)),
        plain(None, Some(b""), at(2)),
        // Earlier than the record before it: a negative timestamp delta in the batch.
        plain(Some(b""), None, at(2) - 5_000),
        // Not UTF-8.
        plain(
            Some(&[0x00, 0xff, 0xfe, 0x80, 0xc3, 0x28]),
            Some(&[0xc3, 0x28, 0x00, 0xff, 0xa0, 0xa1]),
            at(4),
        ),
        Sent {
            key: Some(b"headers".to_vec()),
            payload: Some(lines("with headers", 2_000)),
            headers: vec![
                header("ünïcode", Some("välue ✓".as_bytes())),
                header("empty", Some(b"")),
                header("dup", Some(b"1")),
                header("dup", Some(b"2")),
                header("nul", None),
            ],
            timestamp: at(5),
        },
        plain(Some(b"big"), Some(&lines("big", BIG)), at(6)),
        // After the big one: the reader must get past it.
        Sent {
            key: Some(b"after".to_vec()),
            payload: Some(lines("after the big value", 2_000)),
            headers: vec![header("dup", Some(b"x"))],
            timestamp: at(7),
        },
    ]
}

/// Writes `sent` to `topic[PARTITION]` with librdkafka's producer and `codec`; the
/// offset of each record.
fn produce(broker: &KafkaBroker, topic: &str, codec: &str, sent: &[Sent]) -> Vec<i64> {
    let producer: FutureProducer = match ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("compression.codec", codec)
        .set("enable.idempotence", "true")
        // Lets the records share batches: the reader must split them.
        .set("linger.ms", "100")
        // Room for the 1 MiB value (the default is 1,000,000 bytes).
        .set("message.max.bytes", "4000000")
        .set("message.timeout.ms", "30000")
        .create()
    {
        Ok(p) => p,
        Err(e) => panic!(
            "librdkafka refused compression.codec={codec}: {e} (zstd needs rdkafka's `zstd` feature)"
        ),
    };
    let deliveries: Vec<_> = sent
        .iter()
        .map(|s| {
            let headers = (!s.headers.is_empty()).then(|| {
                s.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(RdHeader {
                        key: k,
                        value: v.as_deref(),
                    })
                })
            });
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord {
                topic,
                partition: Some(PARTITION),
                payload: s.payload.as_deref(),
                key: s.key.as_deref(),
                timestamp: Some(s.timestamp),
                headers,
            };
            producer.send_result(record).map_err(|(e, _)| e).unwrap()
        })
        .collect();
    let offsets = broker.block_on(async {
        let mut offsets = Vec::new();
        for delivery in deliveries {
            let delivered = delivery
                .await
                .expect("delivery report")
                .map_err(|(e, _)| e)
                .expect("delivered");
            assert_eq!(delivered.partition, PARTITION, "librdkafka wrote elsewhere");
            offsets.push(delivered.offset);
        }
        offsets
    });
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "librdkafka wrote out of order: {offsets:?}"
    );
    offsets
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Rskafka,
    Rdkafka,
}

#[derive(Clone, Copy, Debug)]
enum On {
    MockCluster,
    Tansu,
}

fn broker(on: On, test: &str) -> Option<KafkaBroker> {
    // RUST_LOG=ktm_rskafka=debug,ktm_rdkafka=debug shows the backends' view.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    match on {
        On::MockCluster => KafkaBroker::mock_cluster(test),
        On::Tansu => KafkaBroker::external(test),
    }
}

/// A manager on `backend` reading `topic[PARTITION]` from the start, until the message
/// at `last` arrived; every message it handled.
fn read(backend: Backend, bootstrap: &str, topic: &str, last: i64) -> Vec<Message> {
    let config = ConsumerConfig::builder()
        .bootstrap_servers([bootstrap.to_owned()])
        .assign([TopicPartition::new(topic, PARTITION)])
        .group_id(unique("fidelity"))
        .offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(100))
        .max_partition_fetch_bytes(4 << 20)
        .fetch_max_bytes(8 << 20)
        .build()
        .unwrap();
    let collected = match backend {
        Backend::Rskafka => Collected::start(
            RskafkaSource::builder().config(config).build().unwrap(),
            Duration::from_secs(30),
        ),
        Backend::Rdkafka => Collected::start(
            RdkafkaSource::builder().config(config).build().unwrap(),
            Duration::from_secs(30),
        ),
    };
    collected.wait_for(&format!("message at offset {last}"), PATIENCE, |seen| {
        seen.iter().any(|m| m.offset() >= last)
    });
    let (seen, report) = collected.stop();
    assert_eq!(report.final_state, State::Stopped, "{report:?}");
    seen
}

/// Every difference between what was sent (at its offsets) and what the callback got,
/// field by field; fails listing them all.
fn assert_delivered(
    what: &str,
    topic: &str,
    sent: &[(i64, Sent)],
    got: &[Message],
    timestamp: impl Fn(&Sent) -> Timestamp,
) {
    let want: Vec<(i32, i64)> = sent.iter().map(|(o, _)| (PARTITION, *o)).collect();
    assert_eq!(
        proof::offsets(got),
        want,
        "{what}: which records arrived (partition, offset)"
    );
    let mut wrong = Vec::new();
    for ((offset, s), m) in sent.iter().zip(got) {
        let at = format!("offset {offset}");
        if m.topic() != topic {
            wrong.push(format!("{at}: topic {:?}", m.topic()));
        }
        if let Some(d) = bytes_differ(s.key.as_deref(), m.key()) {
            wrong.push(format!("{at}: key: {d}"));
        }
        if let Some(d) = bytes_differ(s.payload.as_deref(), m.payload()) {
            wrong.push(format!("{at}: payload: {d}"));
        }
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .iter()
            .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
            .collect();
        if headers != s.headers {
            wrong.push(format!(
                "{at}: headers: sent {:?}, read {headers:?}",
                s.headers
            ));
        }
        let ts = timestamp(s);
        if m.timestamp() != Some(ts) {
            wrong.push(format!(
                "{at}: timestamp: sent {ts:?}, read {:?}",
                m.timestamp()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{what}: {} field(s) differ:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

/// How two keys or payloads differ (lengths and the first differing byte, not a
/// megabyte of text), if they do; null is not empty.
fn bytes_differ(sent: Option<&[u8]>, read: Option<&[u8]>) -> Option<String> {
    match (sent, read) {
        (None, None) => None,
        (Some(s), Some(r)) if s == r => None,
        (Some(s), Some(r)) => {
            let at = s
                .iter()
                .zip(r)
                .position(|(a, b)| a != b)
                .unwrap_or(s.len().min(r.len()));
            let near = |b: &[u8]| b[at.min(b.len())..(at + 8).min(b.len())].to_vec();
            Some(format!(
                "sent {} bytes, read {}; first difference at byte {at}: sent {:?}, read {:?}",
                s.len(),
                r.len(),
                near(s),
                near(r)
            ))
        }
        (s, r) => {
            let describe =
                |b: Option<&[u8]>| b.map_or("null".to_owned(), |b| format!("{} bytes", b.len()));
            Some(format!("sent {}, read {}", describe(s), describe(r)))
        }
    }
}

fn fidelity(codec: &str, backend: Backend, on: On) {
    let test = format!("record_fidelity {codec} {backend:?} on {on:?}");
    let Some(broker) = broker(on, &test) else {
        return;
    };
    let topic = unique(&format!("fidelity-{codec}"));
    broker.create_topic(&topic, 2);
    let sent = samples();
    let offsets = produce(&broker, &topic, codec, &sent);
    // The case tests the codec only if the batches really are compressed with it.
    let batches = wire::log_batches(&broker.bootstrap, &topic, PARTITION);
    assert!(!batches.is_empty(), "{test}: no batch in the log");
    for b in &batches {
        assert_eq!(
            b.codec(),
            codec,
            "{test}: librdkafka wrote the batch at offset {} ({} records) with another codec",
            b.base_offset,
            b.record_count
        );
    }
    let sent: Vec<(i64, Sent)> = offsets.into_iter().zip(sent).collect();
    let last = sent.last().unwrap().0;

    let got = read(backend, &broker.bootstrap, &topic, last);
    assert_delivered(&test, &topic, &sent, &got, |s| {
        Timestamp::CreateTime(s.timestamp)
    });
}

macro_rules! fidelity_tests {
    ($($name:ident: $codec:literal, $backend:ident, $on:ident;)*) => {$(
        #[test]
        fn $name() {
            fidelity($codec, Backend::$backend, On::$on);
        }
    )*};
}

fidelity_tests! {
    none_rskafka_mockcluster: "none", Rskafka, MockCluster;
    gzip_rskafka_mockcluster: "gzip", Rskafka, MockCluster;
    snappy_rskafka_mockcluster: "snappy", Rskafka, MockCluster;
    lz4_rskafka_mockcluster: "lz4", Rskafka, MockCluster;
    zstd_rskafka_mockcluster: "zstd", Rskafka, MockCluster;
    none_rdkafka_mockcluster: "none", Rdkafka, MockCluster;
    gzip_rdkafka_mockcluster: "gzip", Rdkafka, MockCluster;
    snappy_rdkafka_mockcluster: "snappy", Rdkafka, MockCluster;
    lz4_rdkafka_mockcluster: "lz4", Rdkafka, MockCluster;
    zstd_rdkafka_mockcluster: "zstd", Rdkafka, MockCluster;
    none_rskafka_tansu: "none", Rskafka, Tansu;
    gzip_rskafka_tansu: "gzip", Rskafka, Tansu;
    snappy_rskafka_tansu: "snappy", Rskafka, Tansu;
    lz4_rskafka_tansu: "lz4", Rskafka, Tansu;
    zstd_rskafka_tansu: "zstd", Rskafka, Tansu;
    none_rdkafka_tansu: "none", Rdkafka, Tansu;
    gzip_rdkafka_tansu: "gzip", Rdkafka, Tansu;
    snappy_rdkafka_tansu: "snappy", Rdkafka, Tansu;
    lz4_rdkafka_tansu: "lz4", Rdkafka, Tansu;
    zstd_rdkafka_tansu: "zstd", Rdkafka, Tansu;
}

// ---- LogAppendTime ----

/// When the (pretend) broker appended the batch: later than, and different from, every
/// record's own timestamp.
const APPEND_TIME: i64 = BASE_TIMESTAMP + 86_400_000;

fn log_append_time(backend: Backend) {
    let test = format!("log_append_time {backend:?}");
    eprintln!(
        "NOTE {test}: no broker here stamps LogAppendTime itself (the mock cluster keeps \
         batches as produced; Tansu 0.6.0 answers log_append_time_ms = -1), so a batch \
         as a broker serves it after stamping is written by hand to the mock cluster"
    );
    let Some(broker) = broker(On::MockCluster, &test) else {
        return;
    };
    let topic = unique("append-time");
    broker.create_topic(&topic, 2);
    let sent: Vec<Sent> = [
        (Some(&b"k0"[..]), Some(&b"v0"[..]), BASE_TIMESTAMP),
        (None, Some(&b""[..]), BASE_TIMESTAMP + 10),
        (Some(&b""[..]), None, BASE_TIMESTAMP - 20),
    ]
    .into_iter()
    .map(|(key, payload, timestamp)| Sent {
        key: key.map(<[u8]>::to_vec),
        payload: payload.map(<[u8]>::to_vec),
        // One plain header: the header cases are the other tests'; this one is about
        // the timestamp.
        headers: vec![header("h", Some(b"1"))],
        timestamp,
    })
    .collect();
    let raw: Vec<RawRecord> = sent
        .iter()
        .map(|s| RawRecord {
            key: s.key.clone(),
            value: s.payload.clone(),
            headers: s.headers.clone(),
            timestamp: s.timestamp,
        })
        .collect();
    // The mock cluster has one broker: it leads every partition.
    let base = wire::produce(
        &broker.bootstrap,
        &topic,
        PARTITION,
        &wire::record_batch(&raw, Some(APPEND_TIME)),
    );
    let sent: Vec<(i64, Sent)> = (base..).zip(sent).collect();
    let last = sent.last().unwrap().0;

    let got = read(backend, &broker.bootstrap, &topic, last);
    assert_delivered(&test, &topic, &sent, &got, |_| {
        Timestamp::LogAppendTime(APPEND_TIME)
    });
}

#[test]
fn log_append_time_rskafka_mockcluster() {
    log_append_time(Backend::Rskafka);
}

#[test]
fn log_append_time_rdkafka_mockcluster() {
    log_append_time(Backend::Rdkafka);
}

/// The hand-built batches carry the right checksum: the CRC-32C check value.
#[test]
fn crc32c_of_the_hand_built_batches_is_castagnoli() {
    assert_eq!(wire::crc32c(b"123456789"), 0xE306_9283);
}
