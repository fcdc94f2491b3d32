//! The librdkafka dead-letter producer: on librdkafka's mock cluster (always), on a
//! real broker (`KAFKA_BOOTSTRAP_SERVERS`, e.g. from `scripts/tansu.sh start`; skipped,
//! saying so, without it), and against no broker at all.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_topic, init_tracing, runtime, unique};
use ktm_core::{
    DeadLetterProducer, DeadLetterRecord, Message, MessageSource, PollBatch, Timestamp,
    TopicPartition, HEADER_ATTEMPTS, HEADER_ERROR, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
};
use ktm_rdkafka::rdkafka::mocking::MockCluster;
use ktm_rdkafka::rdkafka::producer::DefaultProducerContext;
use ktm_rdkafka::{RdkafkaDeadLetterProducer, RdkafkaSource};

/// Reads `n` records of `tp` from the start with the backend's own consumer.
async fn read_back(bootstrap: &str, tp: &TopicPartition, n: usize) -> Vec<Message> {
    let mut source = RdkafkaSource::builder()
        .bootstrap_servers(bootstrap.split(','))
        .assign([tp.clone()])
        .group_id(unique("g"))
        .build()
        .unwrap();
    let mut batch = PollBatch::new();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        assert!(Instant::now() < end, "only {} of {n} read back", got.len());
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

/// Sends two dead letters to `dlq` (3 partitions) and checks every field read back.
async fn round_trip(bootstrap: &str, dlq: &str) {
    let original = Message::builder("orders", 4, 42)
        .key("order-17")
        .timestamp(Timestamp::CreateTime(1_700_000_000_123))
        .header("trace", Some("t-1"))
        .header("null-valued", None::<&str>)
        .header("trace", Some("t-2"))
        .build();
    let record = DeadLetterRecord::new(dlq, &original, 3, "boom: no such customer");
    let second = DeadLetterRecord::new(
        dlq,
        &Message::builder("orders", 7, 3).payload("p").build(),
        1,
        "second",
    );
    let mut producer = RdkafkaDeadLetterProducer::builder()
        .bootstrap_servers(bootstrap.split(','))
        .client_id("ktm-dlq-test")
        .build()
        .unwrap();
    producer.send(&record).await.unwrap();
    producer.send(&second).await.unwrap();
    producer.close().await.unwrap();
    // Source partitions 4 and 7 of 3 dead-letter partitions: both go to 1.
    let got = read_back(bootstrap, &TopicPartition::new(dlq, 1), 2).await;
    let m = &got[0];
    assert_eq!(m.key(), Some(&b"order-17"[..]));
    assert_eq!(m.payload(), None, "a null payload stays null");
    assert_eq!(
        m.timestamp(),
        Some(Timestamp::CreateTime(1_700_000_000_123))
    );
    assert_eq!(
        m.headers(),
        &record.headers[..],
        "every header, in order, duplicates and null values included"
    );
    assert_eq!(m.headers()[1].value, None);
    assert_eq!(header(m, HEADER_SOURCE_TOPIC), Some(&b"orders"[..]));
    assert_eq!(header(m, HEADER_SOURCE_PARTITION), Some(&b"4"[..]));
    assert_eq!(header(m, HEADER_SOURCE_OFFSET), Some(&b"42"[..]));
    assert_eq!(header(m, HEADER_ATTEMPTS), Some(&b"3"[..]));
    assert_eq!(
        header(m, HEADER_ERROR),
        Some(&b"boom: no such customer"[..])
    );
    let m2 = &got[1];
    assert_eq!((m2.key(), m2.payload()), (None, Some(&b"p"[..])));
    assert_eq!(header(m2, HEADER_SOURCE_PARTITION), Some(&b"7"[..]));
    assert!(m2.offset() > m.offset(), "one partition, in order");
}

#[test]
fn a_dead_letter_round_trips_on_the_mock_cluster() {
    init_tracing();
    let mock = MockCluster::<DefaultProducerContext>::new(1).unwrap();
    let dlq = unique("dlq");
    mock.create_topic(&dlq, 3, 1).unwrap();
    runtime().block_on(round_trip(&mock.bootstrap_servers(), &dlq));
}

#[test]
fn a_dead_letter_round_trips_on_a_broker() {
    init_tracing();
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        eprintln!("skipping a_dead_letter_round_trips_on_a_broker: KAFKA_BOOTSTRAP_SERVERS is not set (start a broker with scripts/tansu.sh start)");
        return;
    };
    let dlq = unique("ktm-rd-dlq");
    runtime().block_on(async {
        create_topic(&bootstrap, &dlq, 3).await;
        round_trip(&bootstrap, &dlq).await;
    });
}

#[test]
fn an_unreachable_broker_is_a_transient_error_in_bounded_time() {
    init_tracing();
    let record = DeadLetterRecord::new(
        "orders.dlq",
        &Message::builder("orders", 0, 1).payload("x").build(),
        1,
        "e",
    );
    let t = Instant::now();
    let e = runtime().block_on(async {
        let mut producer = RdkafkaDeadLetterProducer::builder()
            .bootstrap_servers(["127.0.0.1:1"])
            .send_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let e = producer.send(&record).await.unwrap_err();
        producer.close().await.unwrap();
        e
    });
    let took = t.elapsed();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.backend(), "rdkafka");
    assert!(took < Duration::from_secs(6), "took {took:?}");
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
    let t = Instant::now();
    let e = runtime().block_on(async {
        let mut producer = RdkafkaDeadLetterProducer::builder()
            .bootstrap_servers([address.as_str()])
            .send_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let e = producer.send(&record).await.unwrap_err();
        producer.close().await.unwrap();
        e
    });
    let took = t.elapsed();
    assert!(e.is_transient(), "{e}");
    assert!(took < Duration::from_secs(6), "took {took:?}: {e}");
    eprintln!("silent broker: {e} after {took:?}");
    drop(silent);
}
