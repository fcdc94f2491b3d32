//! What a poll returns, polled directly on librdkafka's in-process mock cluster (no
//! broker needed): headers read by default and left out with `read_headers(false)`,
//! each message's topic right whether the source reads one topic or several, and an
//! error for a partition or topic that does not exist.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::mock::Cluster;
use common::{runtime, unique};
use ktm_core::{
    Header, Message, MessageSource, OffsetReset, PollBatch, SourceError, TopicPartition,
};
use ktm_rdkafka::rdkafka::message::{Header as RdHeader, OwnedHeaders};
use ktm_rdkafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use ktm_rdkafka::rdkafka::ClientConfig;
use ktm_rdkafka::RdkafkaSource;

const LIMIT: Duration = Duration::from_secs(30);

impl Cluster {
    /// Sends to partition 0 of `topic`: payload `id`, and these headers when any.
    fn send(&self, topic: &str, id: &str, headers: &[(&str, Option<&str>)]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let mut record = BaseRecord::<str, str>::to(topic).partition(0).payload(id);
        if !headers.is_empty() {
            let mut owned = OwnedHeaders::new();
            for (key, value) in headers {
                owned = owned.insert(RdHeader { key, value: *value });
            }
            record = record.headers(owned);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    /// A source reading partition 0 of each topic from the start.
    fn source(&self, topics: &[&str], read_headers: bool) -> RdkafkaSource {
        RdkafkaSource::builder()
            .bootstrap_servers([self.bootstrap.as_str()])
            .assign(topics.iter().map(|t| TopicPartition::new(*t, 0)))
            .group_id(unique("g"))
            .offset_reset(OffsetReset::Earliest)
            .read_headers(read_headers)
            .build()
            .unwrap()
    }
}

/// Polls until `n` messages came, or fails after [`LIMIT`].
fn poll_messages(source: &mut RdkafkaSource, n: usize) -> Vec<Message> {
    let runtime = runtime();
    let deadline = Instant::now() + LIMIT;
    let mut messages = Vec::new();
    let mut batch = PollBatch::new();
    while messages.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {messages:?} within {LIMIT:?}"
        );
        batch.clear();
        runtime
            .block_on(source.poll(Duration::from_millis(200), &mut batch))
            .unwrap();
        messages.extend(batch.messages().iter().cloned());
    }
    assert_eq!(messages.len(), n, "{messages:?}");
    messages
}

/// The payload, which these tests always send as text.
fn payload(m: &Message) -> &str {
    std::str::from_utf8(m.payload().unwrap()).unwrap()
}

#[test]
fn headers_are_read_by_default_null_values_and_all() {
    let f = Cluster::new(1);
    let topic = f.topic(1, 1);
    f.send(&topic, "with", &[("trace", Some("abc")), ("empty", None)]);
    f.send(&topic, "without", &[]);

    let messages = poll_messages(&mut f.source(&[&topic], true), 2);
    assert_eq!(payload(&messages[0]), "with");
    assert_eq!(
        messages[0].headers(),
        [
            Header::new("trace", Some("abc")),
            Header::new("empty", None::<&str>)
        ]
    );
    assert_eq!(payload(&messages[1]), "without");
    assert!(messages[1].headers().is_empty());
    assert!(messages.iter().all(|m| m.topic() == topic));
}

#[test]
fn read_headers_false_leaves_them_out_and_keeps_the_rest() {
    let f = Cluster::new(1);
    let topic = f.topic(1, 1);
    f.send(&topic, "with", &[("trace", Some("abc"))]);
    f.send(&topic, "without", &[]);

    let messages = poll_messages(&mut f.source(&[&topic], false), 2);
    assert_eq!(
        messages.iter().map(payload).collect::<Vec<_>>(),
        ["with", "without"]
    );
    assert_eq!(
        messages.iter().map(Message::offset).collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(messages.iter().all(|m| m.headers().is_empty()));
    assert!(messages.iter().all(|m| m.topic() == topic));
    assert!(messages.iter().all(|m| m.timestamp().is_some()));
}

#[test]
fn each_message_carries_its_own_topic_when_several_are_read() {
    let f = Cluster::new(1);
    let (a, b) = (f.topic(1, 1), f.topic(1, 1));
    f.send(&a, "a0", &[]);
    f.send(&b, "b0", &[]);
    f.send(&a, "a1", &[]);

    let messages = poll_messages(&mut f.source(&[&a, &b], true), 3);
    for m in &messages {
        let expected = if payload(m).starts_with('a') { &a } else { &b };
        assert_eq!(m.topic(), expected.as_str(), "{m:?}");
    }
    let from_b: Vec<&str> = messages
        .iter()
        .filter(|m| m.topic() == b)
        .map(payload)
        .collect();
    assert_eq!(from_b, ["b0"]);
}

/// Polls a source assigned `partition` (and nothing else) until a poll fails, or fails
/// after [`LIMIT`]; no message may come before.
fn first_poll_error(f: &Cluster, partition: TopicPartition) -> SourceError {
    let mut source = RdkafkaSource::builder()
        .bootstrap_servers([f.bootstrap.as_str()])
        .assign([partition])
        .group_id(unique("g"))
        .build()
        .unwrap();
    let runtime = runtime();
    let deadline = Instant::now() + LIMIT;
    let mut batch = PollBatch::new();
    loop {
        assert!(Instant::now() < deadline, "no error within {LIMIT:?}");
        batch.clear();
        if let Err(e) = runtime.block_on(source.poll(Duration::from_millis(200), &mut batch)) {
            return e;
        }
        assert!(batch.messages().is_empty());
    }
}

#[test]
fn a_partition_that_does_not_exist_is_reported_by_poll() {
    let f = Cluster::new(1);
    let topic = f.topic(1, 1);
    let error = first_poll_error(&f, TopicPartition::new(topic.as_str(), 5));
    assert!(
        error.to_string().contains("Unknown topic or partition"),
        "{error}"
    );
}

#[test]
fn a_topic_that_does_not_exist_is_reported_by_poll() {
    let f = Cluster::new(1);
    let error = first_poll_error(&f, TopicPartition::new(unique("missing").as_str(), 0));
    assert!(
        error.to_string().contains("Unknown topic or partition"),
        "{error}"
    );
}
