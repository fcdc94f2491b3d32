//! The behaviour suite on the in-memory backend.

mod behaviour;
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use behaviour::{Caps, Fixture, ReadRecord, TestRecord};
use kafka_thread_manager::mock::{MockCluster, Record};
use kafka_thread_manager::{DeadLetterProducer, MessageSource, OffsetReset};

struct MockFixture(MockCluster);

impl Fixture for MockFixture {
    fn name(&self) -> &'static str {
        "mock"
    }
    fn caps(&self) -> Caps {
        Caps { rebalance: true }
    }
    fn create_topic(&self, topic: &str, partitions: i32) {
        self.0
            .create_topic(topic, partitions)
            .expect("create topic");
    }
    fn produce(&self, topic: &str, partition: i32, records: Vec<TestRecord>) {
        for r in records {
            let mut record = match r.payload {
                Some(p) => Record::new(p),
                None => Record::tombstone(),
            };
            if let Some(k) = r.key {
                record = record.key(k);
            }
            for (name, value) in r.headers {
                record = record.header(name, Some(value));
            }
            self.0.produce(topic, partition, record).expect("produce");
        }
    }
    fn source(&self, group: &str, topic: &str, reset: OffsetReset) -> Box<dyn MessageSource> {
        Box::new(
            self.0
                .consumer(group)
                .subscribe([topic])
                .offset_reset(reset)
                .build()
                .expect("consumer"),
        )
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn bad_configs(&self) -> Vec<(&'static str, String)> {
        let c = &self.0;
        vec![
            (
                "group id",
                c.consumer("")
                    .subscribe(["t"])
                    .build()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
            (
                "unknown topic",
                c.consumer("g")
                    .subscribe(["missing"])
                    .build()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
        ]
    }
    fn dead_letter_producer(&self) -> Box<dyn DeadLetterProducer> {
        Box::new(self.0.dead_letter_producer())
    }
    fn read_all(&self, topic: &str, partition: i32) -> Vec<ReadRecord> {
        self.0
            .records(topic, partition)
            .expect("records")
            .into_iter()
            .map(|m| ReadRecord {
                key: m.key_bytes().cloned(),
                payload: m.payload_bytes().cloned(),
                headers: m
                    .headers()
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone().unwrap_or_default()))
                    .collect(),
            })
            .collect()
    }
}

fn fixture() -> Option<MockFixture> {
    Some(MockFixture(MockCluster::new()))
}

behaviour_suite!(fixture());
