//! Serves the manager's metrics in Prometheus text format on a local port, while it
//! consumes a topic with the rskafka backend.
//!
//! ```text
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run --example prometheus -- orders 9464
//! curl -s 127.0.0.1:9464/metrics | grep ktm_lag
//! ```
//!
//! Any `metrics` exporter works the same way: install its recorder before `start()`.

use std::net::SocketAddr;
use std::time::Duration;

use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{CommitPolicy, OffsetReset, ThreadManager};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Installs the Prometheus exporter as the global `metrics` recorder, serving
/// `GET /metrics` on `addr` (from a background thread of its own).
pub fn serve_metrics(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    Ok(())
}

/// A manager consuming `topic` in `group` from the start, committing every 100 ms.
pub fn consumer(
    bootstrap: &str,
    topic: &str,
    group: &str,
) -> Result<ThreadManager, Box<dyn std::error::Error>> {
    let source = RskafkaSource::builder()
        .bootstrap_servers([bootstrap])
        .topics([topic])
        .group_id(group)
        .offset_reset(OffsetReset::Earliest)
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_secs(1))
        .build()?;
    let manager = ThreadManager::builder(source)
        .callback(|_msg| {})
        .commit_policy(CommitPolicy::Interval(Duration::from_millis(100)))
        .thread_lifetime(None)
        .build()?;
    Ok(manager)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .map_err(|_| "set KAFKA_BOOTSTRAP_SERVERS to the broker's host:port")?;
    let mut args = std::env::args().skip(1);
    let topic = args.next().ok_or("usage: prometheus <topic> [port]")?;
    let port: u16 = args.next().map_or(Ok(9464), |p| p.parse())?;
    serve_metrics(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let manager = consumer(&bootstrap, &topic, "ktm-prometheus-example")?;
    manager.start()?;
    println!("serving metrics on http://127.0.0.1:{port}/metrics; Ctrl-C to stop");
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let stats = manager.stats();
        println!(
            "handled {}  assigned {}  state {}",
            stats.counts.messages_handled,
            stats.assignment.len(),
            stats.state
        );
        if stats.state.is_terminal() {
            return Ok(());
        }
    }
}
