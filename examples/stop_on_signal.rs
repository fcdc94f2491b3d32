//! A service's main: consume until SIGTERM (Kubernetes, systemd, `kill`) or Ctrl-C,
//! then stop gracefully (the in-flight message finishes, what was handled is
//! committed), log the report and exit with a status. A second signal while stopping
//! exits at once (status 128 + the signal), with nothing past what was handled committed.
//!
//! ```text
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run --example stop_on_signal --features signals -- orders billing
//! kill -TERM <pid>   # or Ctrl-C
//! ```

use std::time::Duration;

use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{CommitPolicy, OffsetReset, ShutdownOutcome, ThreadManager};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let code = match run() {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            tracing::error!("{e}");
            2
        }
    };
    std::process::exit(code);
}

fn run() -> Result<ShutdownOutcome, Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .map_err(|_| "set KAFKA_BOOTSTRAP_SERVERS to the broker's host:port")?;
    let mut args = std::env::args().skip(1);
    let topic = args.next().ok_or("usage: stop_on_signal <topic> [group]")?;
    let group = args.next().unwrap_or_else(|| "stop-on-signal".to_owned());

    let source = RskafkaSource::builder()
        .bootstrap_servers([bootstrap])
        .topics([topic])
        .group_id(group)
        .offset_reset(OffsetReset::Earliest)
        .build()?;
    let manager = ThreadManager::builder(source)
        .callback(|msg| {
            tracing::info!(
                partition = msg.partition(),
                offset = msg.offset(),
                "handled"
            );
        })
        .commit_policy(CommitPolicy::Interval(Duration::from_secs(5)))
        .thread_lifetime(None) // a service runs until it is told to stop
        .build()?;

    // Installs the SIGTERM/SIGINT handlers, then starts the manager, then blocks.
    let outcome = manager.run_until_shutdown_signal()?;
    match &outcome {
        ShutdownOutcome::Stopped { signal, report } => tracing::info!(
            %signal,
            handled = report.counts.messages_handled,
            committed = ?report.committed,
            "stopped gracefully"
        ),
        ShutdownOutcome::Ended { report } => tracing::warn!(
            reason = ?report.reason,
            state = %report.final_state,
            "the consumer ended by itself"
        ),
        ShutdownOutcome::Interrupted { first, second } => tracing::warn!(
            %first,
            %second,
            "stop interrupted: exiting without waiting for the in-flight message"
        ),
        // The enum is non-exhaustive: a later version may add outcomes.
        other => tracing::warn!(?other, "shutdown"),
    }
    Ok(outcome)
}
