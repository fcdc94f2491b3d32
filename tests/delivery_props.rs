//! Property: on the mock with random faults, failures, rebalances and restarts,
//! - every message below its partition's final committed offset was handled;
//! - commits never go backwards;
//! - nothing is committed beyond what was handled (checked at every commit);
//! - after restarts from the committed offsets, no message is lost.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{deadlock_watchdog, Call, Observed};
use kafka_thread_manager::mock::{Fault, FaultPlan, Faulty, MockCluster};
use kafka_thread_manager::{CommitPolicy, Message, Offsets, ThreadManager};
use proptest::prelude::*;

type Handled = Arc<Mutex<BTreeSet<(i32, i64)>>>;

/// Records, at each store and commit, positions whose previous offset was not handled.
/// Runs start at the committed offset, so only the current run's range matters: the
/// highest unhandled offset below a position must not exist.
fn audit(handled: &Handled, violations: &Arc<Mutex<Vec<String>>>, what: &str, positions: &Offsets) {
    let handled = handled.lock().unwrap();
    for (tp, pos) in positions.iter() {
        if pos > 0 && !handled.contains(&(tp.partition(), pos - 1)) {
            violations
                .lock()
                .unwrap()
                .push(format!("{what} {tp}@{pos} but {} not handled", pos - 1));
        }
    }
}

#[derive(Clone, Debug)]
struct Run {
    faults: Vec<(bool, u64, u8)>,
    fail_at: Option<i64>,
    stop_after: u64,
    rebalance_at: Option<u64>,
    policy: u8,
}

fn run_strategy() -> impl Strategy<Value = Run> {
    (
        prop::collection::vec((any::<bool>(), 1u64..12, 0u8..4), 0..5),
        prop::option::of(0i64..60),
        1u64..120,
        prop::option::of(1u64..60),
        0u8..3,
    )
        .prop_map(|(faults, fail_at, stop_after, rebalance_at, policy)| Run {
            faults,
            fail_at,
            stop_after,
            rebalance_at,
            policy,
        })
}

fn plan(run: &Run) -> FaultPlan {
    run.faults
        .iter()
        .fold(FaultPlan::new(), |plan, &(on_poll, n, kind)| {
            let fault = match kind {
                0 => Fault::Transient,
                1 => Fault::Disconnect(2),
                2 => Fault::Delay(Duration::from_millis(2)),
                _ => Fault::Fatal,
            };
            if on_poll {
                plan.on_poll(n, fault)
            } else {
                plan.on_commit(n, fault)
            }
        })
}

/// One manager run; returns when it stopped by itself or after `stop_after` handled.
fn one_run(
    cluster: &MockCluster,
    run: &Run,
    handled: &Handled,
    violations: &Arc<Mutex<Vec<String>>>,
    clean: bool,
) -> BTreeSet<(i32, i64)> {
    let source = cluster
        .consumer("g")
        .subscribe(["t"])
        .max_batch(7)
        .build()
        .unwrap();
    let plan = if clean { FaultPlan::new() } else { plan(run) };
    let (audited_handled, found) = (Arc::clone(handled), Arc::clone(violations));
    let audited = Observed {
        inner: Faulty::new(source, plan),
        observe: Box::new(move |call| match call {
            Call::Store(p) => audit(&audited_handled, &found, "store", p),
            Call::Commit(p) => audit(&audited_handled, &found, "commit", p),
            _ => {}
        }),
    };
    let seen = Arc::clone(handled);
    let this_run: Handled = Arc::default();
    let seen_in_run = Arc::clone(&this_run);
    let (fail_at, rebalance_at) = if clean {
        (None, None)
    } else {
        (run.fail_at, run.rebalance_at)
    };
    let rebalancer = cluster.clone();
    let mut count = 0u64;
    let manager = ThreadManager::builder(audited)
        .callback(move |m: &Message| -> Result<(), String> {
            count += 1;
            if rebalance_at == Some(count) {
                rebalancer.rebalance("g");
            }
            if fail_at == Some(m.offset()) && m.partition() == 0 {
                return Err("injected callback failure".into());
            }
            seen.lock().unwrap().insert((m.partition(), m.offset()));
            seen_in_run
                .lock()
                .unwrap()
                .insert((m.partition(), m.offset()));
            Ok(())
        })
        .commit_policy(match run.policy {
            _ if clean => CommitPolicy::EveryMessage,
            0 => CommitPolicy::EveryMessage,
            1 => CommitPolicy::EveryN(5),
            _ => CommitPolicy::Interval(Duration::from_millis(1)),
        })
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(4))
        .poll_timeout(Duration::from_millis(10))
        .thread_lifetime(None)
        .build()
        .unwrap();
    manager.start().unwrap();
    // A faulty run stops after `stop_after` messages (or when all were seen once); the
    // clean restart runs until the group has committed the whole topic, so it must
    // redeliver everything from the committed offsets on.
    let done = || {
        if clean {
            (0..3).all(|p| cluster.committed("g", "t", p) == Some(40))
        } else {
            manager.stats().counts.messages_handled >= run.stop_after
                || handled.lock().unwrap().len() >= 3 * 40
        }
    };
    for _ in 0..4000 {
        if manager.state().is_terminal() || done() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = manager.stop().unwrap();
    if std::env::var_os("KTM_DEBUG_PROPS").is_some() {
        eprintln!("run (clean: {clean}): {report:?}");
    }
    let this_run = this_run.lock().unwrap().clone();
    this_run
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn at_least_once_under_faults_and_restarts(runs in prop::collection::vec(run_strategy(), 1..4)) {
        deadlock_watchdog(Duration::from_secs(900));
        let cluster = MockCluster::new();
        cluster.create_topic("t", 3).unwrap();
        cluster.fill("t", 120, 4).unwrap();
        let handled: Handled = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        for run in &runs {
            one_run(&cluster, run, &handled, &violations, false);
            // After each run: everything below the committed offset was handled.
            for p in 0..3 {
                let committed = cluster.committed("g", "t", p).unwrap_or(0);
                let h = handled.lock().unwrap();
                for o in 0..committed {
                    prop_assert!(h.contains(&(p, o)), "t[{}]@{} committed past but never handled", p, o);
                }
            }
        }
        // A clean restart from the committed offsets redelivers everything from there on
        // and finishes the topic: nothing lost.
        let committed_before: Vec<i64> = (0..3).map(|p| cluster.committed("g", "t", p).unwrap_or(0)).collect();
        let restart = one_run(&cluster, &runs[0], &handled, &violations, true);
        let h = handled.lock().unwrap();
        for p in 0..3 {
            for o in committed_before[p as usize]..40 {
                prop_assert!(restart.contains(&(p, o)), "restart at t[{}]@{} did not redeliver {}", p, committed_before[p as usize], o);
            }
            for o in 0..40 {
                prop_assert!(h.contains(&(p, o)), "t[{}]@{} lost", p, o);
            }
            prop_assert_eq!(cluster.committed("g", "t", p), Some(40));
        }
        // Commits never go backwards.
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for c in cluster.commit_log("g") {
            let prev = last.insert(c.tp.partition(), c.position).unwrap_or(0);
            prop_assert!(c.position >= prev, "commit of {} went back from {} to {}", c.tp, prev, c.position);
        }
        let v = violations.lock().unwrap();
        prop_assert!(v.is_empty(), "positions beyond what was handled: {:?}", *v);
    }
}
