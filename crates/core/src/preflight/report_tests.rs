use std::time::Duration;

use super::*;
use crate::{RetryBackoff, TopicPartition};

fn config(failure_policy: FailurePolicy) -> RunConfig {
    RunConfig {
        thread_lifetime: None,
        poll_timeout: Duration::from_secs(1),
        commit_policy: CommitPolicy::EveryN(100),
        failure_policy,
        retry_policy: RetryPolicy::retries(3).max_elapsed(Duration::from_secs(30)),
        retry_backoff: RetryBackoff::default(),
        close_timeout: Duration::from_secs(10),
    }
}

fn report(items: Vec<PreflightItem>, dead_letters: Vec<TopicDescription>) -> PreflightReport {
    let description = SourceDescription::new(
        "broker-1:9092",
        Subscribed::Topics(vec!["orders".into(), "refunds".into()]),
        vec![
            TopicDescription::found("orders", 3),
            TopicDescription::missing("refunds"),
        ],
    )
    .with_group(
        "billing",
        GroupStatus::Accepted {
            coordinator: "broker-2:9092".into(),
        },
    );
    PreflightReport::new(
        "mock",
        description,
        dead_letters,
        &config(FailurePolicy::Skip),
        items,
    )
}

#[test]
fn the_runbook_names_topics_policies_dead_letters_and_lag_metrics() {
    let dlq = vec![TopicDescription::found("orders.dlq", 2)];
    let text = report(Vec::new(), dlq).to_string();
    for expected in [
        "broker broker-1:9092",
        "orders: 3 partition(s), 0..=2",
        "refunds: MISSING",
        "Group: billing (coordinator broker-2:9092)",
        "commit:  every 100 messages, and on stop and revoke",
        "retry:   up to 3 retries, backoff 100ms to 10s, within 30s",
        "failure: skip",
        "orders.dlq: 2 partition(s), 0..=1",
        "ktm_lag, ktm_high_watermark, ktm_committed_offset",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn failed_items_show_and_the_first_is_the_result() {
    let items = vec![
        PreflightItem::new("topic orders".into(), Ok("3 partition(s)".into())),
        PreflightItem::new(
            "topic refunds".into(),
            Err(PreflightError::TopicMissing {
                topic: "refunds".into(),
            }),
        ),
        PreflightItem::new(
            "dead-letter topic x".into(),
            Err(PreflightError::DeadLetterTopicMissing { topic: "x".into() }),
        ),
    ];
    let r = report(items, Vec::new());
    assert!(!r.is_ok());
    assert_eq!(r.failures().count(), 2);
    let text = r.to_string();
    assert!(text.starts_with("Preflight FAILED"), "{text}");
    assert!(text.contains("[FAIL] topic refunds: topic \"refunds\" does not exist"));
    assert!(text.contains("[ok]   topic orders: 3 partition(s)"));
    assert!(text.contains("Dead-letter topics: none"));
    assert_eq!(
        r.into_result(),
        Err(PreflightError::TopicMissing {
            topic: "refunds".into()
        })
    );
}

#[test]
fn an_assigned_subscription_lists_its_partitions() {
    let description = SourceDescription::new(
        "b:9092",
        Subscribed::Partitions(vec![TopicPartition::new("orders", 1)]),
        vec![TopicDescription::found("orders", 3)],
    );
    let r = PreflightReport::new(
        "mock",
        description,
        Vec::new(),
        &config(FailurePolicy::Stop),
        Vec::new(),
    );
    let text = r.to_string();
    assert!(text.contains("reading only orders[1]"), "{text}");
    assert!(text.contains("Group: none"));
    assert!(text.starts_with("Preflight ok"));
}

/// The runbook must name metrics that exist: each is published by `telemetry`.
#[test]
fn every_lag_metric_is_one_telemetry_publishes() {
    let telemetry = include_str!("../telemetry.rs");
    for name in LAG_METRICS {
        assert!(
            telemetry.contains(&format!("\"{name}\"")),
            "{name} is not published by telemetry.rs"
        );
    }
}
