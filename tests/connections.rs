//! Proof that the rskafka backend's connections grow with the brokers, not with the
//! partitions (issue 16, "Proof (tests in CI)"): one group member consuming a
//! 64-partition topic on librdkafka's in-process mock cluster holds at most one
//! connection per broker plus two (the group coordinator's and the bootstrap one),
//! with one broker and with three.
//!
//! The connections are this process's established TCP sockets whose remote port is a
//! broker's port (`proof::connections_to`, from `/proc/self/net/tcp{,6}` and
//! `/proc/self/fd`): the mock cluster's own ends of them have the broker port as their
//! local port, and the producer that filled the topic is gone before the count (any
//! socket still open from before the consumer started is left out too). The count is
//! sampled repeatedly while the member consumes, and the largest sample is checked.
#![cfg(all(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proof;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_thread_manager::rdkafka::rdkafka;
use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{ConsumerConfig, OffsetReset};
use proof::{connections_to, unique, Collected};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const PARTITIONS: i32 = 64;
/// The mock cluster holds a group's first join for 3 s.
const PATIENCE: Duration = Duration::from_secs(60);
/// Samples of the connection count, 100 ms apart, once every partition delivered.
const SAMPLES: usize = 20;

fn connections(brokers: u16) {
    let test = format!("connections with {brokers} broker(s)");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    // rdkafka's own constructor: its owning client has no bootstrap servers, so it
    // opens no connection of its own to the brokers.
    let mock = MockCluster::new(i32::from(brokers)).expect("a mock cluster");
    let bootstrap = mock.bootstrap_servers();
    let ports: Vec<u16> = bootstrap
        .split(',')
        .map(|a| a.rsplit_once(':').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), usize::from(brokers), "{bootstrap}");
    let topic = unique("connections");
    mock.create_topic(&topic, PARTITIONS, 1)
        .expect("create the topic");

    // Two records in every partition, from librdkafka's producer, which then closes.
    {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("a producer");
        for p in 0..PARTITIONS {
            for i in 0..2 {
                let payload = format!("{p}-{i}");
                producer
                    .send(
                        BaseRecord::<(), str>::to(&topic)
                            .partition(p)
                            .payload(&payload),
                    )
                    .map_err(|(e, _)| e)
                    .expect("enqueue");
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
    let before = connections_to(&ports);
    if !before.is_empty() {
        eprintln!(
            "{test}: {} connection(s) to the brokers open before the consumer; not counted",
            before.len()
        );
    }

    let config = ConsumerConfig::builder()
        .bootstrap_servers(bootstrap.split(',').map(str::to_owned))
        .topics([topic.as_str()])
        .group_id(unique("connections-group"))
        .offset_reset(OffsetReset::Earliest)
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_secs(1))
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let collected = Collected::start(
        RskafkaSource::builder().config(config).build().unwrap(),
        Duration::from_secs(30),
    );
    collected.wait_for("a message from every partition", PATIENCE, |seen| {
        seen.iter()
            .map(kafka_thread_manager::Message::partition)
            .collect::<BTreeSet<_>>()
            .len()
            == usize::try_from(PARTITIONS).unwrap()
    });

    // The largest sample, and how its connections spread over the brokers' ports.
    let mut most: BTreeMap<u64, u16> = BTreeMap::new();
    for _ in 0..SAMPLES {
        let mut now = connections_to(&ports);
        now.retain(|inode, _| !before.contains_key(inode));
        if now.len() > most.len() {
            most = now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let handled = collected.manager.stats().counts.messages_handled;
    let (_, report) = collected.stop();

    let per_port: BTreeMap<u16, usize> = most.values().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(*p).or_default() += 1;
        m
    });
    let most = most.len();
    let allowed = usize::from(brokers) + 2;
    eprintln!(
        "{test}: at most {most} connection(s) to the brokers while consuming (allowed \
         {allowed}); by broker port: {per_port:?}"
    );
    assert!(
        most <= allowed,
        "{test}: the consumer held {most} connections to {brokers} broker(s) while consuming \
         {PARTITIONS} partitions ({handled} messages handled); at most {allowed} (one per \
         broker, the group coordinator's and the bootstrap one). By broker port: {per_port:?}"
    );
    assert!(most > 0, "{test}: no connection found: the count is broken");
    assert_eq!(report.counts.callback_failures, 0, "{report:?}");
}

#[test]
fn one_broker_64_partitions_few_connections() {
    connections(1);
}

#[test]
fn three_brokers_64_partitions_few_connections() {
    connections(3);
}
