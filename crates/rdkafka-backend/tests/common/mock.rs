//! librdkafka's in-process mock cluster, so that these tests need no broker: a cluster
//! alone, or one with a topic and a group unique to the test.

use std::time::Duration;

use ktm_core::TopicPartition;
use ktm_rdkafka::rdkafka::mocking::MockCluster;
use ktm_rdkafka::rdkafka::producer::DefaultProducerContext;
use ktm_rdkafka::{RdkafkaSource, RdkafkaSourceBuilder};

use super::{init_tracing, produce, unique};

/// A mock cluster and the address its clients bootstrap from; it shuts down on drop,
/// so a test keeps it for as long as it has clients.
pub struct Cluster {
    /// For injecting faults and creating topics.
    pub mock: MockCluster<'static, DefaultProducerContext>,
    /// `bootstrap.servers` for the cluster.
    pub bootstrap: String,
}

impl Cluster {
    /// A cluster of `brokers` brokers.
    pub fn new(brokers: i32) -> Self {
        init_tracing();
        let mock = MockCluster::new(brokers).unwrap();
        let bootstrap = mock.bootstrap_servers();
        Self { mock, bootstrap }
    }

    /// Creates a topic under a name unique to the run, so that tests sharing a process
    /// never read each other's records, and returns its name.
    pub fn topic(&self, partitions: i32, replication: i32) -> String {
        let topic = unique("t");
        self.mock
            .create_topic(&topic, partitions, replication)
            .unwrap();
        topic
    }
}

/// A mock cluster with one topic and a group name, both unique to the test.
pub struct Fixture {
    /// For injecting faults; dropping it shuts the cluster down.
    pub mock: MockCluster<'static, DefaultProducerContext>,
    /// `bootstrap.servers` for the cluster.
    pub bootstrap: String,
    /// The topic, empty until [`Fixture::produce`].
    pub topic: String,
    /// A group nobody else joins.
    pub group: String,
    /// The topic's partition count.
    pub partitions: i32,
}

impl Fixture {
    /// `brokers` brokers and a topic of `partitions` partitions, replicated on every
    /// broker (three at most).
    pub fn new(brokers: i32, partitions: i32) -> Self {
        let cluster = Cluster::new(brokers);
        let topic = cluster.topic(partitions, brokers.min(3));
        let Cluster { mock, bootstrap } = cluster;
        Self {
            mock,
            bootstrap,
            topic,
            group: unique("g"),
            partitions,
        }
    }

    /// Sends `per_partition` records to each partition, numbered from `first`; returns
    /// once every record is acknowledged.
    pub fn produce(&self, first: i64, per_partition: i64) {
        produce(
            &self.bootstrap,
            &self.topic,
            self.partitions,
            first,
            per_partition,
        );
    }

    /// One of the topic's partitions.
    pub fn tp(&self, partition: i32) -> TopicPartition {
        TopicPartition::new(self.topic.as_str(), partition)
    }

    /// A member of the group, subscribed to the topic, with the `session` timeout the
    /// test's timings are built around; its heartbeats (every 500 ms) come well inside
    /// any session these tests use, so it hears of a rebalance long before it expires.
    pub fn subscriber(&self, session: Duration) -> RdkafkaSourceBuilder {
        RdkafkaSource::builder()
            .bootstrap_servers([self.bootstrap.as_str()])
            .topics([self.topic.as_str()])
            .group_id(&self.group)
            .session_timeout(session)
            .heartbeat_interval(Duration::from_millis(500))
    }
}
