//! librdkafka's in-process mock cluster as a second broker for the group tests: a
//! cluster with one topic and a group unique to the test, records produced through
//! rskafka's client, and a log captured for the whole test binary.
//!
//! What the mock cannot do (librdkafka 2.12.1, `src/rdkafka_mock_handlers.c` and
//! `src/rdkafka_mock_cgrp.c`): it has no CreateTopics handler (topics are created
//! through its own API); it finds members by member id only (`rd_kafka_mock_cgrp_classic_member_add`),
//! so a restarted static member is a new member and FENCED_INSTANCE_ID is never sent
//! unless injected; it never checks protocols or session timeouts itself (it asserts
//! that every member's first protocol is the leader's), so the group errors are
//! injected with `request_errors`; a first join is held for 3 s
//! (`group.initial.rebalance.delay.ms`) and a rebalance of a stable group for the
//! session timeout less 1 s.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ktm_core::TopicPartition;
use ktm_rskafka::RskafkaSourceBuilder;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rskafka::client::Client;
use tokio::runtime::Runtime;

use super::{client, produce, runtime, source, unique};

/// A mock cluster with one topic and a group name, both unique to the test.
pub struct MockGroup {
    /// `bootstrap.servers` for the cluster.
    pub bootstrap: String,
    /// The topic, empty until [`MockGroup::produce`].
    pub topic: String,
    /// A group nobody else joins.
    pub group: String,
    /// The topic's partition count.
    pub partitions: i32,
    rt: Runtime,
    client: Client,
    /// For injecting errors; declared last, so the client is dropped before it.
    pub mock: MockCluster<'static, DefaultProducerContext>,
}

impl MockGroup {
    /// A one-broker cluster and a topic of `partitions` partitions.
    pub fn new(partitions: i32) -> Self {
        let _ = log();
        let mock = MockCluster::new(1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        let topic = unique("t");
        mock.create_topic(&topic, partitions, 1).unwrap();
        let rt = runtime();
        let client = rt.block_on(client(&bootstrap));
        Self {
            bootstrap,
            topic,
            group: unique("g"),
            partitions,
            rt,
            client,
            mock,
        }
    }

    /// `n` more records of 10 bytes to every partition.
    pub fn produce(&self, n: usize) {
        self.rt.block_on(async {
            for p in 0..self.partitions {
                produce(&self.client, &self.topic, p, n, 10).await;
            }
        });
    }

    /// A member of the group, subscribed to the topic, with `session` as its session
    /// timeout and heartbeats every 500 ms.
    pub fn member(&self, session: Duration) -> RskafkaSourceBuilder {
        source(&self.bootstrap, &self.group)
            .topics([self.topic.as_str()])
            .session_timeout(session)
            .heartbeat_interval(Duration::from_millis(500))
    }

    /// One of the topic's partitions.
    pub fn tp(&self, partition: i32) -> TopicPartition {
        TopicPartition::new(self.topic.as_str(), partition)
    }
}

/// What every test of the binary logged (at `RUST_LOG`, default `info`), without ANSI
/// colours; with `KTM_TEST_LOG=stderr` also written to stderr as it comes. Global,
/// because members log from threads of their own.
pub fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .try_init();
        captured
    })
}

/// A writer for a `tracing_subscriber::fmt` subscriber that keeps what it is given.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The lines logged so far that contain every one of `needles` (case-insensitive).
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| {
                let l = l.to_lowercase();
                needles.iter().all(|n| l.contains(&n.to_lowercase()))
            })
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("KTM_TEST_LOG").is_some_and(|v| v == "stderr") {
            std::io::stderr().write_all(buf)?;
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
