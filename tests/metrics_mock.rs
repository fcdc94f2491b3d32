//! Metrics through the `metrics` facade, on the mock: a Prometheus recorder (installed
//! globally, so this file is its own test process) sees the per-partition counters and
//! gauges the stats show.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{cluster_with, eventually, prometheus_value};
use kafka_thread_manager::{
    CallbackError, CommitPolicy, FailurePolicy, Message, RetryPolicy, ThreadManager,
};
use metrics_exporter_prometheus::PrometheusBuilder;

#[test]
fn counters_gauges_and_the_callback_histogram_match_the_stats() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let cluster = cluster_with("t", 2, 40);
    let mut tries = std::collections::HashMap::new();
    let m = ThreadManager::builder(cluster.consumer("g").subscribe(["t"]).build().unwrap())
        .callback(move |m: &Message| {
            let n = tries.entry((m.partition(), m.offset())).or_insert(0);
            *n += 1;
            match (m.partition(), m.offset()) {
                (0, 3) if *n <= 2 => Err(CallbackError::retryable("busy")),
                (1, 5) => Err(CallbackError::permanent("bad")),
                // What a `Typed` handler returns for a payload its decoder refuses.
                (1, 7) => Err(CallbackError::undecodable("not JSON")),
                _ => Ok(()),
            }
        })
        .retry_policy(
            RetryPolicy::retries(3).backoff(Duration::from_millis(5), Duration::from_millis(5)),
        )
        .failure_policy(FailurePolicy::Skip)
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(20))
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(Duration::from_secs(20), "all committed", || {
        (0..2).all(|p| cluster.committed("g", "t", p) == Some(20))
    });
    // Published once per poll: wait for a loop turn after the last commit.
    eventually(Duration::from_secs(20), "metrics caught up", || {
        prometheus_value(
            &handle.render(),
            "ktm_committed_offset",
            &[("partition", "1")],
        ) == Some(20.0)
    });
    let text = handle.render();
    let stats = m.stats();
    m.stop().unwrap();

    let at = |p: &'static str| [("group", "g"), ("topic", "t"), ("partition", p)];
    let get = |name: &str, p: &'static str| {
        prometheus_value(&text, name, &at(p)).unwrap_or_else(|| panic!("{name} p{p}:\n{text}"))
    };
    assert_eq!(get("ktm_messages_handled_total", "0"), 20.0);
    assert_eq!(get("ktm_messages_handled_total", "1"), 18.0);
    assert_eq!(
        (
            get("ktm_callback_failures_total", "0"),
            get("ktm_retries_total", "0")
        ),
        (2.0, 2.0)
    );
    assert_eq!(
        (
            get("ktm_callback_failures_total", "1"),
            get("ktm_decode_failures_total", "1"),
            get("ktm_skipped_total", "1")
        ),
        (1.0, 1.0, 2.0),
        "a decode failure is counted apart from callback failures"
    );
    assert_eq!(get("ktm_decode_failures_total", "0"), 0.0);
    for (p, s) in ["0", "1"].into_iter().zip(&stats.partitions) {
        assert_eq!(
            get("ktm_lag", p),
            s.lag.unwrap() as f64,
            "lag gauge = stats lag"
        );
        assert_eq!(get("ktm_high_watermark", p), 20.0);
        assert!(s.callback_time.is_some(), "callbacks were sampled: {s:?}");
    }
    assert!(text.contains("ktm_callback_duration_seconds"), "{text}");
    assert!(prometheus_value(&text, "ktm_commits_total", &[("group", "g")]).unwrap() >= 2.0);
    assert_eq!(
        prometheus_value(&text, "ktm_assigned_partitions", &[("group", "g")]),
        Some(2.0)
    );
}
