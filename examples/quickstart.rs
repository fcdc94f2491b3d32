//! Runs the manager with no broker, on the in-memory backend: fills a topic, consumes it
//! with a lifetime, shows progress (a bar with handled messages, commits and lag), and
//! prints the final report.
//!
//! `cargo run --example quickstart`

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use kafka_thread_manager::mock::MockCluster;
use kafka_thread_manager::{CommitPolicy, State, ThreadManager};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const MESSAGES: u64 = 30_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let cluster = MockCluster::new();
    cluster.create_topic(TOPIC, PARTITIONS)?;
    cluster.fill(TOPIC, MESSAGES, 100)?;
    println!("filled {TOPIC:?}: {MESSAGES} messages over {PARTITIONS} partitions");

    let source = cluster.consumer("quickstart").subscribe([TOPIC]).build()?;
    let manager = ThreadManager::builder(source)
        .thread_name("quickstart-consumer")
        .callback(move |msg| {
            // Pretend each message takes a little work, so progress is visible.
            if msg.offset() % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .commit_policy(CommitPolicy::EveryN(1000))
        .thread_lifetime(Duration::from_secs(10))
        .build()?;

    manager.start()?;
    // A progress bar on a terminal (indicatif hides it when stderr is not one).
    let bar = ProgressBar::new(MESSAGES).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} handled ({per_sec}) {msg}",
        )?
        .progress_chars("=> "),
    );
    while manager.state() == State::Running {
        let stats = manager.stats();
        bar.set_position(stats.counts.messages_handled);
        let lag: i64 = stats.partitions.iter().filter_map(|p| p.lag).sum();
        bar.set_message(format!("commits {}  lag {lag}", stats.counts.commits));
        if stats.counts.messages_handled >= MESSAGES {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish();
    let report = manager.stop()?;
    println!("\nfinal report:");
    println!("  state:            {}", report.final_state);
    println!("  reason:           {:?}", report.reason);
    println!("  messages handled: {}", report.counts.messages_handled);
    println!("  callback errors:  {}", report.counts.callback_failures);
    println!("  run time:         {:?}", report.run_time);
    for (tp, position) in report.committed.iter() {
        println!("  committed {tp}: {position}");
    }
    Ok(())
}
