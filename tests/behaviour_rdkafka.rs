//! The behaviour suite on the librdkafka backend, against a real broker.
#![cfg(feature = "rdkafka")]

mod behaviour;
mod support;

use kafka_thread_manager::rdkafka::{
    RdkafkaDeadLetterProducer, RdkafkaSource, RdkafkaSourceBuilder,
};

broker_backend_fixture!(
    RdkafkaFixture,
    "rdkafka",
    RdkafkaSource,
    RdkafkaDeadLetterProducer,
    [("session.timeout.ms", |b: RdkafkaSourceBuilder| b
        .set("session.timeout.ms", "not-a-number"))]
);

behaviour_suite!(fixture());
