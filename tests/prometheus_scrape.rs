//! Scrapes the Prometheus example's endpoint while it consumes from a real broker, and
//! finds lag and counters for every assigned partition.
#![cfg(feature = "rskafka")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[allow(unused_imports)]
mod common;
#[allow(dead_code, unreachable_pub)] // its main() is the example's, not ours; its fns are pub for us
#[path = "../examples/prometheus.rs"]
mod example;
#[allow(unused_imports)]
mod support;

use common::prometheus_value;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use kafka_thread_manager::TopicPartition;

fn scrape(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn the_prometheus_endpoint_shows_lag_and_counters_for_every_assigned_partition() {
    let Some(broker) = support::KafkaBroker::any("prometheus_scrape") else {
        return;
    };
    let topic = format!("ktm-prometheus-{}", std::process::id());
    let group = format!("{topic}-group");
    broker.create_topic(&topic, 3);
    broker.fill(&topic, 3, 40, 10);

    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    example::serve_metrics(addr).unwrap();
    let manager = example::consumer(&broker.bootstrap, &topic, &group).unwrap();
    manager.start().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let tps: Vec<TopicPartition> = (0..3)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    loop {
        let stats = manager.stats();
        let done = tps.iter().all(|tp| stats.committed.get(tp) == Some(40));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "not all committed: {stats:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Metrics are published per poll; give the loop a moment after the last commit.
    std::thread::sleep(Duration::from_millis(500));
    let text = scrape(addr);
    let stats = manager.stats();
    assert_eq!(stats.assignment.len(), 3, "{stats:?}");
    for tp in &stats.assignment {
        let partition = tp.partition().to_string();
        let labels = [
            ("group", group.as_str()),
            ("topic", topic.as_str()),
            ("partition", partition.as_str()),
        ];
        let get = |name| {
            prometheus_value(&text, name, &labels)
                .unwrap_or_else(|| panic!("{name} for {tp} missing in:\n{text}"))
        };
        assert_eq!(get("ktm_high_watermark"), 40.0, "{tp}");
        assert_eq!(get("ktm_committed_offset"), 40.0, "{tp}");
        assert_eq!(get("ktm_lag"), 0.0, "{tp}: high watermark minus committed");
        assert_eq!(get("ktm_messages_handled_total"), 40.0, "{tp}");
        assert_eq!(get("ktm_callback_failures_total"), 0.0, "{tp}");
        assert!(
            text.contains("ktm_callback_duration_seconds"),
            "the sampled callback histogram is exported"
        );
    }
    assert!(
        prometheus_value(&text, "ktm_commits_total", &[("group", group.as_str())]).unwrap() >= 1.0
    );
    assert_eq!(
        prometheus_value(
            &text,
            "ktm_assigned_partitions",
            &[("group", group.as_str())]
        ),
        Some(3.0)
    );
    manager.stop().unwrap();
}
