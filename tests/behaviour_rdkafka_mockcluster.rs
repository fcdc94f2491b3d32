//! The behaviour suite on the librdkafka backend, against librdkafka's in-process mock
//! cluster (records produced and read back through rskafka's client, as on Tansu in
//! `behaviour_rdkafka.rs`).
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]

mod behaviour;
mod support;

use kafka_thread_manager::rdkafka::{
    RdkafkaDeadLetterProducer, RdkafkaSource, RdkafkaSourceBuilder,
};

broker_backend_fixture!(
    RdkafkaMockClusterFixture,
    "rdkafka-mockcluster",
    RdkafkaSource,
    RdkafkaDeadLetterProducer,
    [("session.timeout.ms", |b: RdkafkaSourceBuilder| b
        .set("session.timeout.ms", "not-a-number"))],
    broker = support::KafkaBroker::mock_cluster
);

behaviour_suite!(fixture());
