//! Checks a consumer's configuration against the broker before consuming, and prints
//! the runbook: topics and partitions, group, commit/retry/failure policies, the
//! dead-letter topic and the metric names for lag dashboards.
//!
//! ```text
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run --example preflight -- orders billing
//! ```
//!
//! Exits with status 1 when an item failed (a missing topic, a missing `orders.dlq`, a
//! refused group, a failed extra check), after printing the report.

use std::time::Duration;

use kafka_thread_manager::rskafka::{RskafkaDeadLetterProducer, RskafkaSource};
use kafka_thread_manager::{
    BoxError, CommitPolicy, DeadLetter, FailurePolicy, RetryPolicy, ThreadManager,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let bootstrap =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".to_owned());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".to_owned());
    let group = args.next().unwrap_or_else(|| "billing".to_owned());

    let config = RskafkaSource::builder()
        .bootstrap_servers([bootstrap.as_str()])
        .topics([topic.as_str()])
        .group_id(group)
        .build_config()?;
    let dead_letters = RskafkaDeadLetterProducer::from_config(&config);
    let source = RskafkaSource::builder()
        .config(config.consumer.clone())
        .build()?;
    let manager = ThreadManager::builder(source)
        .callback(|msg| println!("{}[{}]@{}", msg.topic(), msg.partition(), msg.offset()))
        .commit_policy(CommitPolicy::Interval(Duration::from_secs(1)))
        .retry_policy(RetryPolicy::retries(3))
        .failure_policy(FailurePolicy::dead_letter(DeadLetter::new(dead_letters)))
        // Where a schema registry client would plug in its own check.
        .preflight_check("schema registry", || -> Result<String, BoxError> {
            Ok("not configured".to_owned())
        })
        .build()?;

    let report = manager.preflight_report()?;
    println!("{report}");
    if !report.is_ok() {
        std::process::exit(1);
    }
    Ok(())
}
