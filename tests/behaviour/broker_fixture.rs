//! Fixture parts shared by the real-broker backends: topics and records go through the
//! broker fixture's own client.

use std::time::Duration;

use rskafka::client::partition::Compression;

use bytes::Bytes;

use super::{ReadRecord, TestRecord};
use crate::support::{record, KafkaBroker};

/// Generous, since a slow CI machine must not fail here.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Produces each record as a batch of its own. Tansu 0.6.0 answers a fetch that starts
/// inside a batch with the log's last record repeated (fetching offset 1 of a batch
/// 0..=4 followed by record 5 returns record 5 five times, for every client), and its
/// ListOffsets(latest) can answer inside a batch too; so the suite keeps every offset
/// at a batch boundary, and consumers that restart or reset mid-log read what was
/// produced.
pub fn produce(broker: &KafkaBroker, topic: &str, partition: i32, records: Vec<TestRecord>) {
    for r in records {
        let headers = r
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        let one = record(
            r.key.map(|k| k.to_vec()),
            r.payload.map(|p| p.to_vec()),
            headers,
        );
        broker.produce(topic, partition, vec![one], Compression::NoCompression);
    }
}

/// Every record of `topic[partition]`, read back through the broker fixture's client.
pub fn read_all(broker: &KafkaBroker, topic: &str, partition: i32) -> Vec<ReadRecord> {
    broker
        .read_all(topic, partition)
        .into_iter()
        .map(|(_, r)| ReadRecord {
            key: r.key.map(Bytes::from),
            payload: r.value.map(Bytes::from),
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k, Bytes::from(v)))
                .collect(),
        })
        .collect()
}

/// Declares the fixture of a real-broker backend, `$fixture`, over `$source` (built by
/// `$source::builder()` with the settings every backend shares) and its dead-letter
/// producer `$producer` (built the same way), plus `fixture()`. `$extra` lists
/// backend-specific bad configurations: `(fragment, |base| builder)`. The broker is
/// [`KafkaBroker::any`] unless a constructor (`fn(&str) -> Option<KafkaBroker>`, such
/// as `KafkaBroker::mock_cluster`) follows as `broker = ..`.
#[macro_export]
macro_rules! broker_backend_fixture {
    ($fixture:ident, $name:literal, $source:ty, $producer:ty, [$(($fragment:literal, $bad:expr)),* $(,)?]) => {
        $crate::broker_backend_fixture!($fixture, $name, $source, $producer,
            [$(($fragment, $bad)),*], broker = $crate::support::KafkaBroker::any);
    };
    ($fixture:ident, $name:literal, $source:ty, $producer:ty, [$(($fragment:literal, $bad:expr)),* $(,)?], broker = $broker:expr) => {
        struct $fixture($crate::support::KafkaBroker);

        impl $crate::behaviour::Fixture for $fixture {
            fn name(&self) -> &'static str {
                $name
            }
            fn caps(&self) -> $crate::behaviour::Caps {
                $crate::behaviour::Caps { rebalance: true }
            }
            fn create_topic(&self, topic: &str, partitions: i32) {
                self.0.create_topic(topic, partitions);
            }
            fn produce(&self, topic: &str, partition: i32, records: Vec<$crate::behaviour::TestRecord>) {
                $crate::behaviour::broker_fixture::produce(&self.0, topic, partition, records);
            }
            fn source(
                &self,
                group: &str,
                topic: &str,
                reset: kafka_thread_manager::OffsetReset,
            ) -> Box<dyn kafka_thread_manager::MessageSource> {
                Box::new(
                    <$source>::builder()
                        .config($crate::support::consumer_config(&self.0.bootstrap, topic, group, reset))
                        .build()
                        .expect("valid config"),
                )
            }
            fn dead_letter_producer(&self) -> Box<dyn kafka_thread_manager::DeadLetterProducer> {
                Box::new(
                    <$producer>::builder()
                        .bootstrap_servers([self.0.bootstrap.clone()])
                        .build()
                        .expect("valid producer config"),
                )
            }
            fn read_all(&self, topic: &str, partition: i32) -> Vec<$crate::behaviour::ReadRecord> {
                $crate::behaviour::broker_fixture::read_all(&self.0, topic, partition)
            }
            fn patience(&self) -> std::time::Duration {
                $crate::behaviour::broker_fixture::PATIENCE
            }
            fn bad_configs(&self) -> Vec<(&'static str, String)> {
                let base = || <$source>::builder().bootstrap_servers(["127.0.0.1:9092"]).topics(["t"]).group_id("g");
                let err = |built: Result<$source, kafka_thread_manager::ConfigError>| {
                    built.err().map(|e| e.to_string()).unwrap_or_default()
                };
                vec![
                    ("no bootstrap servers", err(<$source>::builder().topics(["t"]).group_id("g").build())),
                    ("invalid topic name", err(base().topics(["bad topic"]).build())),
                    ("group id", err(base().group_id("").build())),
                    ("heartbeat interval", err(base().heartbeat_interval(std::time::Duration::from_secs(60)).build())),
                    $(($fragment, err(($bad)(base()).build())),)*
                ]
            }
        }

        fn fixture() -> Option<$fixture> {
            // RUST_LOG=ktm_<backend>=debug shows the backend's view when a behaviour fails.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
            ($broker)(concat!("behaviour_", $name)).map($fixture)
        }
    };
}
