//! Preflight against a real broker (Tansu in CI, named by `KAFKA_BOOTSTRAP_SERVERS`)
//! and librdkafka's mock cluster, with both real backends: the partition counts of a
//! created topic and its dead-letter topic, a missing topic, a missing dead-letter
//! topic. Skips, saying why, where a broker is not available. The mock backend's
//! preflight tests, one per failing item, are in `preflight.rs`.
#![cfg(any(feature = "rskafka", feature = "rdkafka"))]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use kafka_thread_manager::{
    GroupStatus, OffsetReset, PreflightError, ThreadManager, ThreadManagerBuilder, TopicDescription,
};
use support::KafkaBroker;

/// Builds a manager over `topic` in `group`, dead-lettering to `<topic>.dlq`.
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

fn config(bootstrap: &str, topic: &str, group: &str) -> kafka_thread_manager::ConsumerConfig {
    support::consumer_config(bootstrap, topic, group, OffsetReset::Earliest)
}

#[cfg(feature = "rskafka")]
mod rskafka_backend {
    use kafka_thread_manager::rskafka::{RskafkaDeadLetterProducer, RskafkaSource};
    use kafka_thread_manager::{DeadLetter, FailurePolicy};

    use super::*;

    fn backend(bootstrap: &str, topic: &str, group: &str) -> ThreadManagerBuilder {
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
            .callback(|_msg| {})
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
}

#[cfg(feature = "rdkafka")]
mod rdkafka_backend {
    use kafka_thread_manager::rdkafka::{RdkafkaDeadLetterProducer, RdkafkaSource};
    use kafka_thread_manager::{DeadLetter, FailurePolicy};

    use super::*;

    fn backend(bootstrap: &str, topic: &str, group: &str) -> ThreadManagerBuilder {
        let source = RdkafkaSource::builder()
            .config(config(bootstrap, topic, group))
            .build()
            .unwrap();
        let producer = RdkafkaDeadLetterProducer::builder()
            .bootstrap_servers([bootstrap])
            .build()
            .unwrap();
        ThreadManager::builder(source)
            .callback(|_msg| {})
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
}
