//! Property: random sequences of lifecycle operations never deadlock or panic, every
//! call answers as the state allows, and every observed state change is in the table.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{cluster_with, deadlock_watchdog, recorder};
use kafka_thread_manager::lifecycle::is_allowed;
use kafka_thread_manager::mock::{Fault, FaultPlan, Faulty};
use kafka_thread_manager::{Error, Message, State, ThreadManager};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Start,
    Stop,
    Wait(u64),
    Drop,
}

#[derive(Clone, Debug)]
enum Trouble {
    None,
    CallbackError(i64),
    CallbackPanic(i64),
    FatalPoll(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Start),
        Just(Op::Stop),
        (0u64..40).prop_map(Op::Wait),
        Just(Op::Drop)
    ]
}

fn trouble() -> impl Strategy<Value = Trouble> {
    prop_oneof![
        Just(Trouble::None),
        (0i64..30).prop_map(Trouble::CallbackError),
        (0i64..30).prop_map(Trouble::CallbackPanic),
        (1u64..6).prop_map(Trouble::FatalPoll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn lifecycle_sequences_respect_the_table(
        ops in prop::collection::vec(op(), 1..8),
        trouble in trouble(),
        lifetime_ms in prop_oneof![Just(0u64), 5u64..60],
    ) {
        deadlock_watchdog(Duration::from_secs(600));
        let cluster = cluster_with("t", 2, 20);
        let source = cluster.consumer("g").subscribe(["t"]).max_batch(3).build().unwrap();
        let plan = match trouble {
            Trouble::FatalPoll(n) => FaultPlan::new().on_poll(n, Fault::Fatal),
            _ => FaultPlan::new(),
        };
        let (changes, listener) = recorder();
        let bad = trouble.clone();
        let manager = ThreadManager::builder(Faulty::new(source, plan))
            .callback(move |m: &Message| -> Result<(), String> {
                match bad {
                    Trouble::CallbackError(o) if m.offset() == o => Err(format!("error at {o}")),
                    Trouble::CallbackPanic(o) if m.offset() == o => panic!("panic at {o}"),
                    _ => Ok(()),
                }
            })
            .thread_lifetime(Duration::from_millis(lifetime_ms))
            .poll_timeout(Duration::from_millis(20))
            .on_state_change(listener)
            .build()
            .unwrap();
        let mut manager = Some(Arc::new(manager));
        let mut started = false;
        for op in ops {
            let Some(m) = manager.as_ref() else { break };
            let before = m.state();
            match op {
                Op::Start => {
                    let r = m.start();
                    if before == State::Created {
                        prop_assert!(r.is_ok());
                        started = true;
                    } else {
                        let is_invalid_state = matches!(r, Err(Error::InvalidState { .. }));
                        prop_assert!(is_invalid_state);
                    }
                }
                Op::Stop => {
                    let report = m.stop().unwrap();
                    prop_assert!(report.final_state.is_terminal());
                    prop_assert!(m.state().is_terminal());
                }
                Op::Wait(ms) => match m.wait(Some(Duration::from_millis(ms))) {
                    Ok(report) => prop_assert!(report.final_state.is_terminal()),
                    Err(Error::Timeout(_)) => prop_assert!(started),
                    Err(Error::InvalidState { state, .. }) => prop_assert_eq!(state, State::Created),
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                },
                Op::Drop => {
                    manager = None;
                }
            }
        }
        drop(manager);
        let changes = changes.lock().unwrap().clone();
        for c in &changes {
            prop_assert!(is_allowed(c.from, c.to), "{:?} is not in the table", c);
        }
        for pair in changes.windows(2) {
            prop_assert_eq!(pair[0].to, pair[1].from, "changes are observed in order");
        }
        if started {
            // Dropping or stopping always ends the thread: its last change is terminal.
            let last = changes.last().map(|c| c.to);
            prop_assert!(last.is_some_and(State::is_terminal), "ended in {:?}", last);
        }
    }
}
