//! Preflight against a real broker (Tansu in CI, named by `KAFKA_BOOTSTRAP_SERVERS`)
//! and librdkafka's mock cluster, with both real backends: the partition counts of a
//! created topic and its dead-letter topic, a missing topic, a missing dead-letter
//! topic. Skips, saying why, where a broker is not available. The mock backend's
//! preflight tests, one per failing item, are in `preflight.rs`.
#![cfg(any(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_thread_manager::{
    CallbackError, CommitPolicy, GroupStatus, Message, OffsetReset, PreflightError, ThreadManager,
    ThreadManagerBuilder, TopicDescription,
};
use rskafka::client::partition::Compression;
use support::KafkaBroker;

/// A builder (without its handler) over `topic` in `group`, dead-lettering to
/// `<topic>.dlq`.
type Backend = fn(bootstrap: &str, topic: &str, group: &str) -> ThreadManagerBuilder;

/// A name no other test or run uses.
fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ktm-preflight-{what}-{}-{nanos}", std::process::id())
}

/// The brokers to check against: the external one if named, and librdkafka's mock
/// cluster when the rdkafka feature is on.
fn brokers(test: &str) -> Vec<KafkaBroker> {
    let mut brokers = Vec::new();
    brokers.extend(KafkaBroker::external(test));
    #[cfg(feature = "rdkafka")]
    brokers.extend(KafkaBroker::mock_cluster(test));
    brokers
}

fn ok_report_with_partition_counts(test: &str, backend: Backend) {
    for broker in brokers(test) {
        let topic = unique("ok");
        broker.create_topic(&topic, 3);
        broker.create_topic(&format!("{topic}.dlq"), 2);
        let manager = backend(&broker.bootstrap, &topic, &unique("group"))
            .callback(|_msg| {})
            .build()
            .unwrap();
        let report = manager.preflight().unwrap();
        assert_eq!(report.topics, [TopicDescription::found(&topic, 3)]);
        assert_eq!(
            report.dead_letter_topics,
            [TopicDescription::found(format!("{topic}.dlq"), 2)]
        );
        assert!(
            matches!(&report.group, Some((_, GroupStatus::Accepted { .. }))),
            "{report}"
        );
        println!("{test} on {}:\n{report}", broker.bootstrap);
    }
}

fn missing_topic_fails(test: &str, backend: Backend) {
    for broker in brokers(test) {
        let topic = unique("absent");
        let manager = backend(&broker.bootstrap, &topic, &unique("group"))
            .callback(|_msg| {})
            .build()
            .unwrap();
        assert_eq!(
            manager.preflight().unwrap_err(),
            PreflightError::TopicMissing { topic },
            "on {}",
            broker.bootstrap
        );
    }
}

fn missing_dead_letter_topic_fails(test: &str, backend: Backend) {
    for broker in brokers(test) {
        let topic = unique("nodlq");
        broker.create_topic(&topic, 1);
        let manager = backend(&broker.bootstrap, &topic, &unique("group"))
            .callback(|_msg| {})
            .build()
            .unwrap();
        assert_eq!(
            manager.preflight().unwrap_err(),
            PreflightError::DeadLetterTopicMissing {
                topic: format!("{topic}.dlq")
            },
            "on {}",
            broker.bootstrap
        );
    }
}

/// Preflight connects on a runtime of its own: afterwards the source still consumes
/// and the producer still dead-letters, on the consumer thread's.
fn consumes_and_dead_letters_after_preflight(test: &str, backend: Backend) {
    for broker in brokers(test) {
        let topic = unique("after");
        let dlq = format!("{topic}.dlq");
        broker.create_topic(&topic, 1);
        broker.create_topic(&dlq, 1);
        let payloads = [b"a".to_vec(), b"poison".to_vec(), b"c".to_vec()];
        let records = payloads
            .iter()
            .map(|p| support::record(None, Some(p.clone()), BTreeMap::new()))
            .collect();
        broker.produce(&topic, 0, records, Compression::NoCompression);
        let manager = backend(&broker.bootstrap, &topic, &unique("group"))
            .callback(|msg: &Message| match msg.payload() {
                Some(b"poison") => Err(CallbackError::permanent("poison")),
                _ => Ok(()),
            })
            .commit_policy(CommitPolicy::EveryMessage)
            .thread_lifetime(None)
            .preflight_on_start(true)
            .build()
            .unwrap();
        manager.start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while manager.stats().counts.dead_lettered < 1
            || manager.stats().counts.messages_handled < 2
        {
            assert!(
                Instant::now() < deadline,
                "on {}: {:?}",
                broker.bootstrap,
                manager.stats()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        manager.stop().unwrap();
        let dead = broker.read_all(&dlq, 0);
        assert_eq!(dead.len(), 1, "on {}", broker.bootstrap);
        assert_eq!(dead[0].1.value.as_deref(), Some(&b"poison"[..]));
    }
}

fn config(bootstrap: &str, topic: &str, group: &str) -> kafka_thread_manager::ConsumerConfig {
    support::consumer_config(bootstrap, topic, group, OffsetReset::Earliest)
}

#[cfg(feature = "rskafka")]
mod rskafka_backend {
    use kafka_thread_manager::rskafka::{RskafkaDeadLetterProducer, RskafkaSource};
    use kafka_thread_manager::{DeadLetter, FailurePolicy};

    use super::*;

    pub(super) fn backend(bootstrap: &str, topic: &str, group: &str) -> ThreadManagerBuilder {
        let config = RskafkaSource::builder()
            .config(config(bootstrap, topic, group))
            .build_config()
            .unwrap();
        let producer = RskafkaDeadLetterProducer::from_config(&config);
        let source = RskafkaSource::builder()
            .config(config.consumer.clone())
            .build()
            .unwrap();
        ThreadManager::builder(source)
            .failure_policy(FailurePolicy::dead_letter(DeadLetter::new(producer)))
    }

    #[test]
    fn rskafka_ok_report_with_partition_counts() {
        ok_report_with_partition_counts("rskafka_ok_report_with_partition_counts", backend);
    }

    #[test]
    fn rskafka_missing_topic_fails() {
        missing_topic_fails("rskafka_missing_topic_fails", backend);
    }

    #[test]
    fn rskafka_missing_dead_letter_topic_fails() {
        missing_dead_letter_topic_fails("rskafka_missing_dead_letter_topic_fails", backend);
    }

    #[test]
    fn rskafka_consumes_and_dead_letters_after_preflight() {
        consumes_and_dead_letters_after_preflight(
            "rskafka_consumes_and_dead_letters_after_preflight",
            backend,
        );
    }
}

#[cfg(feature = "rdkafka")]
mod rdkafka_backend {
    use kafka_thread_manager::rdkafka::{RdkafkaDeadLetterProducer, RdkafkaSource};
    use kafka_thread_manager::{DeadLetter, FailurePolicy};

    use super::*;

    pub(super) fn backend(bootstrap: &str, topic: &str, group: &str) -> ThreadManagerBuilder {
        let source = RdkafkaSource::builder()
            .config(config(bootstrap, topic, group))
            .build()
            .unwrap();
        let producer = RdkafkaDeadLetterProducer::builder()
            .bootstrap_servers([bootstrap])
            .build()
            .unwrap();
        ThreadManager::builder(source)
            .failure_policy(FailurePolicy::dead_letter(DeadLetter::new(producer)))
    }

    #[test]
    fn rdkafka_ok_report_with_partition_counts() {
        ok_report_with_partition_counts("rdkafka_ok_report_with_partition_counts", backend);
    }

    #[test]
    fn rdkafka_missing_topic_fails() {
        missing_topic_fails("rdkafka_missing_topic_fails", backend);
    }

    #[test]
    fn rdkafka_missing_dead_letter_topic_fails() {
        missing_dead_letter_topic_fails("rdkafka_missing_dead_letter_topic_fails", backend);
    }

    #[test]
    fn rdkafka_consumes_and_dead_letters_after_preflight() {
        consumes_and_dead_letters_after_preflight(
            "rdkafka_consumes_and_dead_letters_after_preflight",
            backend,
        );
    }
}

/// The coordinator refusing the group, scripted on librdkafka's mock cluster (a real
/// broker would need ACLs): FindCoordinator answers GROUP_AUTHORIZATION_FAILED. The
/// rskafka backend's refusal path is covered on the mock backend only (see below).
#[cfg(feature = "rdkafka")]
mod refused_group {
    use kafka_thread_manager::rdkafka::rdkafka::mocking::MockCluster;
    use kafka_thread_manager::rdkafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;

    fn refused_group_fails(backend: Backend) {
        let mock = MockCluster::new(1).unwrap();
        let topic = unique("refused");
        mock.create_topic(&topic, 1, 1).unwrap();
        mock.create_topic(&format!("{topic}.dlq"), 1, 1).unwrap();
        let refusal = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 100];
        mock.request_errors(RDKafkaApiKey::FindCoordinator, &refusal);
        let group = unique("group");
        let manager = backend(&mock.bootstrap_servers(), &topic, &group)
            .callback(|_msg| {})
            .preflight_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let err = manager.preflight().unwrap_err();
        assert!(
            matches!(&err, PreflightError::GroupRejected { group: g, error }
                if *g == group && error.contains("GroupAuthorizationFailed")),
            "{err:?}"
        );
    }

    // No rskafka variant: the mock cluster answers a refused FindCoordinator (v3) with
    // a null host, which kafka-protocol refuses to decode (Kafka itself sends an empty
    // one), so the backend sees a protocol error, not the refusal.

    #[test]
    fn rdkafka_refused_group_fails() {
        refused_group_fails(super::rdkafka_backend::backend);
    }
}
