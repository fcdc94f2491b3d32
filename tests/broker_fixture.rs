//! The broker fixture itself: it starts (or names) a broker that speaks Kafka, and its
//! container controls work. The behaviour and fault suites stand on it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;

use rskafka::client::partition::Compression;
use support::{record, KafkaBroker};

#[test]
fn the_fixture_provides_a_working_broker() {
    let Some(broker) = KafkaBroker::any("the_fixture_provides_a_working_broker") else {
        return;
    };
    let topic = format!("ktm-fixture-{}", std::process::id());
    broker.create_topic(&topic, 2);
    let offsets = broker.produce(
        &topic,
        1,
        vec![record(None, Some(b"v".to_vec()), BTreeMap::new()); 3],
        Compression::NoCompression,
    );
    assert_eq!(offsets, vec![0, 1, 2]);
}

#[test]
fn a_container_broker_can_be_paused_and_resumed() {
    let Some(broker) = KafkaBroker::container("a_container_broker_can_be_paused_and_resumed")
    else {
        return;
    };
    let topic = "paused";
    broker.create_topic(topic, 1);
    broker.pause();
    broker.unpause();
    let offsets = broker.produce(
        topic,
        0,
        vec![record(None, Some(b"v".to_vec()), BTreeMap::new())],
        Compression::Gzip,
    );
    assert_eq!(offsets, vec![0]);
}
