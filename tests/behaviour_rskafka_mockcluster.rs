//! The behaviour suite on the pure-Rust backend, against librdkafka's in-process mock
//! cluster: a second, independent broker implementation, needing no docker and no
//! `KAFKA_BOOTSTRAP_SERVERS` (the Tansu run of the same suite is
//! `behaviour_rskafka.rs`).
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]

mod behaviour;
mod support;

use kafka_thread_manager::rskafka::{
    RskafkaDeadLetterProducer, RskafkaSource, RskafkaSourceBuilder,
};

broker_backend_fixture!(
    RskafkaMockClusterFixture,
    "rskafka-mockcluster",
    RskafkaSource,
    RskafkaDeadLetterProducer,
    [("not host:port", |b: RskafkaSourceBuilder| b
        .bootstrap_servers(["nonsense"]))],
    broker = support::KafkaBroker::mock_cluster
);

behaviour_suite!(fixture());
