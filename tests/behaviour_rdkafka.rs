//! The behaviour suite on the librdkafka backend, against a real broker.
#![cfg(feature = "rdkafka")]

mod behaviour;
mod support;

use std::time::Duration;

use behaviour::broker_fixture::{produce, PATIENCE, SESSION_TIMEOUT};
use behaviour::{Caps, Fixture, TestRecord};
use kafka_thread_manager::rdkafka::RdkafkaSource;
use kafka_thread_manager::{MessageSource, OffsetReset};
use support::KafkaBroker;

struct RdkafkaFixture(KafkaBroker);

impl Fixture for RdkafkaFixture {
    fn name(&self) -> &'static str {
        "rdkafka"
    }
    fn caps(&self) -> Caps {
        Caps { rebalance: true }
    }
    fn create_topic(&self, topic: &str, partitions: i32) {
        self.0.create_topic(topic, partitions);
    }
    fn produce(&self, topic: &str, partition: i32, records: Vec<TestRecord>) {
        produce(&self.0, topic, partition, records);
    }
    fn source(&self, group: &str, topic: &str, reset: OffsetReset) -> Box<dyn MessageSource> {
        Box::new(
            RdkafkaSource::builder()
                .bootstrap_servers([self.0.bootstrap.clone()])
                .topics([topic])
                .group_id(group)
                .offset_reset(reset)
                .session_timeout(SESSION_TIMEOUT)
                .heartbeat_interval(Duration::from_secs(1))
                .fetch_max_wait(Duration::from_millis(100))
                .build()
                .expect("valid rdkafka config"),
        )
    }
    fn patience(&self) -> Duration {
        PATIENCE
    }
    fn bad_configs(&self) -> Vec<(&'static str, String)> {
        let base = || {
            RdkafkaSource::builder()
                .bootstrap_servers(["127.0.0.1:9092"])
                .topics(["t"])
                .group_id("g")
        };
        let err = |b: kafka_thread_manager::rdkafka::RdkafkaSourceBuilder| {
            b.build().err().map(|e| e.to_string()).unwrap_or_default()
        };
        vec![
            (
                "no bootstrap servers",
                err(RdkafkaSource::builder().topics(["t"]).group_id("g")),
            ),
            ("invalid topic name", err(base().topics(["bad topic"]))),
            ("group id", err(base().group_id(""))),
            (
                "heartbeat interval",
                err(base().heartbeat_interval(Duration::from_secs(60))),
            ),
            (
                "session.timeout.ms",
                err(base().set("session.timeout.ms", "not-a-number")),
            ),
        ]
    }
}

fn fixture() -> Option<RdkafkaFixture> {
    // RUST_LOG=ktm_rdkafka=debug shows the backend's view when a behaviour fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    KafkaBroker::any("behaviour_rdkafka").map(RdkafkaFixture)
}

behaviour_suite!(fixture());
