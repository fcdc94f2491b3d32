//! The manager's behaviour on the in-memory backend: lifecycle, stop, lifetime, failures,
//! commits and rebalances.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster_with, eventually, handled_at_least, recorder, FromCallback};
use kafka_thread_manager::lifecycle::is_allowed;
use kafka_thread_manager::mock::{Fault, FaultPlan, Faulty};
use kafka_thread_manager::{
    CallbackError, CommitPolicy, Error, Message, State, StopReason, ThreadManager,
};

type Ok = Result<(), std::io::Error>;

fn noop(_: &Message) -> Ok {
    Ok(())
}

#[test]
fn stop_is_prompt_commits_what_was_handled_and_is_idempotent() {
    let cluster = cluster_with("t", 3, 90);
    let source = cluster.consumer("g").subscribe(["t"]).build().unwrap();
    let (changes, listener) = recorder();
    let m = ThreadManager::builder(source)
        .callback(noop)
        .poll_timeout(Duration::from_secs(3600))
        .thread_lifetime(None)
        .on_state_change(listener)
        .build()
        .unwrap();
    m.start().unwrap();
    handled_at_least(&m, 90);
    let t0 = Instant::now();
    let report = m.stop().unwrap();
    // Behaviour, not speed: with a one-hour poll timeout, a stop that waited it out would
    // never get here.
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(report.reason, StopReason::Requested);
    assert_eq!(report.counts.messages_handled, 90);
    for p in 0..3 {
        assert_eq!(cluster.committed("g", "t", p), Some(30), "partition {p}");
    }
    assert_eq!(m.stop().unwrap(), report, "stop is idempotent");
    assert_eq!(
        cluster.member_count("g"),
        0,
        "the source left its group on close"
    );
    let seen: Vec<_> = changes
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.from, c.to))
        .collect();
    assert_eq!(
        seen,
        vec![
            (State::Created, State::Running),
            (State::Running, State::Stopping),
            (State::Stopping, State::Stopped)
        ]
    );
}

#[test]
fn invalid_calls_are_typed_errors() {
    let cluster = cluster_with("t", 1, 0);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(noop)
        .build()
        .unwrap();
    assert!(matches!(
        m.wait(Some(Duration::from_millis(1))),
        Err(Error::InvalidState {
            state: State::Created,
            ..
        })
    ));
    m.start().unwrap();
    let e = m.start().unwrap_err();
    assert_eq!(e.to_string(), "cannot start the manager: it is Running");
    m.stop().unwrap();
    assert!(matches!(
        m.start(),
        Err(Error::InvalidState {
            action: "start",
            state: State::Stopped
        })
    ));
}

#[test]
fn stop_before_start_never_runs() {
    let cluster = cluster_with("t", 1, 5);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(noop)
        .build()
        .unwrap();
    let report = m.stop().unwrap();
    assert_eq!(report.reason, StopReason::NeverStarted);
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(cluster.member_count("g"), 0);
}

#[test]
fn lifetime_ends_the_thread_by_itself_and_zero_means_no_limit() {
    let cluster = cluster_with("t", 1, 10);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(noop)
        .thread_lifetime(Duration::from_millis(150))
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(report.reason, StopReason::LifetimeExpired);
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(cluster.committed("g", "t", 0), Some(10));

    let unlimited =
        ThreadManager::builder(cluster.consumer("g2").subscribe(["t"]).build().unwrap())
            .callback(noop)
            .thread_lifetime(Duration::ZERO)
            .build()
            .unwrap();
    unlimited.start().unwrap();
    assert!(matches!(
        unlimited.wait(Some(Duration::from_millis(400))),
        Err(Error::Timeout(_))
    ));
    assert_eq!(unlimited.state(), State::Running);
}

#[test]
fn a_callback_error_fails_the_manager_and_commits_nothing_past_it() {
    let cluster = cluster_with("t", 1, 20);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(|msg: &Message| -> Result<(), CallbackError> {
            if msg.offset() == 7 {
                return Err(CallbackError::permanent("bad payload"));
            }
            Ok(())
        })
        .commit_policy(CommitPolicy::EveryMessage)
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(report.final_state, State::Failed);
    let StopReason::CallbackFailed(f) = &report.reason else {
        panic!("unexpected reason {:?}", report.reason)
    };
    assert_eq!(
        (f.offset, f.panicked, f.reason.as_str()),
        (7, false, "bad payload")
    );
    assert_eq!(report.counts.callback_failures, 1);
    assert_eq!(
        cluster.committed("g", "t", 0),
        Some(7),
        "offset 7 is not committed"
    );
    assert_eq!(m.state(), State::Failed);
    assert_eq!(
        m.stats().last_error.as_deref(),
        Some("callback failed on t[0]@7: bad payload")
    );
}

#[test]
fn a_callback_panic_is_caught_and_reported() {
    let cluster = cluster_with("t", 1, 5);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(|msg: &Message| -> Ok {
            assert!(msg.offset() != 3, "boom at {}", msg.offset());
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(Duration::from_secs(20))).unwrap();
    let StopReason::CallbackFailed(f) = &report.reason else {
        panic!("unexpected reason {:?}", report.reason)
    };
    assert!(f.panicked);
    assert_eq!(f.reason, "boom at 3");
    assert_eq!(cluster.committed("g", "t", 0), Some(3));
}

#[test]
fn transient_poll_and_commit_errors_are_retried_counted_and_lose_nothing() {
    let cluster = cluster_with("t", 2, 40);
    let source = cluster
        .consumer("g")
        .subscribe(["t"])
        .max_batch(4)
        .build()
        .unwrap();
    let plan = FaultPlan::new()
        .on_poll(2, Fault::Transient)
        .on_poll(4, Fault::Disconnect(3))
        .on_poll(9, Fault::Delay(Duration::from_millis(30)))
        .on_commit(1, Fault::Transient);
    let faulty = Faulty::new(source, plan);
    let counts = faulty.counts();
    let m = ThreadManager::builder(faulty)
        .callback(noop)
        .commit_policy(CommitPolicy::EveryN(5))
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    m.start().unwrap();
    handled_at_least(&m, 40);
    let report = m.stop().unwrap();
    assert_eq!(report.counts.messages_handled, 40);
    assert!(counts.poll_failures() >= 3, "{}", counts.poll_failures());
    assert_eq!(report.counts.poll_errors, counts.poll_failures());
    assert_eq!(report.counts.commit_errors, counts.commit_failures());
    assert!(report.counts.commit_errors >= 1);
    assert_eq!(cluster.committed("g", "t", 0), Some(20));
    assert_eq!(cluster.committed("g", "t", 1), Some(20));
}

#[test]
fn a_fatal_source_error_ends_failed() {
    let cluster = cluster_with("t", 1, 5);
    let source = cluster
        .consumer("g")
        .subscribe(["t"])
        .max_batch(1)
        .build()
        .unwrap();
    let m = ThreadManager::builder(Faulty::new(
        source,
        FaultPlan::new().on_poll(3, Fault::Fatal),
    ))
    .callback(noop)
    .build()
    .unwrap();
    m.start().unwrap();
    let report = m.wait(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(report.final_state, State::Failed);
    assert!(
        matches!(report.reason, StopReason::SourceFailed(ref s) if s.to_string().contains("injected fatal"))
    );
    assert_eq!(report.counts.messages_handled, 2);
    assert_eq!(
        cluster.committed("g", "t", 0),
        Some(2),
        "handled messages are still committed"
    );
}

#[test]
fn stop_from_inside_the_callback_does_not_deadlock() {
    let cluster = cluster_with("t", 1, 50);
    let probe = FromCallback::default();
    let in_cb = probe.clone();
    let m = probe.set(
        ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
            .callback(move |msg: &Message| -> Ok {
                if msg.offset() == 10 {
                    in_cb.call(ThreadManager::stop);
                }
                Ok(())
            })
            .build()
            .unwrap(),
    );
    m.start().unwrap();
    let report = m.wait(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(report.reason, StopReason::Requested);
    assert_eq!(
        report.counts.messages_handled, 11,
        "the in-flight callback finished, nothing after it"
    );
    assert_eq!(cluster.committed("g", "t", 0), Some(11));
    assert!(probe
        .answer()
        .starts_with("stop() called from the consumer thread"));
}

#[test]
fn wait_from_inside_the_callback_returns_an_error_and_the_thread_goes_on() {
    let cluster = cluster_with("t", 1, 50);
    let probe = FromCallback::default();
    let in_cb = probe.clone();
    let m = probe.set(
        ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
            .callback(move |msg: &Message| -> Ok {
                if msg.offset() == 10 {
                    // Without the guard this sleeps out the 30 s, then times out.
                    in_cb.call(|m| m.wait(Some(Duration::from_secs(30))));
                }
                Ok(())
            })
            .build()
            .unwrap(),
    );
    m.start().unwrap();
    eventually(Duration::from_secs(20), "all 50 handled", || {
        m.stats().counts.messages_handled == 50
    });
    assert_eq!(m.state(), State::Running);
    let report = m.stop().unwrap();
    assert_eq!(report.counts.messages_handled, 50);
    assert!(probe
        .answer()
        .starts_with("wait() called from the consumer thread"));
}

#[test]
fn drop_without_stop_stops_the_thread() {
    let cluster = cluster_with("t", 1, 10);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(noop)
        .poll_timeout(Duration::from_secs(3600))
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    m.start().unwrap();
    handled_at_least(&m, 10);
    drop(m);
    // The thread ran its shutdown: committed and left the group.
    assert_eq!(cluster.committed("g", "t", 0), Some(10));
    assert_eq!(cluster.member_count("g"), 0);
}

#[test]
fn async_callbacks_are_supported() {
    let cluster = cluster_with("t", 2, 20);
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .async_callback(move |msg: Message| {
            let c = Arc::clone(&c);
            async move {
                tokio::task::yield_now().await;
                if msg.payload().is_some() {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<(), CallbackError>(())
            }
        })
        .build()
        .unwrap();
    m.start().unwrap();
    handled_at_least(&m, 20);
    m.stop().unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 20);
}

#[test]
fn rebalance_commits_revoked_partitions_before_the_new_owner_reads_them() {
    let cluster = cluster_with("t", 4, 400);
    let seen: Arc<Mutex<Vec<(i32, i64, u8)>>> = Arc::default();
    let make = |who: u8| {
        let seen = Arc::clone(&seen);
        ThreadManager::builder(
            cluster
                .consumer("g")
                .subscribe(["t"])
                .max_batch(10)
                .build()
                .unwrap(),
        )
        .callback(move |m: &Message| -> Ok {
            seen.lock().unwrap().push((m.partition(), m.offset(), who));
            std::thread::sleep(Duration::from_micros(200));
            Ok(())
        })
        .commit_policy(CommitPolicy::Interval(Duration::from_secs(3600)))
        .build()
        .unwrap()
    };
    let a = make(1);
    a.start().unwrap();
    handled_at_least(&a, 40);
    let b = make(2);
    b.start().unwrap();
    eventually(Duration::from_secs(20), "all 400 handled", || {
        seen.lock().unwrap().len() >= 400
    });
    a.stop().unwrap();
    b.stop().unwrap();
    let seen = seen.lock().unwrap();
    let mut keys: Vec<(i32, i64)> = seen.iter().map(|(p, o, _)| (*p, *o)).collect();
    keys.sort_unstable();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), 400, "every message handled");
    assert_eq!(
        n, 400,
        "no duplicates: the revoke committed what was handled"
    );
    assert!(
        seen.iter().any(|s| s.2 == 2),
        "the second member got partitions"
    );
    assert!(a.stats().counts.rebalances >= 2);
}

#[test]
fn every_observed_change_is_in_the_table() {
    let cluster = cluster_with("t", 1, 3);
    let (changes, listener) = recorder();
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(|m: &Message| -> Result<(), &'static str> {
            if m.offset() == 2 {
                Err("no")
            } else {
                Ok(())
            }
        })
        .on_state_change(listener)
        .build()
        .unwrap();
    m.start().unwrap();
    m.wait(Some(Duration::from_secs(20))).unwrap();
    let changes = changes.lock().unwrap();
    assert_eq!(changes.last().unwrap().to, State::Failed);
    assert!(changes.iter().all(|c| is_allowed(c.from, c.to)));
}
