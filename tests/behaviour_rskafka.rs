//! The behaviour suite on the pure-Rust backend, against a real broker.
#![cfg(feature = "rskafka")]

mod behaviour;
mod support;

use kafka_thread_manager::rskafka::{
    RskafkaDeadLetterProducer, RskafkaSource, RskafkaSourceBuilder,
};

broker_backend_fixture!(
    RskafkaFixture,
    "rskafka",
    RskafkaSource,
    RskafkaDeadLetterProducer,
    [("not host:port", |b: RskafkaSourceBuilder| b
        .bootstrap_servers(["nonsense"]))]
);

behaviour_suite!(fixture());
