//! With TRACE on for `ktm_core::callback`, every callback invocation (retries too) runs
//! in a `callback` span naming its message; rebalances get a span of their own.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{cluster_with, eventually, Captured};
use kafka_thread_manager::{CommitPolicy, Message, RetryPolicy, ThreadManager, WorkerPool};
use tracing_subscriber::fmt::format::FmtSpan;

#[test]
fn callbacks_and_rebalances_run_in_spans() {
    let captured = Captured::default();
    let sink = captured.clone();
    // Global, because the spans are entered on the consumer thread.
    tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_env_filter("info,ktm_core::callback=trace")
        .with_span_events(FmtSpan::NEW)
        .init();

    let cluster = cluster_with("t", 1, 5);
    let mut failed_once = false;
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(move |m: &Message| -> Result<(), String> {
            if m.offset() == 2 && !failed_once {
                failed_once = true;
                return Err("once".into());
            }
            Ok(())
        })
        .retry_policy(
            RetryPolicy::retries(1).backoff(Duration::from_millis(10), Duration::from_millis(10)),
        )
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(Duration::from_secs(20), "all committed", || {
        cluster.committed("g", "t", 0) == Some(5)
    });
    m.stop().unwrap();

    let log = captured.text();
    let spans_of = |offset: i64| {
        log.lines()
            .filter(|l| l.contains("callback{") && l.contains(&format!("offset={offset}}}")))
            .count()
    };
    assert_eq!(spans_of(2), 2, "the first attempt and the retry:\n{log}");
    for offset in [0, 1, 3, 4] {
        assert_eq!(spans_of(offset), 1, "offset {offset}:\n{log}");
    }
    assert!(log.contains("rebalance{kind=\"assigned\"}"), "{log}");

    // On a worker pool: a span per callback on the workers, a batch's span its size.
    let cluster = cluster_with("pooled", 2, 6);
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["pooled"]).build().unwrap())
        .parallel_callback(WorkerPool::new(2), |_: &Message| -> Result<(), String> {
            Ok(())
        })
        .thread_lifetime(None)
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(Duration::from_secs(20), "pool committed", || {
        (0..2).all(|p| cluster.committed("g", "pooled", p) == Some(3))
    });
    m.stop().unwrap();
    let log = captured.text();
    let pooled = log
        .lines()
        .filter(|l| l.contains("callback{topic=\"pooled\"") && l.contains("messages=1}"))
        .count();
    assert_eq!(pooled, 6, "one span per pooled callback:\n{log}");
}
