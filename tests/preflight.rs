//! Preflight on the in-memory backend: one test per failing item, the all-ok report,
//! and `preflight_on_start` refusing to start with nothing consumed. The same checks
//! against a real broker, for both real backends, are in `preflight_broker.rs`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_thread_manager::mock::{MockCluster, MockSource};
use kafka_thread_manager::{
    async_trait, BoxError, BuildError, CommitPolicy, DeadLetter, Error, FailurePolicy, GroupStatus,
    MessageSource, Offsets, PollBatch, PreflightError, RetryPolicy, SourceDescription, SourceError,
    State, Subscribed, ThreadManager, ThreadManagerBuilder, TopicDescription,
};

fn cluster(topics: &[(&str, i32)]) -> MockCluster {
    let cluster = MockCluster::new();
    for (name, partitions) in topics {
        cluster.create_topic(name, *partitions).unwrap();
    }
    cluster
}

fn builder(source: impl MessageSource) -> ThreadManagerBuilder {
    ThreadManager::builder(source)
        .callback(|_msg| {})
        .thread_lifetime(None)
}

fn subscriber(cluster: &MockCluster, topics: &[&str]) -> MockSource {
    cluster
        .consumer("billing")
        .subscribe(topics.iter().copied())
        .build()
        .unwrap()
}

fn dead_letters(cluster: &MockCluster) -> FailurePolicy {
    FailurePolicy::dead_letter(DeadLetter::new(cluster.dead_letter_producer()))
}

#[test]
fn everything_in_place_gives_an_ok_report_with_the_partition_counts() {
    let cluster = cluster(&[
        ("orders", 3),
        ("refunds", 2),
        ("orders.dlq", 1),
        ("refunds.dlq", 4),
    ]);
    let manager = builder(subscriber(&cluster, &["orders", "refunds"]))
        .failure_policy(dead_letters(&cluster))
        .retry_policy(RetryPolicy::retries(2))
        .commit_policy(CommitPolicy::EveryN(50))
        .build()
        .unwrap();
    let report = manager.preflight().unwrap();
    assert!(report.is_ok());
    assert_eq!(
        report.topics,
        [
            TopicDescription::found("orders", 3),
            TopicDescription::found("refunds", 2)
        ]
    );
    assert_eq!(
        report.dead_letter_topics,
        [
            TopicDescription::found("orders.dlq", 1),
            TopicDescription::found("refunds.dlq", 4)
        ]
    );
    assert!(matches!(
        &report.group,
        Some((g, GroupStatus::Accepted { .. })) if g == "billing"
    ));
    assert_eq!(
        report.items.len(),
        5,
        "2 topics, the group, 2 dead-letter topics"
    );
    let runbook = report.to_string();
    for expected in [
        "orders: 3 partition(s), 0..=2",
        "refunds.dlq: 4 partition(s), 0..=3",
        "every 50 messages",
        "up to 2 retries",
        "failure: dead-letter",
        "ktm_lag",
    ] {
        assert!(
            runbook.contains(expected),
            "{expected:?} missing from:\n{runbook}"
        );
    }
    // Preflight left the manager as it was: it still starts.
    manager.start().unwrap();
    manager.stop().unwrap();
}

#[test]
fn a_missing_topic_fails_and_the_report_shows_which() {
    let cluster = cluster(&[("orders", 3), ("refunds", 2)]);
    let source = subscriber(&cluster, &["orders", "refunds"]);
    cluster.delete_topic("refunds").unwrap();
    let manager = builder(source).build().unwrap();
    assert_eq!(
        manager.preflight().unwrap_err(),
        PreflightError::TopicMissing {
            topic: "refunds".into()
        }
    );
    let report = manager.preflight_report().unwrap();
    assert_eq!(
        report.topics,
        [
            TopicDescription::found("orders", 3),
            TopicDescription::missing("refunds")
        ]
    );
    assert!(report.to_string().contains("refunds: MISSING"));
}

#[test]
fn a_pattern_matching_nothing_fails() {
    let cluster = cluster(&[("orders", 3)]);
    let source = cluster
        .consumer("billing")
        .subscribe_pattern("payments.*")
        .build()
        .unwrap();
    let manager = builder(source).build().unwrap();
    assert_eq!(
        manager.preflight().unwrap_err(),
        PreflightError::PatternMatchesNothing {
            pattern: "payments.*".into()
        }
    );
}

#[test]
fn a_pattern_reports_each_topic_it_matches() {
    let cluster = cluster(&[("orders.eu", 3), ("orders.us", 2), ("refunds", 1)]);
    let source = cluster
        .consumer("billing")
        .subscribe_pattern("orders.*")
        .build()
        .unwrap();
    let report = builder(source).build().unwrap().preflight().unwrap();
    assert_eq!(report.subscription, Subscribed::Pattern("orders.*".into()));
    assert_eq!(
        report.topics,
        [
            TopicDescription::found("orders.eu", 3),
            TopicDescription::found("orders.us", 2)
        ]
    );
}

#[test]
fn a_missing_dead_letter_topic_fails() {
    let cluster = cluster(&[("orders", 3)]);
    let manager = builder(subscriber(&cluster, &["orders"]))
        .failure_policy(dead_letters(&cluster))
        .build()
        .unwrap();
    assert_eq!(
        manager.preflight().unwrap_err(),
        PreflightError::DeadLetterTopicMissing {
            topic: "orders.dlq".into()
        }
    );
}

#[test]
fn a_fixed_dead_letter_topic_is_checked_once() {
    let cluster = cluster(&[("orders", 3), ("refunds", 1), ("failed", 2)]);
    let policy =
        FailurePolicy::dead_letter(DeadLetter::new(cluster.dead_letter_producer()).topic("failed"));
    let manager = builder(subscriber(&cluster, &["orders", "refunds"]))
        .failure_policy(policy)
        .build()
        .unwrap();
    let report = manager.preflight().unwrap();
    assert_eq!(
        report.dead_letter_topics,
        [TopicDescription::found("failed", 2)]
    );
}

#[test]
fn a_refused_group_fails() {
    let cluster = cluster(&[("orders", 3)]);
    cluster.refuse_group("billing", "GROUP_AUTHORIZATION_FAILED");
    let manager = builder(subscriber(&cluster, &["orders"])).build().unwrap();
    assert_eq!(
        manager.preflight().unwrap_err(),
        PreflightError::GroupRejected {
            group: "billing".into(),
            error: "GROUP_AUTHORIZATION_FAILED".into()
        }
    );
}

#[test]
fn a_failing_extra_check_fails_and_a_passing_one_is_reported() {
    let cluster = cluster(&[("orders", 3)]);
    let manager = builder(subscriber(&cluster, &["orders"]))
        .preflight_check("clock", || -> Result<String, BoxError> {
            Ok("in sync".into())
        })
        .preflight_check("schema registry", || -> Result<String, BoxError> {
            Err("connection refused (http://registry:8081)".into())
        })
        .build()
        .unwrap();
    let err = manager.preflight().unwrap_err();
    let PreflightError::CheckFailed { name, error } = &err else {
        panic!("expected CheckFailed, got {err:?}");
    };
    assert_eq!(name, "schema registry");
    assert!(error.to_string().contains("connection refused"));
    let runbook = manager.preflight_report().unwrap().to_string();
    assert!(runbook.contains("[ok]   check clock: in sync"), "{runbook}");
    assert!(
        runbook.contains("[FAIL] check schema registry"),
        "{runbook}"
    );
}

#[test]
fn preflight_on_start_refuses_to_start_and_consumes_nothing() {
    let cluster = cluster(&[("orders", 2)]);
    cluster.fill("orders", 10, 8).unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&handled);
    let manager = ThreadManager::builder(subscriber(&cluster, &["orders"]))
        .callback(move |_msg| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .commit_policy(CommitPolicy::EveryMessage)
        .failure_policy(dead_letters(&cluster))
        .thread_lifetime(None)
        .preflight_on_start(true)
        .build()
        .unwrap();
    let err = manager.start().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Preflight(PreflightError::DeadLetterTopicMissing { topic }) if topic == "orders.dlq"
        ),
        "{err:?}"
    );
    assert_eq!(manager.state(), State::Created);
    assert_eq!(handled.load(Ordering::Relaxed), 0);
    assert_eq!(
        cluster.member_count("billing"),
        0,
        "the group was never joined"
    );
    assert!(
        cluster.commit_log("billing").is_empty(),
        "nothing was committed"
    );

    // Once the topic is there, the same manager starts and consumes everything.
    cluster.create_topic("orders.dlq", 1).unwrap();
    manager.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while handled.load(Ordering::Relaxed) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    manager.stop().unwrap();
    assert_eq!(handled.load(Ordering::Relaxed), 10);
    assert_eq!(cluster.committed("billing", "orders", 0), Some(5));
}

#[test]
fn a_zero_preflight_timeout_is_refused_when_building() {
    let cluster = cluster(&[("orders", 1)]);
    let err = builder(subscriber(&cluster, &["orders"]))
        .preflight_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::ZeroTimeout { which: "preflight" });
}

#[test]
fn preflight_after_start_is_refused() {
    let cluster = cluster(&[("orders", 1)]);
    let manager = builder(subscriber(&cluster, &["orders"])).build().unwrap();
    manager.start().unwrap();
    assert_eq!(
        manager.preflight().unwrap_err(),
        PreflightError::InvalidState {
            state: State::Running
        }
    );
    manager.stop().unwrap();
}

/// A source that predates `describe`, or whose `describe` never answers.
struct Silent {
    hangs: bool,
}

#[async_trait]
impl MessageSource for Silent {
    fn backend(&self) -> &'static str {
        "silent"
    }
    async fn poll(&mut self, t: Duration, _: &mut PollBatch) -> Result<(), SourceError> {
        tokio::time::sleep(t).await;
        Ok(())
    }
    fn store(&mut self, _: &Offsets) {}
    async fn commit(&mut self, _: &Offsets) -> Result<(), SourceError> {
        Ok(())
    }
    async fn close(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    async fn describe(&mut self) -> Result<SourceDescription, SourceError> {
        if !self.hangs {
            return Err(SourceError::unsupported("silent", "describe"));
        }
        // Transient, for ever: preflight keeps asking until its timeout.
        Err(SourceError::transient("silent", "coordinator loading"))
    }
}

#[test]
fn a_source_without_describe_is_unsupported() {
    let manager = builder(Silent { hangs: false }).build().unwrap();
    assert!(matches!(
        manager.preflight().unwrap_err(),
        PreflightError::Unsupported(_)
    ));
}

#[test]
fn a_broker_that_never_answers_times_out() {
    let timeout = Duration::from_millis(300);
    let manager = builder(Silent { hangs: true })
        .preflight_timeout(timeout)
        .build()
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        manager.preflight().unwrap_err(),
        PreflightError::TimedOut(timeout)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
