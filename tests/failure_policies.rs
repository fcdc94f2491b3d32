//! Retries, dead letters, skips and panics on the in-memory backend: what the behaviour
//! suite cannot script on a real broker (send faults, pauses, rebalances mid-retry).
//! The suite's `failure_policies` covers the three policies on every backend.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster_with, eventually, Call, Observed};
use kafka_thread_manager::mock::{Fault, FaultPlan, Faulty, MockCluster};
use kafka_thread_manager::{
    CallbackError, CommitPolicy, DeadLetter, FailurePolicy, Message, RetryPolicy, State,
    StopReason, ThreadManager, ThreadManagerBuilder, TopicPartition,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// The pause and resume calls, in order.
type PauseCalls = Arc<Mutex<Vec<(&'static str, Vec<TopicPartition>)>>>;

type Calls = Arc<Mutex<Vec<(TopicPartition, i64, Instant)>>>;

/// A manager over `topic` in group "g" whose callback records every attempt and fails
/// as `fails(message, attempt)` says (attempt counts from 1).
fn manager(
    cluster: &MockCluster,
    topic: &str,
    fails: impl Fn(&Message, u32) -> Option<CallbackError> + Send + 'static,
) -> (ThreadManagerBuilder, Calls, PauseCalls) {
    let calls: Calls = Arc::default();
    let pauses: PauseCalls = Arc::default();
    let log = Arc::clone(&pauses);
    let source = Observed {
        inner: cluster.consumer("g").subscribe([topic]).build().unwrap(),
        observe: Box::new(move |call| match call {
            Call::Pause(tps) => log.lock().unwrap().push(("pause", tps.to_vec())),
            Call::Resume(tps) => log.lock().unwrap().push(("resume", tps.to_vec())),
            _ => {}
        }),
    };
    let seen = Arc::clone(&calls);
    let builder = ThreadManager::builder(source)
        .callback(move |m: &Message| {
            let mut seen = seen.lock().unwrap();
            seen.push((m.topic_partition(), m.offset(), Instant::now()));
            let attempt = seen
                .iter()
                .filter(|(tp, o, _)| *tp == m.topic_partition() && *o == m.offset())
                .count() as u32;
            drop(seen);
            match fails(m, attempt) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(100));
    (builder, calls, pauses)
}

fn attempts_of(calls: &Calls, partition: i32, offset: i64) -> usize {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(tp, o, _)| tp.partition() == partition && *o == offset)
        .count()
}

fn committed_all(cluster: &MockCluster, topic: &str, per_partition: &[(i32, i64)]) -> bool {
    per_partition
        .iter()
        .all(|(p, end)| cluster.committed("g", topic, *p) == Some(*end))
}

#[test]
fn other_partitions_go_on_while_one_waits_for_its_retry() {
    let cluster = cluster_with("t", 2, 40);
    let (builder, calls, pauses) = manager(&cluster, "t", |m, attempt| {
        (m.partition() == 0 && m.offset() == 5 && attempt <= 2).then(|| "busy".into())
    });
    let m = builder
        .retry_policy(
            RetryPolicy::retries(3).backoff(Duration::from_millis(300), Duration::from_millis(300)),
        )
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "everything committed", || {
        committed_all(&cluster, "t", &[(0, 20), (1, 20)])
    });
    let report = m.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(
        (report.counts.retries, report.counts.callback_failures),
        (2, 2)
    );
    assert_eq!(
        report.counts.messages_handled, 40,
        "each message handled once"
    );

    let calls = calls.lock().unwrap().clone();
    let p0: Vec<i64> = calls
        .iter()
        .filter(|(tp, ..)| tp.partition() == 0)
        .map(|(_, o, _)| *o)
        .collect();
    let mut expected: Vec<i64> = (0..=5).collect();
    expected.extend([5, 5]);
    expected.extend(6..20);
    assert_eq!(
        p0, expected,
        "partition 0 keeps its order; 5 is tried three times"
    );
    let succeeded_at = calls
        .iter()
        .filter(|(tp, o, _)| tp.partition() == 0 && *o == 5)
        .map(|(.., t)| *t)
        .next_back()
        .unwrap();
    let p1_done_at = calls
        .iter()
        .filter(|(tp, ..)| tp.partition() == 1)
        .map(|(.., t)| *t)
        .max()
        .unwrap();
    assert!(
        p1_done_at < succeeded_at,
        "partition 1 was not held up by partition 0's retries"
    );
    let tp0 = TopicPartition::new("t", 0);
    assert_eq!(
        *pauses.lock().unwrap(),
        vec![("pause", vec![tp0.clone()]), ("resume", vec![tp0.clone()])],
        "paused once while waiting, resumed once"
    );
    let p = m.stats().partitions;
    let p0 = p.iter().find(|p| p.tp == tp0).unwrap();
    assert_eq!((p0.failures, p0.retries, p0.messages_handled), (2, 2, 20));
}

#[test]
fn permanent_errors_and_panics_are_not_retried_and_are_dead_lettered() {
    let cluster = cluster_with("t", 1, 10);
    cluster.create_topic("failed", 1).unwrap();
    let (builder, calls, _) = manager(&cluster, "t", |m, _| match m.offset() {
        3 => Some(CallbackError::permanent("malformed payload")),
        7 => panic!("handler bug at 7"),
        _ => None,
    });
    let m = builder
        .retry_policy(
            RetryPolicy::retries(5).backoff(Duration::from_millis(10), Duration::from_millis(10)),
        )
        .failure_policy(FailurePolicy::DeadLetter(
            DeadLetter::new(cluster.dead_letter_producer()).topic("failed"),
        ))
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "everything committed", || {
        committed_all(&cluster, "t", &[(0, 10)])
    });
    let report = m.stop().unwrap();
    assert_eq!(
        (attempts_of(&calls, 0, 3), attempts_of(&calls, 0, 7)),
        (1, 1)
    );
    assert_eq!((report.counts.retries, report.counts.dead_lettered), (0, 2));
    let dead = cluster.records("failed", 0).unwrap();
    let errors: Vec<_> = dead
        .iter()
        .map(|d| {
            let h = d
                .headers()
                .iter()
                .find(|h| h.key == "ktm.dlq.error")
                .unwrap();
            String::from_utf8(h.value.clone().unwrap().to_vec()).unwrap()
        })
        .collect();
    assert_eq!(errors, ["malformed payload", "handler bug at 7"]);
}

#[test]
fn max_elapsed_ends_retries_before_the_count_does() {
    let cluster = cluster_with("t", 1, 10);
    let (builder, calls, _) = manager(&cluster, "t", |m, _| {
        (m.offset() == 4).then(|| "down".into())
    });
    let m = builder
        .retry_policy(
            RetryPolicy::retries(1_000)
                .backoff(Duration::from_millis(20), Duration::from_millis(20))
                .max_elapsed(Duration::from_millis(200)),
        )
        .failure_policy(FailurePolicy::Skip)
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "everything committed", || {
        committed_all(&cluster, "t", &[(0, 10)])
    });
    let report = m.stop().unwrap();
    let attempts = attempts_of(&calls, 0, 4);
    // Delays are 10-20 ms (jittered), and no attempt starts past 200 ms.
    assert!((2..=21).contains(&attempts), "{attempts} attempts");
    assert_eq!(report.counts.skipped, 1);
}

#[test]
fn a_failing_dead_letter_produce_keeps_the_offset_uncommitted_and_is_retried() {
    let cluster = cluster_with("t", 1, 20);
    cluster.create_topic("t.dlq", 1).unwrap();
    let producer = cluster
        .dead_letter_producer()
        .with_faults(FaultPlan::new().on_send(1, Fault::Disconnect(3)));
    let (builder, calls, _) = manager(&cluster, "t", |m, _| {
        (m.offset() == 5).then(|| "bad".into())
    });
    let m = builder
        .retry_policy(
            RetryPolicy::none().backoff(Duration::from_millis(100), Duration::from_millis(100)),
        )
        .failure_policy(FailurePolicy::DeadLetter(DeadLetter::new(producer)))
        .build()
        .unwrap();
    m.start().unwrap();
    // While the sends fail, nothing at or past the failed message is committed.
    let mut observed_failing = false;
    eventually(PATIENCE, "the dead letter produced", || {
        let s = m.stats();
        if s.counts.dead_lettered == 0 {
            observed_failing |= s.counts.dead_letter_errors > 0;
            let committed = cluster.committed("g", "t", 0).unwrap_or(0);
            assert!(
                committed <= 5,
                "committed {committed} while the dead letter was not produced"
            );
        }
        s.counts.dead_lettered == 1
    });
    assert!(observed_failing, "the failing sends were seen in stats");
    eventually(PATIENCE, "everything committed", || {
        committed_all(&cluster, "t", &[(0, 20)])
    });
    let report = m.stop().unwrap();
    assert_eq!(m.stats().counts.dead_letter_errors, 3);
    assert_eq!(report.counts.dead_lettered, 1);
    assert_eq!(
        cluster.records("t.dlq", 0).unwrap().len(),
        1,
        "no duplicate dead letter"
    );
    assert_eq!(
        attempts_of(&calls, 0, 5),
        1,
        "the callback is not re-run for a produce retry"
    );
}

#[test]
fn a_fatal_dead_letter_produce_stops_the_manager_without_committing_past_it() {
    let cluster = cluster_with("t", 1, 20);
    cluster.create_topic("t.dlq", 1).unwrap();
    let producer = cluster
        .dead_letter_producer()
        .with_faults(FaultPlan::new().on_send(1, Fault::Fatal));
    let (builder, calls, _) = manager(&cluster, "t", |m, _| {
        (m.offset() == 5).then(|| "bad".into())
    });
    let m = builder
        .failure_policy(FailurePolicy::DeadLetter(DeadLetter::new(producer)))
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(PATIENCE)).unwrap();
    assert_eq!(report.final_state, State::Failed);
    assert!(
        matches!(&report.reason, StopReason::DeadLetterFailed { failure, error }
            if failure.offset == 5 && failure.reason == "bad" && error.to_string().contains("injected fatal")),
        "{:?}",
        report.reason
    );
    assert_eq!(cluster.committed("g", "t", 0), Some(5));
    assert!(cluster.records("t.dlq", 0).unwrap().is_empty());
    assert_eq!(attempts_of(&calls, 0, 6), 0, "nothing past it was handled");
}

#[test]
fn stop_while_a_message_waits_for_its_retry_is_prompt() {
    let cluster = cluster_with("t", 1, 10);
    let (builder, calls, _) = manager(&cluster, "t", |m, _| {
        (m.offset() == 2).then(|| "down".into())
    });
    let m = builder
        .retry_policy(
            RetryPolicy::retries(10).backoff(Duration::from_secs(3600), Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "the first failure", || {
        attempts_of(&calls, 0, 2) == 1
    });
    let report = m.stop().unwrap();
    // Behaviour, not speed: a stop that waited out the hour-long backoff would not return.
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(cluster.committed("g", "t", 0), Some(2));
    assert_eq!(attempts_of(&calls, 0, 3), 0);
}

#[test]
fn a_rebalance_while_a_message_waits_forgets_its_retry_state() {
    let cluster = cluster_with("t", 1, 10);
    let (builder, calls, pauses) = manager(&cluster, "t", |m, attempt| {
        (m.offset() == 3 && attempt <= 2).then(|| "busy".into())
    });
    let m = builder
        .retry_policy(
            RetryPolicy::retries(5).backoff(Duration::from_secs(2), Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "the first failure", || {
        attempts_of(&calls, 0, 3) == 1
    });
    cluster.rebalance("g");
    eventually(PATIENCE, "everything committed", || {
        committed_all(&cluster, "t", &[(0, 10)])
    });
    m.stop().unwrap();
    let offsets: Vec<i64> = calls.lock().unwrap().iter().map(|(_, o, _)| *o).collect();
    assert_eq!(
        offsets,
        [0, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9],
        "the revoke committed 0..3; the re-fetched 3 starts over, once"
    );
    let kinds: Vec<&str> = pauses.lock().unwrap().iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        ["pause", "pause", "resume"],
        "the first pause went with the revoke"
    );
}

#[test]
fn an_async_callback_is_retried_too() {
    let cluster = cluster_with("t", 1, 5);
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .async_callback(move |m: Message| {
            let seen = Arc::clone(&seen);
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(m.offset());
                let first = seen.iter().filter(|o| **o == m.offset()).count() == 1;
                if m.offset() == 2 && first {
                    Err("once".to_owned())
                } else {
                    Ok(())
                }
            }
        })
        .retry_policy(
            RetryPolicy::retries(1).backoff(Duration::from_millis(10), Duration::from_millis(10)),
        )
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "everything committed", || {
        committed_all(&cluster, "t", &[(0, 5)])
    });
    m.stop().unwrap();
    assert_eq!(*attempts.lock().unwrap(), [0, 1, 2, 2, 3, 4]);
}

#[test]
fn skipped_and_dead_lettered_messages_are_committed_while_running() {
    for (policy, commit) in [
        ("skip", CommitPolicy::EveryMessage),
        ("dead-letter", CommitPolicy::EveryMessage),
        ("skip", CommitPolicy::Interval(Duration::from_millis(50))),
        (
            "dead-letter",
            CommitPolicy::Interval(Duration::from_millis(50)),
        ),
    ] {
        let cluster = cluster_with("t", 1, 10);
        cluster.create_topic("t.dlq", 1).unwrap();
        let (builder, _, _) = manager(&cluster, "t", |_, _| Some(CallbackError::permanent("no")));
        let failure_policy = match policy {
            "skip" => FailurePolicy::Skip,
            _ => FailurePolicy::DeadLetter(DeadLetter::new(cluster.dead_letter_producer())),
        };
        let m = builder
            .failure_policy(failure_policy)
            .commit_policy(commit)
            .build()
            .unwrap();
        m.start().unwrap();
        // Not at stop: while it runs, settled messages count toward the commit policy.
        eventually(
            PATIENCE,
            &format!("{policy}/{commit:?}: committed while running"),
            || cluster.committed("g", "t", 0) == Some(10),
        );
        assert_eq!(m.state(), State::Running);
        m.stop().unwrap();
    }
}

#[test]
fn a_failed_resume_is_retried_rather_than_leaving_the_partition_paused() {
    let cluster = cluster_with("t", 1, 10);
    let calls: Calls = Arc::default();
    let seen = Arc::clone(&calls);
    let source = Faulty::new(
        cluster.consumer("g").subscribe(["t"]).build().unwrap(),
        FaultPlan::new().on_resume(1, Fault::Transient),
    );
    let m = ThreadManager::builder(source)
        .callback(move |m: &Message| {
            let mut seen = seen.lock().unwrap();
            seen.push((m.topic_partition(), m.offset(), Instant::now()));
            let first = seen.iter().filter(|(_, o, _)| *o == m.offset()).count() == 1;
            if m.offset() == 2 && first {
                Err("once")
            } else {
                Ok(())
            }
        })
        .retry_policy(
            RetryPolicy::retries(1).backoff(Duration::from_millis(10), Duration::from_millis(10)),
        )
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    m.start().unwrap();
    // With max_batch larger than the topic, 3..10 came in the failing batch; produce more
    // so that only a resumed partition delivers them.
    eventually(PATIENCE, "the first batch handled", || {
        cluster.committed("g", "t", 0) == Some(10)
    });
    for _ in 0..5 {
        cluster
            .produce("t", 0, kafka_thread_manager::mock::Record::new("more"))
            .unwrap();
    }
    eventually(PATIENCE, "the records produced after the resume", || {
        cluster.committed("g", "t", 0) == Some(15)
    });
    m.stop().unwrap();
    assert_eq!(attempts_of(&calls, 0, 2), 2);
}
