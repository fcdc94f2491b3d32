//! Every builder error of the manager and the mock backend, with its type and message.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::cluster_with;
use kafka_thread_manager::mock::{MockCluster, MockError};
use kafka_thread_manager::{
    BuildError, CommitPolicy, Message, ThreadManager, ThreadManagerBuilder,
};

fn builder() -> ThreadManagerBuilder {
    let cluster = cluster_with("t", 1, 0);
    ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
}

fn err(b: ThreadManagerBuilder) -> BuildError {
    b.build().expect_err("the builder must reject this")
}

#[test]
fn missing_callback() {
    let cluster = cluster_with("t", 1, 0);
    let e = err(ThreadManager::builder(
        cluster.consumer("g").subscribe(["t"]).build().unwrap(),
    ));
    assert_eq!(e, BuildError::MissingCallback);
    assert_eq!(
        e.to_string(),
        "no callback was given: call .callback(..), .handler(..), .async_callback(..) or .async_handler(..)"
    );
}

#[test]
fn a_second_handler_is_refused_rather_than_replacing_the_first() {
    let pool = kafka_thread_manager::WorkerPool::new(2);
    let e =
        err(builder()
            .parallel_callback(pool, |_: &Message| -> Result<(), std::io::Error> { Ok(()) }));
    assert_eq!(e, BuildError::MoreThanOneHandler { given: 2 });
    assert_eq!(
        e.to_string(),
        "2 handlers were given: call exactly one handler setter"
    );
    let e = err(builder()
        .batch_callback(|_: &[Message]| -> Result<(), std::io::Error> { Ok(()) })
        .async_callback(|_: Message| async { Ok::<(), std::io::Error>(()) }));
    assert_eq!(e, BuildError::MoreThanOneHandler { given: 3 });
}

#[test]
fn zero_poll_timeout() {
    let e = err(builder().poll_timeout(Duration::ZERO));
    assert_eq!(e, BuildError::ZeroPollTimeout);
    assert_eq!(e.to_string(), "poll timeout must be greater than zero");
}

#[test]
fn zero_commit_count_and_interval() {
    let e = err(builder().commit_policy(CommitPolicy::EveryN(0)));
    assert_eq!(e, BuildError::ZeroCommitCount);
    assert_eq!(
        e.to_string(),
        "commit policy EveryN needs at least 1 message, got 0"
    );
    let e = err(builder().commit_policy(CommitPolicy::Interval(Duration::ZERO)));
    assert_eq!(e, BuildError::ZeroCommitInterval);
    assert_eq!(e.to_string(), "commit interval must be greater than zero");
}

#[test]
fn invalid_thread_names() {
    let e = err(builder().thread_name(""));
    assert_eq!(e.to_string(), "thread name \"\" is invalid: it is empty");
    let e = err(builder().thread_name("a\0b"));
    assert_eq!(
        e,
        BuildError::InvalidThreadName {
            name: "a\0b".into(),
            reason: "it contains a NUL byte"
        }
    );
}

#[test]
fn invalid_backoff() {
    let e = err(builder().retry_backoff(Duration::ZERO, Duration::from_secs(1)));
    assert!(matches!(e, BuildError::InvalidBackoff { .. }));
    let e = err(builder().retry_backoff(Duration::from_secs(2), Duration::from_secs(1)));
    assert_eq!(
        e.to_string(),
        "retry backoff is invalid: initial 2s must be greater than zero and at most max 1s"
    );
}

#[test]
fn zero_timeouts() {
    let e = err(builder().close_timeout(Duration::ZERO));
    assert_eq!(e, BuildError::ZeroTimeout { which: "close" });
    assert_eq!(e.to_string(), "close timeout must be greater than zero");
    let e = err(builder().shutdown_timeout(Duration::ZERO));
    assert_eq!(e, BuildError::ZeroTimeout { which: "shutdown" });
    let e = err(builder().stall_threshold(Duration::ZERO));
    assert_eq!(e.to_string(), "stall timeout must be greater than zero");
}

#[test]
fn a_valid_configuration_builds() {
    let m = builder()
        .thread_name("orders-consumer")
        .thread_lifetime(None)
        .commit_policy(CommitPolicy::EveryN(10))
        .build()
        .unwrap();
    assert_eq!(m.thread_name(), "orders-consumer");
}

#[test]
fn mock_consumer_builder_errors() {
    let cluster = MockCluster::new();
    cluster.create_topic("t", 2).unwrap();
    let cases: Vec<(Result<_, MockError>, &str)> = vec![
        (
            cluster.consumer("").subscribe(["t"]).build().map(drop),
            "invalid mock consumer configuration: group id must not be empty",
        ),
        (
            cluster.consumer("g").build().map(drop),
            "invalid mock consumer configuration: call subscribe(..) or assign(..)",
        ),
        (
            cluster
                .consumer("g")
                .subscribe(Vec::<String>::new())
                .build()
                .map(drop),
            "invalid mock consumer configuration: subscribe to at least one topic",
        ),
        (
            cluster
                .consumer("g")
                .subscribe(["t"])
                .max_batch(0)
                .build()
                .map(drop),
            "invalid mock consumer configuration: max batch must be at least 1",
        ),
        (
            cluster.consumer("g").subscribe(["nope"]).build().map(drop),
            "unknown topic \"nope\"",
        ),
        (
            cluster
                .consumer("g")
                .assign([kafka_thread_manager::TopicPartition::new("t", 2)])
                .build()
                .map(drop),
            "topic \"t\" has no partition 2",
        ),
    ];
    for (result, message) in cases {
        assert_eq!(result.unwrap_err().to_string(), message);
    }
    assert_eq!(
        cluster.create_topic("t", 1),
        Err(MockError::TopicExists("t".into()))
    );
    assert_eq!(
        cluster.create_topic("u", 0),
        Err(MockError::InvalidPartitionCount(0))
    );
    assert!(matches!(
        cluster.produce("t", 5, kafka_thread_manager::mock::Record::new("x")),
        Err(MockError::UnknownPartition { .. })
    ));
}

#[test]
fn invalid_retry_policy() {
    use kafka_thread_manager::RetryPolicy;
    let e = err(builder()
        .retry_policy(RetryPolicy::retries(3).backoff(Duration::ZERO, Duration::from_secs(1))));
    assert!(matches!(e, BuildError::InvalidRetryPolicy { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "retry policy is invalid: backoff initial 0ns must be greater than zero and at most max 1s"
    );
    let e = err(builder().retry_policy(RetryPolicy::retries(3).max_elapsed(Duration::ZERO)));
    assert_eq!(
        e.to_string(),
        "retry policy is invalid: max_elapsed must be greater than zero"
    );
}

#[test]
fn invalid_dead_letter_topic() {
    use kafka_thread_manager::{DeadLetter, FailurePolicy};
    let cluster = MockCluster::new();
    let dlq = |d: DeadLetter| builder().failure_policy(FailurePolicy::DeadLetter(d));
    let e = err(dlq(
        DeadLetter::new(cluster.dead_letter_producer()).topic("bad topic")
    ));
    assert!(
        matches!(e, BuildError::InvalidDeadLetterTopic { .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("dead-letter topic \"bad topic\" is invalid: "),
        "{e}"
    );
    let e = err(dlq(
        DeadLetter::new(cluster.dead_letter_producer()).topic_suffix("")
    ));
    assert_eq!(
        e.to_string(),
        "dead-letter topic \"\" is invalid: an empty suffix would dead-letter into the source topic"
    );
    let e = err(dlq(
        DeadLetter::new(cluster.dead_letter_producer()).topic_suffix("/dlq")
    ));
    assert!(e.to_string().contains("only ASCII letters"), "{e}");
}
