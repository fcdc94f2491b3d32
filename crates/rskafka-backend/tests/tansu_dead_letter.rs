//! The rskafka dead-letter producer against a broker (`KAFKA_BOOTSTRAP_SERVERS`, e.g.
//! from `scripts/tansu.sh start`; skipped, saying so, without it), and against none.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ktm_core::{
    DeadLetterProducer, DeadLetterRecord, Message, MessageSource, PollBatch, Timestamp,
    TopicPartition, HEADER_ATTEMPTS, HEADER_ERROR, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
};
use ktm_rskafka::{RskafkaDeadLetterProducer, RskafkaSource};

/// Reads `n` records of `tp` from the start with the backend's own consumer.
async fn read_back(bootstrap: &str, tp: &TopicPartition, n: usize) -> Vec<Message> {
    let mut source = common::source(bootstrap, &unique("g"))
        .assign([tp.clone()])
        .build()
        .unwrap();
    let mut batch = PollBatch::new();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        assert!(
            Instant::now() < end,
            "only {} of {n} dead letters read back",
            got.len()
        );
        batch.clear();
        source
            .poll(Duration::from_millis(200), &mut batch)
            .await
            .unwrap();
        got.extend(batch.messages().iter().cloned());
    }
    source.close().await.unwrap();
    got
}

fn header<'m>(m: &'m Message, key: &str) -> Option<&'m [u8]> {
    m.headers()
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.as_deref())
}

#[test]
fn a_dead_letter_keeps_key_null_payload_headers_and_timestamp() {
    let Some(bootstrap) = bootstrap("dead_letter_round_trip") else {
        return;
    };
    init_tracing();
    let dlq = unique("ktm-dlq");
    let rt = runtime();
    rt.block_on(async {
        let c = client(&bootstrap).await;
        create_topic(&c, &dlq, 3).await;
    });
    let original = Message::builder("orders", 4, 42)
        .key("order-17")
        .timestamp(Timestamp::CreateTime(1_700_000_000_123))
        .header("trace", Some("t-1"))
        .header("empty", Some(""))
        .build();
    let record = DeadLetterRecord::new(dlq.as_str(), &original, 3, "boom: no such customer");
    // The other way to build one: from a source's settings.
    let config = RskafkaSource::builder()
        .bootstrap_servers([bootstrap.as_str()])
        .topics(["orders"])
        .group_id("billing")
        .build_config()
        .unwrap();
    let from_config =
        RskafkaDeadLetterProducer::from_config(&config).with_send_timeout(Duration::from_secs(20));
    let second = DeadLetterRecord::new(
        dlq.as_str(),
        &Message::builder("orders", 7, 3).payload("p").build(),
        1,
        "second",
    );
    let got = rt.block_on(async {
        let mut producer = RskafkaDeadLetterProducer::builder()
            .bootstrap_servers([bootstrap.as_str()])
            .client_id("ktm-dlq-test")
            .build()
            .unwrap();
        producer.send(&record).await.unwrap();
        let mut producer2 = from_config;
        producer2.send(&second).await.unwrap();
        producer.close().await.unwrap();
        producer2.close().await.unwrap();
        // Source partition 4 of 3 dead-letter partitions: 4 % 3 = 1; 7 % 3 = 1 too.
        read_back(&bootstrap, &TopicPartition::new(dlq.as_str(), 1), 2).await
    });
    let m = &got[0];
    assert_eq!(m.key(), Some(&b"order-17"[..]));
    assert_eq!(m.payload(), None, "a null payload stays null");
    assert_eq!(
        m.timestamp().map(Timestamp::millis),
        Some(1_700_000_000_123)
    );
    assert_eq!(header(m, "trace"), Some(&b"t-1"[..]));
    assert_eq!(header(m, "empty"), Some(&b""[..]));
    assert_eq!(header(m, HEADER_SOURCE_TOPIC), Some(&b"orders"[..]));
    assert_eq!(header(m, HEADER_SOURCE_PARTITION), Some(&b"4"[..]));
    assert_eq!(header(m, HEADER_SOURCE_OFFSET), Some(&b"42"[..]));
    assert_eq!(header(m, HEADER_ATTEMPTS), Some(&b"3"[..]));
    assert_eq!(
        header(m, HEADER_ERROR),
        Some(&b"boom: no such customer"[..])
    );
    assert_eq!(m.headers().len(), 7, "{:?}", m.headers());
    // Every header of the record, nothing else (rskafka returns them sorted by key).
    let mut want: Vec<(String, Option<Bytes>)> = record
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    want.sort();
    let have: Vec<(String, Option<Bytes>)> = m
        .headers()
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    assert_eq!(have, want);
    let m2 = &got[1];
    assert_eq!(m2.payload(), Some(&b"p"[..]));
    assert_eq!(m2.key(), None);
    assert_eq!(header(m2, HEADER_SOURCE_PARTITION), Some(&b"7"[..]));
    assert!(m2.offset() > m.offset(), "one partition, in order");
}

#[test]
fn a_missing_dead_letter_topic_is_a_transient_error() {
    let Some(bootstrap) = bootstrap("dead_letter_missing_topic") else {
        return;
    };
    init_tracing();
    let record = DeadLetterRecord::new(
        unique("ktm-no-such-dlq"),
        &Message::builder("orders", 0, 1).payload("x").build(),
        1,
        "e",
    );
    let rt = runtime();
    let e = rt.block_on(async {
        let mut producer = RskafkaDeadLetterProducer::builder()
            .bootstrap_servers([bootstrap.as_str()])
            .send_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        producer.send(&record).await.unwrap_err()
    });
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("ktm-no-such-dlq"), "{e}");
}

#[test]
fn an_unreachable_broker_is_a_transient_error_in_bounded_time() {
    // No broker needed: nothing listens on port 1.
    init_tracing();
    let record = DeadLetterRecord::new(
        "orders.dlq",
        &Message::builder("orders", 0, 1).payload("x").build(),
        1,
        "e",
    );
    let rt = runtime();
    let t = Instant::now();
    let e = rt.block_on(async {
        let mut producer = RskafkaDeadLetterProducer::builder()
            .bootstrap_servers(["127.0.0.1:1"])
            .connect_timeout(Duration::from_millis(500))
            .send_timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        producer.send(&record).await.unwrap_err()
    });
    let took = t.elapsed();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.backend(), "rskafka");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    eprintln!("unreachable: {e} after {took:?}");
}

#[test]
fn a_broker_that_never_answers_is_a_transient_error_after_the_send_timeout() {
    // Accepts connections (the kernel's backlog does) and never says a word.
    init_tracing();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let record = DeadLetterRecord::new(
        "orders.dlq",
        &Message::builder("orders", 0, 1).payload("x").build(),
        1,
        "e",
    );
    let rt = runtime();
    let t = Instant::now();
    let e = rt.block_on(async {
        let mut producer = RskafkaDeadLetterProducer::builder()
            .bootstrap_servers([address.as_str()])
            .send_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        producer.send(&record).await.unwrap_err()
    });
    let took = t.elapsed();
    assert!(e.is_transient(), "{e}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}: {e}"
    );
    drop(silent);
}
