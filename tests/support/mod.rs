//! A real Kafka-protocol broker for tests: an external one named by
//! `KAFKA_BOOTSTRAP_SERVERS`, or a container started through testcontainers from the
//! image `KTM_KAFKA_IMAGE` (default: the official Apache Kafka image; the test command
//! builds and names a local Tansu image, since no registry is reachable here).
//! Topics are created and records produced with rskafka's own client, so the broker
//! set-up does not depend on the backend under test.
//!
//! With the `rdkafka` feature, [`KafkaBroker::mock_cluster`] gives a broker backed by
//! librdkafka's in-process mock cluster instead: a second, independent implementation
//! of the protocol, which needs neither docker nor an external broker. It has no
//! CreateTopics handler (librdkafka 2.12.1 `src/rdkafka_mock_handlers.c`, the
//! `rd_kafka_mock_api_handlers` table), so its topics are created through the mock's
//! own API; records still go through rskafka's client.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod tansu;
#[cfg(feature = "rskafka-tls")]
pub mod tls;

use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::chrono::DateTime;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use testcontainers::core::{ContainerPort, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::runtime::Runtime;

/// The default image, for users with a registry.
pub const DEFAULT_IMAGE: &str = "apache/kafka:4.1.0";

pub struct KafkaBroker {
    pub bootstrap: String,
    container: Option<ContainerAsync<GenericImage>>,
    client: Client,
    rt: Runtime,
    /// Declared last: the cluster outlives the client connected to it.
    #[cfg(feature = "rdkafka")]
    mock: Option<MockThread>,
}

/// librdkafka's mock cluster, owned by the [`KafkaBroker`] it backs.
#[cfg(feature = "rdkafka")]
pub type MockCluster = kafka_thread_manager::rdkafka::rdkafka::mocking::MockCluster<
    'static,
    kafka_thread_manager::rdkafka::rdkafka::producer::DefaultProducerContext,
>;

/// Work for the mock cluster, done on its thread.
#[cfg(feature = "rdkafka")]
type MockWork = Box<dyn FnOnce(&MockCluster) + Send>;

/// The mock cluster on a thread of its own: it is neither `Send` nor `Sync`, and a
/// [`KafkaBroker`] is shared across threads. It shuts down when this is dropped.
#[cfg(feature = "rdkafka")]
struct MockThread {
    work: Option<std::sync::mpsc::Sender<MockWork>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(feature = "rdkafka")]
impl MockThread {
    /// Starts a one-broker cluster; its bootstrap address.
    fn start() -> Result<(Self, String), String> {
        let (work, todo) = std::sync::mpsc::channel::<MockWork>();
        let (started, bootstrap) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mock = match MockCluster::new(1) {
                Ok(mock) => mock,
                Err(e) => {
                    let _ = started.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = started.send(Ok(mock.bootstrap_servers()));
            for job in todo {
                job(&mock);
            }
        });
        let bootstrap = bootstrap
            .recv()
            .map_err(|e| e.to_string())
            .and_then(|r| r)?;
        let holder = Self {
            work: Some(work),
            thread: Some(thread),
        };
        Ok((holder, bootstrap))
    }

    /// Runs `f` on the cluster's thread and returns its result.
    fn run<T: Send + 'static>(&self, f: impl FnOnce(&MockCluster) -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: MockWork = Box::new(move |mock| {
            let _ = tx.send(f(mock));
        });
        self.work
            .as_ref()
            .expect("the mock cluster thread runs")
            .send(job)
            .expect("the mock cluster thread runs");
        rx.recv().expect("the mock cluster thread answers")
    }
}

#[cfg(feature = "rdkafka")]
impl Drop for MockThread {
    fn drop(&mut self) {
        drop(self.work.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl KafkaBroker {
    /// The external broker if one is named, else a container; `None` (with the reason
    /// printed) when neither is available.
    pub fn any(test: &str) -> Option<Self> {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(servers) if !servers.is_empty() => Some(Self::connect(servers, None, runtime())),
            _ => Self::container(test),
        }
    }

    /// Only the external broker named by `KAFKA_BOOTSTRAP_SERVERS` (Tansu in CI); `None`,
    /// with the reason printed, without it. For tests that run on the mock cluster anyway
    /// and add a real broker when there is one.
    pub fn external(test: &str) -> Option<Self> {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(servers) if !servers.is_empty() => Some(Self::connect(servers, None, runtime())),
            _ => {
                eprintln!(
                    "SKIP {test} on a real broker: KAFKA_BOOTSTRAP_SERVERS is not set (run scripts/tansu.sh start)"
                );
                None
            }
        }
    }

    /// The broker at `bootstrap`: one the test started itself (a Tansu child process).
    pub fn at(bootstrap: String) -> Self {
        Self::connect(bootstrap, None, runtime())
    }

    /// A one-broker librdkafka mock cluster of its own, kept alive as long as this.
    #[cfg(feature = "rdkafka")]
    pub fn mock_cluster(test: &str) -> Option<Self> {
        let (mock, bootstrap) = match MockThread::start() {
            Ok(started) => started,
            Err(e) => {
                eprintln!("SKIP {test}: librdkafka's mock cluster did not start: {e}");
                return None;
            }
        };
        let mut broker = Self::connect(bootstrap, None, runtime());
        broker.mock = Some(mock);
        Some(broker)
    }

    /// Whether this is librdkafka's mock cluster rather than a real broker.
    pub fn is_mock(&self) -> bool {
        #[cfg(feature = "rdkafka")]
        return self.mock.is_some();
        #[cfg(not(feature = "rdkafka"))]
        false
    }

    /// Always a container of its own (for tests that pause, cut or restart the broker).
    pub fn container(test: &str) -> Option<Self> {
        let image = std::env::var("KTM_KAFKA_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
        if !docker_available() {
            eprintln!("SKIP {test}: no KAFKA_BOOTSTRAP_SERVERS and no usable docker engine to start {image}");
            return None;
        }
        let rt = runtime();
        let port = free_port();
        let container = match rt.block_on(start_container(&image, port)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIP {test}: could not start broker image {image}: {e}");
                return None;
            }
        };
        Some(Self::connect(
            format!("127.0.0.1:{port}"),
            Some(container),
            rt,
        ))
    }

    fn connect(
        bootstrap: String,
        container: Option<ContainerAsync<GenericImage>>,
        rt: Runtime,
    ) -> Self {
        let client = rt
            .block_on(ClientBuilder::new(vec![bootstrap.clone()]).build())
            .expect("connect to the broker");
        Self {
            bootstrap,
            container,
            client,
            rt,
            #[cfg(feature = "rdkafka")]
            mock: None,
        }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        #[cfg(feature = "rdkafka")]
        if let Some(mock) = &self.mock {
            let topic = topic.to_owned();
            mock.run(move |m| m.create_topic(&topic, partitions, 1))
                .expect("create topic on the mock cluster");
            return;
        }
        self.rt.block_on(async {
            let controller = self.client.controller_client().expect("controller client");
            controller
                .create_topic(topic, partitions, 1, 10_000)
                .await
                .expect("create topic");
        });
    }

    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<Record>,
        compression: Compression,
    ) -> Vec<i64> {
        self.rt.block_on(async {
            let pc = self
                .client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .expect("partition client");
            let mut offsets = Vec::new();
            // Bounded request sizes, whatever the caller hands over.
            for chunk in records.chunks(2_000) {
                offsets.extend(
                    pc.produce(chunk.to_vec(), compression)
                        .await
                        .expect("produce"),
                );
            }
            offsets
        })
    }

    /// `n` records of `size` bytes to each partition.
    pub fn fill(&self, topic: &str, partitions: i32, per_partition: usize, size: usize) {
        for p in 0..partitions {
            let records = (0..per_partition)
                .map(|i| {
                    record(
                        Some(format!("k{i}").into_bytes()),
                        Some(vec![b'x'; size]),
                        BTreeMap::new(),
                    )
                })
                .collect();
            self.produce(topic, p, records, Compression::NoCompression);
        }
    }

    pub fn pause(&self) {
        self.rt
            .block_on(self.own_container().pause())
            .expect("pause");
    }

    pub fn unpause(&self) {
        self.rt
            .block_on(self.own_container().unpause())
            .expect("unpause");
    }

    /// Cuts the container off the network it publishes its port through, or reconnects it.
    pub fn set_network(&self, connected: bool) {
        let id = self.own_container().id().to_owned();
        let action = if connected { "connect" } else { "disconnect" };
        let status = std::process::Command::new("docker")
            .args(["network", action, "bridge", &id])
            .status()
            .expect("docker network");
        assert!(status.success(), "docker network {action} failed");
    }

    /// Stops and starts the broker (memory storage comes back empty).
    pub fn restart(&self) {
        self.rt.block_on(async {
            let c = self.own_container();
            c.stop().await.expect("stop");
            c.start().await.expect("start");
        });
        // The wait-for condition is not re-checked on start: wait for the port.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.bootstrap).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "broker did not come back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every record of `topic[partition]`, with its offset, read up to the high
    /// watermark.
    pub fn read_all(&self, topic: &str, partition: i32) -> Vec<(i64, Record)> {
        self.rt.block_on(async {
            let pc = self
                .client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .expect("partition client");
            let mut out = Vec::new();
            let mut next = 0;
            loop {
                let (records, high_watermark) = pc
                    .fetch_records(next, 1..1_000_000, 500)
                    .await
                    .expect("fetch");
                for r in records {
                    if r.offset >= next {
                        next = r.offset + 1;
                        out.push((r.offset, r.record));
                    }
                }
                if next >= high_watermark {
                    return out;
                }
            }
        })
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn own_container(&self) -> &ContainerAsync<GenericImage> {
        self.container
            .as_ref()
            .expect("this test needs a broker container, not an external broker")
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        // Removing a container needs the runtime it was started on.
        let _guard = self.rt.enter();
        drop(self.container.take());
    }
}

/// Tansu answers a group join within half the session timeout; rejoining followers
/// wait about 3 s more.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The consumer settings every broker test shares, for either backend's `.config(..)`:
/// a 6 s session (Tansu joins take up to half of it), 1 s heartbeats, 100 ms fetch waits.
pub fn consumer_config(
    bootstrap: &str,
    topic: &str,
    group: &str,
    reset: kafka_thread_manager::OffsetReset,
) -> kafka_thread_manager::ConsumerConfig {
    kafka_thread_manager::ConsumerConfig::builder()
        .bootstrap_servers([bootstrap.to_owned()])
        .topics([topic])
        .group_id(group)
        .offset_reset(reset)
        .session_timeout(SESSION_TIMEOUT)
        .heartbeat_interval(Duration::from_secs(1))
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .expect("valid test consumer config")
}

pub fn record(
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: BTreeMap<String, Vec<u8>>,
) -> Record {
    Record {
        key,
        value,
        headers,
        timestamp: DateTime::from_timestamp_millis(1_700_000_000_000).expect("timestamp"),
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn docker_available() -> bool {
    std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts the broker image with its listener advertised at the mapped host port.
async fn start_container(
    image: &str,
    port: u16,
) -> Result<ContainerAsync<GenericImage>, testcontainers::TestcontainersError> {
    let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let advertised = format!("127.0.0.1:{port}");
    if name.contains("tansu") {
        GenericImage::new(name, tag)
            .with_wait_for(WaitFor::message_on_stdout("ready in"))
            .with_exposed_port(9092.tcp())
            .with_env_var("ADVERTISED_LISTENER_URL", format!("tcp://{advertised}"))
            .with_cmd([
                "--listener-url",
                "tcp://0.0.0.0:9092",
                "--storage-engine",
                "memory://tansu/",
            ])
            .with_mapped_port(port, ContainerPort::Tcp(9092))
            .start()
            .await
    } else {
        // The official image in single-node KRaft mode.
        GenericImage::new(name, tag)
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_exposed_port(9092.tcp())
            .with_env_var("KAFKA_NODE_ID", "1")
            .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
            .with_env_var(
                "KAFKA_LISTENERS",
                "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
            )
            .with_env_var(
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://{advertised}"),
            )
            .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
            .with_env_var(
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            )
            .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
            .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_mapped_port(port, ContainerPort::Tcp(9092))
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .await
    }
}
