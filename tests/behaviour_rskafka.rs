//! The behaviour suite on the pure-Rust backend, against a real broker.
#![cfg(feature = "rskafka")]

mod behaviour;
mod support;

use std::time::Duration;

use behaviour::broker_fixture::{produce, PATIENCE, SESSION_TIMEOUT};
use behaviour::{Caps, Fixture, TestRecord};
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{MessageSource, OffsetReset};
use support::KafkaBroker;

struct RskafkaFixture(KafkaBroker);

impl Fixture for RskafkaFixture {
    fn name(&self) -> &'static str {
        "rskafka"
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
            RskafkaSource::builder()
                .bootstrap_servers([self.0.bootstrap.clone()])
                .topics([topic])
                .group_id(group)
                .offset_reset(reset)
                .session_timeout(SESSION_TIMEOUT)
                .heartbeat_interval(Duration::from_secs(1))
                .fetch_max_wait(Duration::from_millis(100))
                .build()
                .expect("valid rskafka config"),
        )
    }
    fn patience(&self) -> Duration {
        PATIENCE
    }
    fn bad_configs(&self) -> Vec<(&'static str, String)> {
        let base = || {
            RskafkaSource::builder()
                .bootstrap_servers(["127.0.0.1:9092"])
                .topics(["t"])
                .group_id("g")
        };
        let err = |b: kafka_thread_manager::rskafka::RskafkaSourceBuilder| {
            b.build().err().map(|e| e.to_string()).unwrap_or_default()
        };
        vec![
            (
                "no bootstrap servers",
                err(RskafkaSource::builder().topics(["t"]).group_id("g")),
            ),
            ("not host:port", err(base().bootstrap_servers(["nonsense"]))),
            ("invalid topic name", err(base().topics(["bad topic"]))),
            ("group id", err(base().group_id(""))),
            (
                "heartbeat interval",
                err(base().heartbeat_interval(Duration::from_secs(60))),
            ),
        ]
    }
}

fn fixture() -> Option<RskafkaFixture> {
    // RUST_LOG=ktm_rskafka=debug shows the backend's view when a behaviour fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    KafkaBroker::any("behaviour_rskafka").map(RskafkaFixture)
}

behaviour_suite!(fixture());
