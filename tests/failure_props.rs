//! Property: for random failure patterns, retry bounds, failure policies and dead-letter
//! send faults, no message is both committed past and unaccounted for: each message below
//! its partition's committed offset was handled, dead-lettered, or skipped by policy
//! (checked at every commit and at the end); nothing is dead-lettered or skipped that the
//! policies did not give up on; `Stop` commits nothing past the first give-up. The same
//! holds with the callback on a worker pool (1-3 workers, partition or key order, queues
//! small enough that partitions are paused for backpressure).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{deadlock_watchdog, header_number, Call, Observed};
use kafka_thread_manager::mock::{Fault, FaultPlan, MockCluster};
use kafka_thread_manager::{
    CallbackError, CommitPolicy, DeadLetter, FailurePolicy, Message, ProcessingOrder, RetryPolicy,
    State, ThreadManager, TopicPartition, WorkerPool,
};
use proptest::prelude::*;

const PARTITIONS: i32 = 2;
const PER_PARTITION: i64 = 30;
const ALWAYS: u8 = u8::MAX;

/// How one message fails: this many times before succeeding (`ALWAYS`: never succeeds),
/// each time in this way.
#[derive(Clone, Copy, Debug)]
struct Failing {
    failures: u8,
    how: How,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    Retryable,
    Permanent,
    Panic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Policy {
    Stop,
    Skip,
    DeadLetter,
}

#[derive(Clone, Debug)]
struct Case {
    failing: BTreeMap<(i32, i64), Failing>,
    max_retries: u32,
    policy: Policy,
    send_faults: Vec<(u64, bool)>,
    commit_every: u64,
    /// Workers, key order, queue capacity; `None`: the callback on the consumer thread.
    pool: Option<(usize, bool, usize)>,
}

impl Case {
    /// Whether the policies give up on this message (rather than see it succeed).
    fn gives_up(&self, at: (i32, i64)) -> bool {
        self.failing
            .get(&at)
            .is_some_and(|f| f.how != How::Retryable || u32::from(f.failures) > self.max_retries)
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let failing = (
        0..PARTITIONS,
        0..PER_PARTITION,
        prop_oneof![Just(1u8), Just(2), Just(3), Just(ALWAYS)],
        prop_oneof![
            6 => Just(How::Retryable),
            2 => Just(How::Permanent),
            1 => Just(How::Panic)
        ],
    );
    (
        prop::collection::vec(failing, 0..6),
        0u32..4,
        prop_oneof![
            Just(Policy::Stop),
            Just(Policy::Skip),
            Just(Policy::DeadLetter)
        ],
        prop::collection::vec((1u64..6, prop::bool::weighted(0.2)), 0..3),
        1u64..8,
        prop::option::of((1usize..4, any::<bool>(), 1usize..8)),
    )
        .prop_map(
            |(failing, max_retries, policy, send_faults, commit_every, pool)| Case {
                failing: failing
                    .into_iter()
                    .map(|(p, o, failures, how)| ((p, o), Failing { failures, how }))
                    .collect(),
                max_retries,
                policy,
                send_faults,
                commit_every,
                pool,
            },
        )
}

type Ledger = Arc<Mutex<BTreeSet<(i32, i64)>>>;

/// Whether a message counts as settled: handled, dead-lettered, or skipped by policy.
fn settled(case: &Case, cluster: &MockCluster, handled: &Ledger, at: (i32, i64)) -> bool {
    if handled.lock().unwrap().contains(&at) {
        return true;
    }
    match case.policy {
        Policy::Skip => case.gives_up(at),
        Policy::DeadLetter => dead_letters(cluster).contains(&at),
        Policy::Stop => false,
    }
}

/// The (partition, offset) each dead letter says it came from.
fn dead_letters(cluster: &MockCluster) -> Vec<(i32, i64)> {
    (0..PARTITIONS)
        .flat_map(|p| cluster.records("t.dlq", p).unwrap())
        .map(|m| {
            (
                header_number(&m, "ktm.dlq.source.partition") as i32,
                header_number(&m, "ktm.dlq.source.offset"),
            )
        })
        .collect()
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let cluster = MockCluster::new();
    cluster.create_topic("t", PARTITIONS).unwrap();
    cluster.create_topic("t.dlq", PARTITIONS).unwrap();
    cluster
        .fill("t", (PARTITIONS as i64 * PER_PARTITION) as u64, 4)
        .unwrap();
    let handled: Ledger = Arc::default();
    let attempts: Arc<Mutex<BTreeMap<(i32, i64), u8>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();

    let check = {
        let (case, cluster, handled) = (case.clone(), cluster.clone(), Arc::clone(&handled));
        Arc::new(move |tp: &TopicPartition, pos: i64| {
            let at = (tp.partition(), pos - 1);
            (pos > 0 && !settled(&case, &cluster, &handled, at)).then(|| {
                format!(
                    "{tp}@{pos} stored or committed, but {} is not settled",
                    pos - 1
                )
            })
        })
    };
    let found = Arc::clone(&violations);
    let source = Observed {
        inner: cluster
            .consumer("g")
            .subscribe(["t"])
            .max_batch(7)
            .build()
            .unwrap(),
        observe: Box::new(move |call| {
            if let Call::Store(positions) | Call::Commit(positions) = call {
                for (tp, pos) in positions.iter() {
                    found.lock().unwrap().extend(check(tp, pos));
                }
            }
        }),
    };
    let failing = case.failing.clone();
    let (seen, tries) = (Arc::clone(&handled), Arc::clone(&attempts));
    let callback = move |m: &Message| -> Result<(), CallbackError> {
        let at = (m.partition(), m.offset());
        let attempt = {
            let mut tries = tries.lock().unwrap();
            let n = tries.entry(at).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        if let Some(f) = failing.get(&at) {
            if f.failures == ALWAYS || attempt <= f.failures {
                match f.how {
                    How::Retryable => return Err(CallbackError::retryable("injected")),
                    How::Permanent => return Err(CallbackError::permanent("injected")),
                    How::Panic => panic!("injected panic"),
                }
            }
        }
        seen.lock().unwrap().insert(at);
        Ok(())
    };
    let failure_policy = match case.policy {
        Policy::Stop => FailurePolicy::Stop,
        Policy::Skip => FailurePolicy::Skip,
        Policy::DeadLetter => {
            let plan = case
                .send_faults
                .iter()
                .fold(FaultPlan::new(), |plan, &(n, fatal)| {
                    plan.on_send(
                        n,
                        if fatal {
                            Fault::Fatal
                        } else {
                            Fault::Transient
                        },
                    )
                });
            FailurePolicy::DeadLetter(DeadLetter::new(
                cluster.dead_letter_producer().with_faults(plan),
            ))
        }
    };
    let builder = ThreadManager::builder(source);
    let builder = match case.pool {
        None => builder.callback(callback),
        Some((workers, by_key, capacity)) => {
            let order = if by_key {
                ProcessingOrder::Key
            } else {
                ProcessingOrder::Partition
            };
            let pool = WorkerPool::new(workers)
                .order(order)
                .queue_capacity(capacity);
            builder.parallel_callback(pool, callback)
        }
    };
    let manager = builder
        .retry_policy(
            RetryPolicy::retries(case.max_retries)
                .backoff(Duration::from_millis(1), Duration::from_millis(3)),
        )
        .failure_policy(failure_policy)
        .commit_policy(CommitPolicy::EveryN(case.commit_every))
        .poll_timeout(Duration::from_millis(10))
        .thread_lifetime(None)
        .build()
        .unwrap();
    manager.start().unwrap();
    // Until the manager has settled every message; stop() then makes the final commit.
    let all_settled = || {
        let s = manager.stats();
        s.counts.messages_handled + s.counts.dead_lettered + s.counts.skipped
            >= (PARTITIONS as i64 * PER_PARTITION) as u64
    };
    let started = Instant::now();
    while !manager.state().is_terminal()
        && !all_settled()
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = manager.stop().unwrap();

    let v = violations.lock().unwrap();
    prop_assert!(v.is_empty(), "{:?}", *v);
    let dead = dead_letters(&cluster);
    let unique: BTreeSet<_> = dead.iter().copied().collect();
    prop_assert_eq!(
        unique.len(),
        dead.len(),
        "a message was dead-lettered twice"
    );
    for at in &dead {
        prop_assert!(
            case.policy == Policy::DeadLetter && case.gives_up(*at),
            "{:?} dead-lettered",
            at
        );
    }
    for p in 0..PARTITIONS {
        let committed = cluster.committed("g", "t", p).unwrap_or(0);
        for o in 0..committed {
            prop_assert!(
                settled(case, &cluster, &handled, (p, o)),
                "t[{}]@{} committed past but not settled",
                p,
                o
            );
        }
        let first_give_up = (0..PER_PARTITION).find(|o| case.gives_up((p, *o)));
        if let (Policy::Stop, Some(o)) = (case.policy, first_give_up) {
            prop_assert!(
                committed <= o,
                "Stop committed t[{}] to {} past {}",
                p,
                committed,
                o
            );
        }
        // A stop (by policy, or by a fatal dead-letter send) may end the run before a
        // partition is finished; anything else finishes the topic.
        let may_stop = match case.policy {
            Policy::Stop => true,
            Policy::DeadLetter => case.send_faults.iter().any(|(_, fatal)| *fatal),
            Policy::Skip => false,
        };
        let any_give_up = case.failing.keys().any(|at| case.gives_up(*at));
        if !(may_stop && any_give_up) {
            prop_assert_eq!(committed, PER_PARTITION, "t[{}]: {:?}", p, report);
        }
    }
    let gave_up: Vec<_> = case
        .failing
        .keys()
        .filter(|at| case.gives_up(**at))
        .collect();
    if case.policy == Policy::Stop && !gave_up.is_empty() {
        prop_assert_eq!(report.final_state, State::Failed);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_message_is_handled_dead_lettered_skipped_or_uncommitted(case in case_strategy()) {
        deadlock_watchdog(Duration::from_secs(900));
        run(&case)?;
    }
}
