//! `run_until_shutdown_signal` in this process, on the in-memory backend: a SIGTERM
//! stops gracefully and commits what was handled; a second signal while a callback
//! blocks the stop returns at once, with nothing past what was handled committed; a
//! manager that ends by itself returns without a signal. Signals go to the whole
//! process, so these tests take turns, and send one only while the helper runs (after
//! it, SIGTERM takes its default action again: it would end the test binary).
//! `tests/shutdown_signal.rs` sends them to a child process on a real broker.
#![cfg(all(unix, feature = "signals"))]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_thread_manager::mock::MockCluster;
use kafka_thread_manager::{
    CommitPolicy, Message, ShutdownOutcome, ShutdownSignal, State, StopReason, ThreadManager,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// One test at a time: a signal reaches every helper running in the process.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `signal` (`TERM`, `INT`) to this process, as `kill` does.
fn send(signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn cluster(records: u64) -> MockCluster {
    let cluster = MockCluster::new();
    cluster.create_topic("orders", 1).unwrap();
    cluster.fill("orders", records, 8).unwrap();
    cluster
}

#[test]
fn sigterm_stops_gracefully_and_commits_what_was_handled() {
    let _turn = turn();
    let cluster = cluster(100_000);
    let source = cluster
        .consumer("billing")
        .subscribe(["orders"])
        .build()
        .unwrap();
    let manager = ThreadManager::builder(source)
        .callback(|_: &Message| -> Result<(), std::io::Error> {
            std::thread::sleep(Duration::from_micros(200));
            Ok(())
        })
        // Nothing is committed while it runs: what is committed, the stop committed.
        .commit_policy(CommitPolicy::Interval(Duration::from_secs(3600)))
        .thread_lifetime(None)
        .build()
        .unwrap();

    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            // The helper installs its handlers before it starts the manager.
            until("messages handled", || {
                manager.stats().counts.messages_handled >= 20
            });
            send("TERM");
        });
        manager.run_until_shutdown_signal().unwrap()
    });

    let ShutdownOutcome::Stopped { signal, report } = &outcome else {
        panic!("expected a graceful stop, got {outcome:?}");
    };
    assert_eq!(*signal, ShutdownSignal::Terminate);
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(report.reason, StopReason::Requested);
    assert!(report.counts.messages_handled >= 20, "{report:?}");
    assert!(
        report.counts.messages_handled < 100_000,
        "the stop came first: {report:?}"
    );
    // One partition from offset 0: the next position is the count handled.
    let handled = i64::try_from(report.counts.messages_handled).unwrap();
    assert_eq!(cluster.committed("billing", "orders", 0), Some(handled));
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(manager.state(), State::Stopped);
}

#[test]
fn a_second_signal_ends_the_wait_for_a_stuck_callback() {
    let _turn = turn();
    const STUCK_AT: i64 = 5;
    let cluster = cluster(50);
    let source = cluster
        .consumer("billing")
        .subscribe(["orders"])
        .build()
        .unwrap();
    let stuck = Arc::new(AtomicI64::new(-1));
    let release = Arc::new(AtomicBool::new(false));
    let manager = ThreadManager::builder(source)
        .callback({
            let (stuck, release) = (Arc::clone(&stuck), Arc::clone(&release));
            move |msg: &Message| -> Result<(), std::io::Error> {
                if msg.offset() == STUCK_AT {
                    stuck.store(msg.offset(), Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Ok(())
            }
        })
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .build()
        .unwrap();

    let started = Instant::now();
    let (outcome, returned_after) = std::thread::scope(|s| {
        s.spawn(|| {
            until("the stuck callback", || {
                stuck.load(Ordering::SeqCst) == STUCK_AT
            });
            send("TERM");
            // The first signal was read once the stop was requested; only then is a
            // second one a second (a pending signal is delivered once).
            until("the stop to begin", || manager.state() == State::Stopping);
            send("INT");
        });
        let outcome = manager.run_until_shutdown_signal().unwrap();
        (outcome, started.elapsed())
    });

    assert_eq!(
        outcome,
        ShutdownOutcome::Interrupted {
            first: ShutdownSignal::Terminate,
            second: ShutdownSignal::Interrupt,
        }
    );
    assert_eq!(outcome.exit_code(), 130);
    assert!(outcome.report().is_none());
    assert!(
        returned_after < PATIENCE,
        "returned after {returned_after:?}"
    );
    // The callback still blocks; the stuck message is not committed.
    assert_eq!(manager.state(), State::Stopping);
    let committed = cluster.committed("billing", "orders", 0);
    assert!(
        committed.is_none_or(|c| c <= STUCK_AT),
        "committed {committed:?} past the stuck message {STUCK_AT}"
    );

    // Released, the stop goes on and commits it.
    release.store(true, Ordering::SeqCst);
    let report = manager.stop().unwrap();
    assert_eq!(report.final_state, State::Stopped);
    assert_eq!(
        cluster.committed("billing", "orders", 0),
        Some(STUCK_AT + 1)
    );
}

#[test]
fn a_manager_that_ends_by_itself_returns_without_a_signal() {
    let _turn = turn();
    let cluster = cluster(10);
    let source = cluster
        .consumer("billing")
        .subscribe(["orders"])
        .build()
        .unwrap();
    let manager = ThreadManager::builder(source)
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
        .thread_lifetime(Duration::from_millis(300))
        .build()
        .unwrap();

    let outcome = manager.run_until_shutdown_signal().unwrap();

    let ShutdownOutcome::Ended { report } = &outcome else {
        panic!("expected the manager to end by itself, got {outcome:?}");
    };
    assert_eq!(report.reason, StopReason::LifetimeExpired);
    assert_eq!(report.counts.messages_handled, 10);
    assert_eq!(cluster.committed("billing", "orders", 0), Some(10));
    assert_eq!(outcome.exit_code(), 0);
    // Already ended: a second call returns the same report at once.
    assert_eq!(manager.run_until_shutdown_signal().unwrap(), outcome);
}
