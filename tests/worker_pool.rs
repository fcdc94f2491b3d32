//! The worker pool on the in-memory backend: order per partition and per key, commits
//! that never pass an unfinished message, backpressure by pausing, batch callbacks,
//! failure policies on workers, and stopping. The behaviour suite's `worker_pool` runs
//! the pool on every backend.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
// The async-pool tests, in their own file to keep this one from growing further.
#[path = "worker_pool/async_pool.rs"]
mod async_pool;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster_with, eventually, header_number, Call, FromCallback, Observed};
use kafka_thread_manager::mock::{MockCluster, Record};
use kafka_thread_manager::{
    BuildError, CallbackError, CommitPolicy, DeadLetter, FailurePolicy, Message, ProcessingOrder,
    RetryPolicy, State, StopReason, StopReport, ThreadManager, ThreadManagerBuilder,
    TopicPartition, WorkerPool,
};

const PATIENCE: Duration = Duration::from_secs(20);

type Ok = Result<(), CallbackError>;

/// What a callback saw: partition, offset, key and the worker thread's name.
#[derive(Clone, Debug)]
struct Seen {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    thread: String,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// The (partition, offset) of each batch a batch callback was given.
type Batches = Arc<Mutex<Vec<Vec<(i32, i64)>>>>;

fn seen(m: &Message) -> Seen {
    Seen {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        thread: std::thread::current().name().unwrap_or("").to_owned(),
    }
}

fn builder(cluster: &MockCluster, topic: &str) -> ThreadManagerBuilder {
    ThreadManager::builder(cluster.consumer("g").subscribe([topic]).build().unwrap())
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(100))
}

fn committed(cluster: &MockCluster, topic: &str, partition: i32) -> Option<i64> {
    cluster.committed("g", topic, partition)
}

/// Waits until partitions `0..partitions` of "t" are committed to `end`, then stops `m`.
fn stop_once_committed(
    m: &ThreadManager,
    cluster: &MockCluster,
    partitions: i32,
    end: i64,
) -> StopReport {
    eventually(PATIENCE, &format!("t committed to {end}"), || {
        (0..partitions).all(|p| committed(cluster, "t", p) == Some(end))
    });
    m.stop().unwrap()
}

/// Offsets seen per partition, in the order the callbacks ran.
fn by_partition(log: &[Seen]) -> BTreeMap<i32, Vec<i64>> {
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for s in log {
        out.entry(s.partition).or_default().push(s.offset);
    }
    out
}

#[test]
fn partition_order_is_kept_on_one_worker_per_partition_and_all_is_committed() {
    let cluster = cluster_with("t", 6, 1200);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let m = builder(&cluster, "t")
        .thread_name("pooled")
        .parallel_callback(WorkerPool::new(3), move |msg: &Message| -> Ok {
            sink.lock().unwrap().push(seen(msg));
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 6, 200);
    assert_eq!(report.counts.messages_handled, 1200);
    let log = log.lock().unwrap().clone();
    for (p, offsets) in by_partition(&log) {
        assert_eq!(
            offsets,
            (0..200).collect::<Vec<_>>(),
            "partition {p} in order, once"
        );
    }
    let mut threads_of: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for s in &log {
        threads_of
            .entry(s.partition)
            .or_default()
            .insert(s.thread.clone());
    }
    assert!(
        threads_of.values().all(|t| t.len() == 1),
        "each partition stays on one worker: {threads_of:?}"
    );
    let workers: BTreeSet<_> = log.iter().map(|s| s.thread.clone()).collect();
    assert_eq!(
        workers.len(),
        3,
        "6 partitions spread over 3 workers: {workers:?}"
    );
    assert!(workers.iter().all(|t| t.starts_with("pooled-worker-")));
}

#[test]
fn partitions_run_in_parallel_one_per_worker() {
    let cluster = cluster_with("t", 4, 40);
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (a, top) = (Arc::clone(&active), Arc::clone(&most));
    let m = builder(&cluster, "t")
        .parallel_callback(WorkerPool::new(4), move |msg: &Message| -> Ok {
            let now = a.fetch_add(1, Ordering::SeqCst) + 1;
            top.fetch_max(now, Ordering::SeqCst);
            if msg.offset() == 0 {
                // The first message of each partition waits (bounded) for the others, so
                // four at once is reached only if four workers run side by side.
                let until = Instant::now() + Duration::from_secs(5);
                while a.load(Ordering::SeqCst) < 4 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            a.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    stop_once_committed(&m, &cluster, 4, 10);
    assert_eq!(most.load(Ordering::SeqCst), 4, "four callbacks ran at once");
}

#[test]
fn key_order_runs_a_partition_in_parallel_and_commits_no_gap() {
    let cluster = MockCluster::new();
    cluster.create_topic("t", 1).unwrap();
    for i in 0..400 {
        let record = Record::new("v").key(format!("k{}", i % 8));
        cluster.produce("t", 0, record).unwrap();
    }
    let commits: Arc<Mutex<Vec<i64>>> = Arc::default();
    let commit_log = Arc::clone(&commits);
    let source = Observed {
        inner: cluster.consumer("g").subscribe(["t"]).build().unwrap(),
        observe: Box::new(move |call| {
            if let Call::Commit(offsets) = call {
                let p = offsets.get(&TopicPartition::new("t", 0));
                commit_log.lock().unwrap().extend(p);
            }
        }),
    };
    let release = Arc::new(AtomicBool::new(false));
    let log: SeenLog = Arc::default();
    let (gate, sink) = (Arc::clone(&release), Arc::clone(&log));
    let m = ThreadManager::builder(source)
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(100))
        .parallel_callback(
            WorkerPool::new(4).order(ProcessingOrder::Key),
            move |msg: &Message| -> Ok {
                if msg.offset() == 5 {
                    while !gate.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                sink.lock().unwrap().push(seen(msg));
                Ok(())
            },
        )
        .build()
        .unwrap();
    m.start().unwrap();
    // Keys on the other workers go on while offset 5 is held up.
    eventually(PATIENCE, "other keys handled past offset 5", || {
        log.lock().unwrap().iter().filter(|s| s.offset > 5).count() >= 100
    });
    let while_blocked = m.stats();
    assert!(
        commits.lock().unwrap().iter().all(|&p| p <= 5),
        "a commit passed the unfinished offset 5: {:?}",
        commits.lock().unwrap()
    );
    assert!(while_blocked
        .committed
        .get(&TopicPartition::new("t", 0))
        .is_none_or(|p| p <= 5));
    release.store(true, Ordering::SeqCst);
    stop_once_committed(&m, &cluster, 1, 400);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 400);
    let mut per_key: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    for s in &log {
        per_key
            .entry(s.key.clone().unwrap())
            .or_default()
            .push(s.offset);
    }
    for (key, offsets) in &per_key {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "key {key:?} out of order: {offsets:?}"
        );
    }
    let workers: BTreeSet<_> = log.iter().map(|s| s.thread.clone()).collect();
    assert!(workers.len() > 1, "keys spread over workers: {workers:?}");
}

#[test]
fn a_full_queue_pauses_the_partition_and_the_backlog_stays_bounded() {
    let cluster = MockCluster::new();
    cluster.create_topic("t", 1).unwrap();
    cluster.fill("t", 2000, 8).unwrap();
    let pauses: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let pause_log = Arc::clone(&pauses);
    let source = Observed {
        inner: cluster
            .consumer("g")
            .subscribe(["t"])
            .max_batch(100)
            .build()
            .unwrap(),
        observe: Box::new(move |call| match call {
            Call::Pause(_) => pause_log.lock().unwrap().push("pause"),
            Call::Resume(_) => pause_log.lock().unwrap().push("resume"),
            _ => {}
        }),
    };
    let release = Arc::new(AtomicBool::new(false));
    let handled = Arc::new(AtomicUsize::new(0));
    let (gate, count) = (Arc::clone(&release), Arc::clone(&handled));
    let m = ThreadManager::builder(source)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(20))
        .parallel_callback(
            WorkerPool::new(1).queue_capacity(10),
            move |_: &Message| -> Ok {
                while !gate.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                count.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "the partition paused", || {
        pauses.lock().unwrap().contains(&"pause")
    });
    // Many polls later, the source has handed out no more than before the pause.
    std::thread::sleep(Duration::from_millis(300));
    let stats = m.stats();
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert!(
        stats.in_flight <= 10 + 10 && stats.held <= 100,
        "backlog not bounded: {} in flight, {} held",
        stats.in_flight,
        stats.held
    );
    assert!(stats.held > 0, "the poll batch that did not fit is held");
    release.store(true, Ordering::SeqCst);
    let report = stop_once_committed(&m, &cluster, 1, 2000);
    assert_eq!(report.counts.messages_handled, 2000);
    let pauses = pauses.lock().unwrap().clone();
    let (p, r) = (
        pauses.iter().filter(|c| **c == "pause").count(),
        pauses.iter().filter(|c| **c == "resume").count(),
    );
    assert!(p >= 1 && p == r, "every pause is resumed: {pauses:?}");
}

#[test]
fn batch_callbacks_get_ordered_batches_of_one_partition() {
    let cluster = cluster_with("t", 3, 900);
    let batches: Batches = Arc::default();
    let sink = Arc::clone(&batches);
    let m = builder(&cluster, "t")
        .parallel_batch_callback(
            WorkerPool::new(2).max_batch(50),
            move |batch: &[Message]| -> Ok {
                let b = batch.iter().map(|m| (m.partition(), m.offset())).collect();
                sink.lock().unwrap().push(b);
                Ok(())
            },
        )
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 3, 300);
    assert_eq!(report.counts.messages_handled, 900);
    let batches = batches.lock().unwrap().clone();
    let mut all: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for b in &batches {
        assert!(!b.is_empty() && b.len() <= 50, "batch size {}", b.len());
        assert!(b.iter().all(|(p, _)| *p == b[0].0), "one partition: {b:?}");
        assert!(
            b.windows(2).all(|w| w[1].1 == w[0].1 + 1),
            "consecutive: {b:?}"
        );
        all.entry(b[0].0)
            .or_default()
            .extend(b.iter().map(|(_, o)| *o));
    }
    for (p, offsets) in all {
        assert_eq!(offsets, (0..300).collect::<Vec<_>>(), "partition {p}");
    }
}

#[test]
fn a_single_batch_callback_needs_no_clone_and_sees_every_message() {
    let cluster = cluster_with("t", 2, 100);
    // A handler that is not Clone: it owns a non-cloneable resource.
    struct Sink(std::sync::mpsc::Sender<usize>);
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Sink(tx);
    let m = builder(&cluster, "t")
        .batch_callback(move |batch: &[Message]| -> Ok {
            sink.0.send(batch.len()).unwrap();
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    stop_once_committed(&m, &cluster, 2, 50);
    assert_eq!(rx.try_iter().sum::<usize>(), 100);
}

#[test]
fn a_failed_batch_is_retried_whole_then_skipped_by_policy() {
    let cluster = cluster_with("t", 1, 100);
    let attempts: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
    let sink = Arc::clone(&attempts);
    let m = builder(&cluster, "t")
        .retry_policy(
            RetryPolicy::retries(2).backoff(Duration::from_millis(5), Duration::from_millis(5)),
        )
        .failure_policy(FailurePolicy::Skip)
        .parallel_batch_callback(
            WorkerPool::new(1).max_batch(16),
            move |batch: &[Message]| -> Ok {
                let offsets: Vec<i64> = batch.iter().map(Message::offset).collect();
                let poisoned = offsets.contains(&40);
                sink.lock().unwrap().push(offsets);
                if poisoned {
                    return Err("downstream rejects the batch with 40".into());
                }
                Ok(())
            },
        )
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 1, 100);
    let attempts = attempts.lock().unwrap().clone();
    let poisoned: Vec<_> = attempts.iter().filter(|b| b.contains(&40)).collect();
    assert_eq!(poisoned.len(), 3, "one try and two retries: {poisoned:?}");
    assert!(
        poisoned.iter().all(|b| *b == poisoned[0]),
        "the same batch each time"
    );
    let skipped = poisoned[0].len() as u64;
    assert_eq!(report.counts.skipped, skipped);
    assert_eq!(report.counts.messages_handled, 100 - skipped);
    assert_eq!(
        (report.counts.retries, report.counts.callback_failures),
        (2, 3)
    );
}

#[test]
fn a_failed_message_is_retried_in_place_and_order_is_kept() {
    let cluster = cluster_with("t", 2, 40);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let m = builder(&cluster, "t")
        .retry_policy(
            RetryPolicy::retries(3).backoff(Duration::from_millis(5), Duration::from_millis(5)),
        )
        .parallel_callback(WorkerPool::new(2), move |msg: &Message| -> Ok {
            let mut log = sink.lock().unwrap();
            log.push(seen(msg));
            let tries = log
                .iter()
                .filter(|s| s.partition == msg.partition() && s.offset == msg.offset())
                .count();
            if msg.partition() == 0 && msg.offset() == 3 && tries <= 2 {
                return Err("busy".into());
            }
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 2, 20);
    let p0 = by_partition(&log.lock().unwrap())[&0].clone();
    let mut expected: Vec<i64> = (0..20).collect();
    expected.splice(3..4, [3, 3, 3]);
    assert_eq!(
        p0, expected,
        "retried in place, nothing of partition 0 overtook it"
    );
    assert_eq!(
        (report.counts.retries, report.counts.callback_failures),
        (2, 2)
    );
    assert_eq!(report.counts.messages_handled, 40);
}

#[test]
fn the_stop_policy_handles_nothing_after_the_failed_message() {
    let cluster = cluster_with("t", 2, 200);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let m = builder(&cluster, "t")
        .parallel_callback(WorkerPool::new(2), move |msg: &Message| -> Ok {
            sink.lock().unwrap().push(seen(msg));
            if msg.partition() == 0 && msg.offset() == 10 {
                return Err(CallbackError::permanent("malformed"));
            }
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(PATIENCE)).unwrap();
    assert_eq!(report.final_state, State::Failed);
    match &report.reason {
        StopReason::CallbackFailed(f) => assert_eq!((f.partition, f.offset), (0, 10)),
        other => panic!("unexpected reason {other:?}"),
    }
    let p0 = by_partition(&log.lock().unwrap())
        .remove(&0)
        .unwrap_or_default();
    assert_eq!(p0, (0..=10).collect::<Vec<_>>(), "nothing after 10 handled");
    assert_eq!(committed(&cluster, "t", 0), Some(10));
}

#[test]
fn dead_letters_from_workers_are_committed_after_the_ack() {
    let cluster = cluster_with("t", 1, 50);
    cluster.create_topic("t.dlq", 1).unwrap();
    let m = builder(&cluster, "t")
        .failure_policy(FailurePolicy::DeadLetter(DeadLetter::new(
            cluster.dead_letter_producer(),
        )))
        .parallel_callback(WorkerPool::new(2), move |msg: &Message| -> Ok {
            if msg.offset() == 7 {
                return Err(CallbackError::permanent("malformed"));
            }
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 1, 50);
    let dead = cluster.records("t.dlq", 0).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key(), Some(&b"key-7"[..]));
    assert_eq!(
        (report.counts.dead_lettered, report.counts.messages_handled),
        (1, 49)
    );
}

#[test]
fn stop_lets_running_callbacks_finish_and_commits_what_they_finished() {
    let cluster = cluster_with("t", 4, 4000);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let m = builder(&cluster, "t")
        .commit_policy(CommitPolicy::Interval(Duration::from_secs(3600)))
        .parallel_callback(WorkerPool::new(4), move |msg: &Message| -> Ok {
            std::thread::sleep(Duration::from_millis(2));
            sink.lock().unwrap().push(seen(msg));
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "some handled", || log.lock().unwrap().len() >= 40);
    let report = m.stop().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(log.len() < 4000, "queued messages were not run after stop");
    assert_eq!(report.counts.messages_handled, log.len() as u64);
    for (p, offsets) in by_partition(&log) {
        let done = offsets.len() as i64;
        assert_eq!(offsets, (0..done).collect::<Vec<_>>());
        assert_eq!(
            committed(&cluster, "t", p),
            Some(done),
            "partition {p}: the final commit is what finished"
        );
    }
}

#[test]
fn stop_from_a_worker_callback_does_not_deadlock() {
    let cluster = cluster_with("t", 1, 50);
    let probe = FromCallback::default();
    let in_cb = probe.clone();
    let m = probe.set(
        builder(&cluster, "t")
            .parallel_callback(WorkerPool::new(2), move |msg: &Message| -> Ok {
                if msg.offset() == 10 {
                    in_cb.call(ThreadManager::stop);
                }
                Ok(())
            })
            .build()
            .unwrap(),
    );
    m.start().unwrap();
    let report = m.wait(Some(PATIENCE)).unwrap();
    assert_eq!(report.reason, StopReason::Requested);
    assert!(probe
        .answer()
        .starts_with("stop() called from the consumer thread"));
    let done = report.counts.messages_handled as i64;
    assert!(done >= 11, "the callback that stopped finished");
    assert_eq!(committed(&cluster, "t", 0), Some(done));
}

#[test]
fn wait_from_a_worker_callback_returns_an_error_and_the_pool_goes_on() {
    let cluster = cluster_with("t", 2, 50);
    let probe = FromCallback::default();
    let in_cb = probe.clone();
    let m = probe.set(
        builder(&cluster, "t")
            .parallel_callback(WorkerPool::new(2), move |msg: &Message| -> Ok {
                if msg.offset() == 10 && msg.partition() == 1 {
                    // Without the guard this sleeps out the 30 s, then times out.
                    in_cb.call(|m| m.wait(Some(Duration::from_secs(30))));
                }
                Ok(())
            })
            .build()
            .unwrap(),
    );
    m.start().unwrap();
    eventually(PATIENCE, "all 50 handled", || {
        m.stats().counts.messages_handled == 50
    });
    let report = m.stop().unwrap();
    assert_eq!(report.reason, StopReason::Requested);
    assert_eq!(report.counts.messages_handled, 50);
    assert!(probe
        .answer()
        .starts_with("wait() called from the consumer thread"));
}

#[test]
fn a_rebalance_forgets_what_the_workers_still_had() {
    let cluster = cluster_with("t", 2, 400);
    let log: SeenLog = Arc::default();
    let sink = Arc::clone(&log);
    let first = builder(&cluster, "t")
        .parallel_callback(WorkerPool::new(2), move |msg: &Message| -> Ok {
            std::thread::sleep(Duration::from_millis(1));
            sink.lock().unwrap().push(seen(msg));
            Ok(())
        })
        .build()
        .unwrap();
    first.start().unwrap();
    eventually(PATIENCE, "some handled", || log.lock().unwrap().len() >= 20);
    // A second member joins: the first gives a partition up mid-stream.
    let second_log: SeenLog = Arc::default();
    let sink = Arc::clone(&second_log);
    let second = builder(&cluster, "t")
        .parallel_callback(WorkerPool::new(2), move |msg: &Message| -> Ok {
            sink.lock().unwrap().push(seen(msg));
            Ok(())
        })
        .build()
        .unwrap();
    second.start().unwrap();
    eventually(PATIENCE, "all committed", || {
        (0..2).all(|p| committed(&cluster, "t", p) == Some(200))
    });
    first.stop().unwrap();
    second.stop().unwrap();
    // At least once: every offset was handled by one of the two members.
    let mut all = log.lock().unwrap().clone();
    all.extend(second_log.lock().unwrap().iter().cloned());
    for p in 0..2 {
        let got: BTreeSet<i64> = all
            .iter()
            .filter(|s| s.partition == p)
            .map(|s| s.offset)
            .collect();
        assert_eq!(got, (0..200).collect(), "partition {p}");
    }
    assert!(
        first.stats().counts.rebalances >= 2,
        "the first member was assigned, then gave a partition up"
    );
}

#[test]
fn bad_pool_settings_fail_at_build_time() {
    let cluster = cluster_with("t", 1, 1);
    for (pool, reason) in [
        (WorkerPool::new(0), "workers must be at least 1"),
        (
            WorkerPool::new(2).queue_capacity(0),
            "queue_capacity must be at least 1",
        ),
        (
            WorkerPool::new(2).max_batch(0),
            "max_batch must be at least 1",
        ),
    ] {
        let err = builder(&cluster, "t")
            .parallel_callback(pool, |_: &Message| -> Ok { Ok(()) })
            .build()
            .unwrap_err();
        assert_eq!(err, BuildError::InvalidWorkerPool { reason });
    }
    // A later sequential callback does not silently replace the pool (issue 18): one
    // handler per manager.
    let m = builder(&cluster, "t")
        .parallel_callback(WorkerPool::new(2), |_: &Message| -> Ok { Ok(()) })
        .callback(|_: &Message| -> Ok { Ok(()) })
        .build();
    assert_eq!(m.err(), Some(BuildError::MoreThanOneHandler { given: 2 }));
}

#[test]
fn a_revoked_partition_s_retry_is_abandoned_and_its_worker_goes_on() {
    let cluster = MockCluster::new();
    cluster.create_topic("t", 2).unwrap();
    for i in 0..10 {
        cluster
            .produce("t", 1, Record::new(format!("p1-{i}")))
            .unwrap();
    }
    let attempts = Arc::new(AtomicUsize::new(0));
    let tries = Arc::clone(&attempts);
    // One worker: partition 0's messages queue behind partition 1's failing one.
    let a = builder(&cluster, "t")
        .retry_policy(
            RetryPolicy::retries(10).backoff(Duration::from_secs(3600), Duration::from_secs(3600)),
        )
        .parallel_callback(WorkerPool::new(1), move |msg: &Message| -> Ok {
            if msg.partition() == 1 && msg.offset() == 0 {
                tries.fetch_add(1, Ordering::SeqCst);
                return Err("downstream busy".into());
            }
            Ok(())
        })
        .build()
        .unwrap();
    a.start().unwrap();
    eventually(PATIENCE, "the first attempt failed", || {
        attempts.load(Ordering::SeqCst) == 1
    });
    for i in 0..10 {
        cluster
            .produce("t", 0, Record::new(format!("p0-{i}")))
            .unwrap();
    }
    eventually(PATIENCE, "partition 0 queued behind the retry", || {
        a.stats().in_flight > 1
    });
    // A second member takes partition 1 over (the range assignor keeps 0 with the first).
    let b = builder(&cluster, "t")
        .callback(|_: &Message| -> Ok { Ok(()) })
        .build()
        .unwrap();
    b.start().unwrap();
    eventually(PATIENCE, "both partitions committed", || {
        committed(&cluster, "t", 0) == Some(10) && committed(&cluster, "t", 1) == Some(10)
    });
    let report = a.stop().unwrap();
    b.stop().unwrap();
    assert_eq!(
        report.final_state,
        State::Stopped,
        "no give-up for a partition given away"
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the hour-long retry was abandoned"
    );
    assert_eq!(
        report.counts.messages_handled, 10,
        "the first member handled partition 0"
    );
}

#[test]
fn dead_letters_of_one_partition_stay_in_offset_order_through_send_faults() {
    use kafka_thread_manager::mock::{Fault, FaultPlan};
    let cluster = cluster_with("t", 1, 20);
    cluster.create_topic("t.dlq", 1).unwrap();
    // The first send fails transiently: the later dead letters must wait for it.
    let producer = cluster
        .dead_letter_producer()
        .with_faults(FaultPlan::new().on_send(1, Fault::Transient));
    let m = builder(&cluster, "t")
        .retry_policy(
            RetryPolicy::none().backoff(Duration::from_millis(50), Duration::from_millis(50)),
        )
        .failure_policy(FailurePolicy::DeadLetter(DeadLetter::new(producer)))
        .parallel_callback(WorkerPool::new(1), |msg: &Message| -> Ok {
            if (3..=5).contains(&msg.offset()) {
                return Err(CallbackError::permanent("malformed"));
            }
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    let report = stop_once_committed(&m, &cluster, 1, 20);
    let sources: Vec<i64> = cluster
        .records("t.dlq", 0)
        .unwrap()
        .iter()
        .map(|d| header_number(d, "ktm.dlq.source.offset"))
        .collect();
    assert_eq!(sources, [3, 4, 5], "in offset order, each once");
    assert_eq!(
        (
            report.counts.dead_lettered,
            report.counts.dead_letter_errors
        ),
        (3, 1)
    );
}

#[test]
fn a_slow_callback_is_reported_and_committed_as_it_goes() {
    let cluster = cluster_with("t", 1, 20);
    let commits: Arc<Mutex<Vec<i64>>> = Arc::default();
    let commit_log = Arc::clone(&commits);
    let source = Observed {
        inner: cluster.consumer("g").subscribe(["t"]).build().unwrap(),
        observe: Box::new(move |call| {
            if let Call::Commit(offsets) = call {
                commit_log
                    .lock()
                    .unwrap()
                    .extend(offsets.get(&TopicPartition::new("t", 0)));
            }
        }),
    };
    let m = ThreadManager::builder(source)
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .parallel_callback(WorkerPool::new(1), |_: &Message| -> Ok {
            std::thread::sleep(Duration::from_millis(30));
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    stop_once_committed(&m, &cluster, 1, 20);
    let commits = commits.lock().unwrap().clone();
    // The 20 messages arrive as one run; without reports inside it, one commit of 20.
    assert!(
        commits.iter().filter(|&&p| p < 20).count() >= 4,
        "commits as the run goes: {commits:?}"
    );
}
