//! Per-partition lag and health on the mock, step by step: a gate in the callback lets
//! the test release one message at a time.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{cluster_with, eventually};
use kafka_thread_manager::mock::Record;
use kafka_thread_manager::{
    CommitPolicy, Message, PartitionStats, State, ThreadManager, TopicPartition,
};

const WAIT: Duration = Duration::from_secs(20);

fn partition0(m: &ThreadManager) -> Option<PartitionStats> {
    m.stats()
        .partitions
        .into_iter()
        .find(|p| p.tp == TopicPartition::new("t", 0))
}

/// A manager whose callback waits for a token per message.
fn gated(
    cluster: &kafka_thread_manager::mock::MockCluster,
    stall: Duration,
) -> (ThreadManager, mpsc::Sender<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let m = ThreadManager::builder(
        cluster
            .consumer("g")
            .subscribe(["t"])
            .max_batch(1)
            .build()
            .unwrap(),
    )
    .callback(move |_: &Message| -> Result<(), std::io::Error> {
        rx.recv().map_err(|_| std::io::Error::other("gate closed"))
    })
    .commit_policy(CommitPolicy::EveryMessage)
    .thread_lifetime(None)
    .stall_threshold(stall)
    .build()
    .unwrap();
    (m, tx)
}

#[test]
fn lag_is_high_watermark_minus_committed_at_each_step() {
    let cluster = cluster_with("t", 1, 10);
    let (m, gate) = gated(&cluster, Duration::from_secs(60));
    m.start().unwrap();
    eventually(WAIT, "first snapshot", || {
        partition0(&m).is_some_and(|p| p.high_watermark == Some(10))
    });
    let p = partition0(&m).unwrap();
    assert_eq!(
        (p.committed, p.lag),
        (None, None),
        "nothing handled or committed yet: lag unknown"
    );
    for k in 1..=15i64 {
        if k == 6 {
            for _ in 0..5 {
                cluster.produce("t", 0, Record::new("more")).unwrap();
            }
        }
        gate.send(()).unwrap();
        eventually(WAIT, &format!("commit {k}"), || {
            partition0(&m).is_some_and(|p| p.committed == Some(k))
        });
        let p = partition0(&m).unwrap();
        let produced = cluster.end_offset("t", 0).unwrap();
        let hw = p.high_watermark.unwrap();
        // The one step whose poll may have run before the extra records were produced
        // sees the previous high watermark; every other step sees what was produced.
        if k == 6 {
            assert!(hw == 10 || hw == 15, "step {k}: high watermark {hw}");
        } else {
            assert_eq!(hw, produced, "step {k}");
        }
        assert_eq!(
            p.lag,
            Some(hw - k),
            "step {k}: lag = high watermark - committed"
        );
        assert_eq!(p.position, Some(k));
        assert_eq!(p.messages_handled, k as u64);
    }
    drop(gate);
    m.stop().unwrap();
}

#[test]
fn a_stall_with_lag_flips_health_and_progress_restores_it() {
    let cluster = cluster_with("t", 1, 10);
    let (m, gate) = gated(&cluster, Duration::from_millis(150));
    let before = m.health();
    assert!(!before.healthy, "not running yet");
    m.start().unwrap();
    for _ in 0..3 {
        gate.send(()).unwrap();
    }
    eventually(WAIT, "three committed", || {
        partition0(&m).is_some_and(|p| p.committed == Some(3))
    });
    let h = m.health();
    assert!(h.assigned);
    // The callback now waits on the gate: a stalled downstream, with 7 messages of lag.
    eventually(WAIT, "the stall to show", || !m.health().healthy);
    let h = m.health();
    assert_eq!(h.state, State::Running);
    assert_eq!(h.stalled, vec![TopicPartition::new("t", 0)]);
    gate.send(()).unwrap();
    eventually(WAIT, "progress to restore health", || m.health().healthy);
    for _ in 0..6 {
        gate.send(()).unwrap();
    }
    eventually(WAIT, "all committed", || {
        partition0(&m).is_some_and(|p| p.committed == Some(10))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(m.health().healthy, "no lag left: idle is not a stall");
    drop(gate);
    m.stop().unwrap();
    assert!(!m.health().healthy, "stopped");
}
