//! The Python original's log lines are kept, word for word, for every way the thread ends.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{cluster_with, Captured};
use kafka_thread_manager::{Message, ThreadManager};

#[test]
fn start_and_stop_log_the_originals_lines() {
    let captured = Captured::default();
    let sink = captured.clone();
    // Global, because the stop line is logged on the consumer thread.
    tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();

    let cluster = cluster_with("t", 1, 3);
    let stopped = ThreadManager::builder(cluster.consumer("a").subscribe(["t"]).build().unwrap())
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
        .thread_name("orders-consumer")
        .build()
        .unwrap();
    stopped.start().unwrap();
    stopped.stop().unwrap();

    let expired = ThreadManager::builder(cluster.consumer("b").subscribe(["t"]).build().unwrap())
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
        .thread_lifetime(Duration::from_millis(50))
        .build()
        .unwrap();
    expired.start().unwrap();
    expired.wait(Some(Duration::from_secs(20))).unwrap();

    let log = captured.text();
    assert!(
        log.contains("Kafka consumer started consuming in thread 'orders-consumer'"),
        "{log}"
    );
    assert_eq!(
        log.matches("Kafka consumer thread stopped.").count(),
        2,
        "{log}"
    );
}
