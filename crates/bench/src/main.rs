//! `ktm-bench`: the published side-by-side benchmark (issue 7).
//!
//! In one invocation, against one broker (Tansu, started here, unless `--brokers` is
//! given): produces a backlog, measures steady-state messages/s and peak RSS of a raw
//! rskafka fetch loop, a raw rdkafka `BaseConsumer` loop, the `ThreadManager` on each
//! backend and the Python original, then `stop()` latency of each manager and of the
//! original, then the manager on a worker pool of 1, 2, 4 and 8 workers with a callback
//! sleeping 1 ms (8 partitions), and writes `docs/BENCHMARKS.md` and `docs/benchmarks.svg`.
//!
//! ```sh
//! pip install confluent-kafka   # for the Python original
//! cargo run --release -p ktm-bench -- --messages 1000000 --size 100 --partitions 3
//! ```
//!
//! `--rebalance` runs only the rebalance measurement instead (`rebalance.rs`): how long
//! each partition of a 3-member group stops being consumed when a 4th member joins,
//! eager against cooperative, on both backends; it rewrites only its own section of
//! `--out`, and the default run keeps that section. `--rebalance --mock-cluster` runs it
//! against librdkafka's in-process mock cluster instead of Tansu (its own section).
//!
//! `--fetch-path` runs only issue 16's measurement instead (`fetch_path.rs`): for 3, 64
//! and 512 partitions (`--scan-partitions`), the raw rskafka loop and both managers'
//! messages/s, peak RSS and TCP connections to the broker; for the codecs none, lz4 and
//! zstd (`--codecs`), both managers' messages/s and CPU seconds per million messages.
//! It rewrites only its own section of `--out` (`--mock-cluster`: on librdkafka's mock
//! cluster, a section of its own), and the default run keeps it.

#![forbid(unsafe_code)]
mod broker;
mod consumers;
mod fetch_cap;
mod fetch_path;
mod fetch_path_report;
mod fetch_path_rows;
mod meter;
mod options;
mod probe;
mod produce;
mod produce_codec;
mod python;
mod rebalance;
mod rebalance_report;
mod rebalance_settings;
mod report;
mod sections;
mod svg;

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use broker::Broker;
use consumers::{parse_result, parse_stops, spawn_child, ChildArgs, Kind};
use options::Options;
use produce::{TopicSpec, BATCH};
use report::{PoolRow, Results};

/// The error type of the bench: any error, reported from `main`.
pub(crate) type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Partitions of the worker-pool topic: 8 workers over 8 partitions.
const POOL_PARTITIONS: i32 = 8;
/// The worker counts measured with the slow callback.
const POOL_WORKERS: [usize; 4] = [1, 2, 4, 8];

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = Options::parse(&args)?;
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_thread_names(true)
            .init();
    }
    if o.rebalance {
        let command = format!("cargo run --release -p ktm-bench -- {}", args.join(" "));
        return rebalance::run(
            &o.rebalance_settings,
            o.brokers.as_deref(),
            &o.out,
            &command,
        );
    }
    if o.fetch_path {
        let command = format!("cargo run --release -p ktm-bench -- {}", args.join(" "));
        return fetch_path::run(
            &o.fetch_path_settings,
            &fetch_path::Run {
                brokers: o.brokers.as_deref(),
                mock_cluster: o.rebalance_settings.mock_cluster,
                messages: o.messages,
                size: o.size,
                codec_partitions: o.partitions,
                out: &o.out,
                command,
            },
        );
    }
    if let Some(kind) = o.child {
        return consumers::run_child(&ChildArgs {
            kind,
            brokers: o.brokers.clone().ok_or("--child needs --brokers")?,
            topic: o.topic.clone().ok_or("--child needs --topic")?,
            messages: o.messages,
            partitions: o.partitions,
            stops: o.stops,
            workers: o.workers,
            run: o.run,
        });
    }
    let started = Instant::now();
    let broker = match &o.brokers {
        Some(address) => Broker::given(address),
        None => Broker::start_tansu()?,
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let topic = format!("ktm-bench-{nanos}");
    let idle_topic = format!("{topic}-idle");
    let pool_topic = format!("{topic}-pool");
    let topics = [
        TopicSpec {
            name: &topic,
            partitions: o.partitions,
            messages: o.messages,
            batch: BATCH,
        },
        TopicSpec {
            name: &idle_topic,
            partitions: o.partitions,
            messages: 0,
            batch: BATCH,
        },
        TopicSpec {
            name: &pool_topic,
            partitions: POOL_PARTITIONS,
            messages: o.pool_messages,
            // The pool pauses partitions whose worker is full: one record per batch.
            batch: 1,
        },
    ];
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(produce::produce(&broker.address, &topics, o.size))?;

    let child = |kind: Kind, topic: &str| ChildArgs {
        kind,
        brokers: broker.address.clone(),
        topic: topic.to_owned(),
        messages: o.messages,
        partitions: o.partitions,
        stops: o.stops,
        workers: 1,
        run: 0,
    };
    let measure = |kind: Kind| -> BoxResult<consumers::Throughput> {
        let t = parse_result(&spawn_child(&child(kind, &topic))?)?;
        eprintln!(
            "{:>16}: {} messages in {:.2} s = {:.0}/s, peak RSS {:.1} MiB",
            kind.name(),
            t.messages,
            t.seconds,
            t.per_second(),
            t.peak_rss_kib as f64 / 1024.0
        );
        Ok(t)
    };
    let raw_rskafka = measure(Kind::RawRskafka)?;
    let manager_rskafka = measure(Kind::ManagerRskafka)?;
    let raw_rdkafka = measure(Kind::RawRdkafka)?;
    let manager_rdkafka = measure(Kind::ManagerRdkafka)?;
    let manager_rdkafka_headers = measure(Kind::ManagerRdkafkaHeaders)?;
    let stops_rskafka = parse_stops(&spawn_child(&child(Kind::StopRskafka, &idle_topic))?)?;
    let stops_rdkafka = parse_stops(&spawn_child(&child(Kind::StopRdkafka, &idle_topic))?)?;
    let close_raw_rdkafka = parse_stops(&spawn_child(&child(Kind::CloseRawRdkafka, &idle_topic))?)?;
    let mut pool_rows = Vec::new();
    for kind in [Kind::PoolRskafka, Kind::PoolRdkafka] {
        for workers in POOL_WORKERS {
            let args = ChildArgs {
                messages: o.pool_messages,
                partitions: POOL_PARTITIONS,
                workers,
                ..child(kind, &pool_topic)
            };
            let t = parse_result(&spawn_child(&args)?)?;
            eprintln!(
                "{:>16}: {workers} workers: {:.0}/s, peak RSS {:.1} MiB",
                kind.name(),
                t.per_second(),
                t.peak_rss_kib as f64 / 1024.0
            );
            pool_rows.push(PoolRow {
                backend: kind,
                workers,
                throughput: t,
            });
        }
    }
    let python = if o.skip_python {
        Err("skipped (--skip-python)".to_owned())
    } else {
        python::run(
            &o.python,
            &o.script,
            &broker.address,
            &topic,
            o.messages,
            o.stops,
        )
    };
    if let Err(why) = &python {
        eprintln!("python original: not measured: {why}");
    }
    // The same original with the Rust consumers' fetch settings: context, not a bar.
    let python_same_fetch = if o.skip_python || python.is_err() {
        Err("not measured (the original was not)".to_owned())
    } else {
        python::with_settings(&o.script, &consumers::fetch_settings_python()).and_then(|copy| {
            let script = copy.to_string_lossy().into_owned();
            let run = python::run(&o.python, &script, &broker.address, &topic, o.messages, 1);
            let _ = std::fs::remove_file(&copy);
            run
        })
    };
    if let Err(why) = &python_same_fetch {
        eprintln!("python original with the same fetch settings: not measured: {why}");
    }

    let mut notes = Vec::new();
    notes.push(format!(
        "The whole run took {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    let results = Results {
        command: format!("cargo run --release -p ktm-bench -- {}", args.join(" "))
            .trim_end()
            .to_owned(),
        broker: broker.description.clone(),
        messages: o.messages,
        size: o.size,
        partitions: o.partitions,
        raw_rskafka,
        manager_rskafka,
        raw_rdkafka,
        manager_rdkafka,
        manager_rdkafka_headers,
        stops_rskafka,
        stops_rdkafka,
        close_raw_rdkafka,
        python,
        python_same_fetch,
        pool_messages: o.pool_messages,
        pool_partitions: POOL_PARTITIONS,
        pool_rows,
        notes,
    };
    write_outputs(&o.out, &results)?;
    drop(broker);
    Ok(())
}

/// Writes the report and the chart next to it, and prints the report and the bars.
fn write_outputs(out: &Path, results: &Results) -> BoxResult<()> {
    let svg_path = out.with_file_name("benchmarks.svg");
    let svg_name = svg_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("benchmarks.svg")
        .to_owned();
    let pool_svg_path = out.with_file_name("benchmarks-workers.svg");
    let pool_svg_name = pool_svg_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("benchmarks-workers.svg")
        .to_owned();
    let mut md = results.markdown(&svg_name, &pool_svg_name);
    // The `--rebalance` and `--fetch-path` sections are not measured here: keep the
    // ones already written.
    let existing = std::fs::read_to_string(out).unwrap_or_default();
    let kept = [
        rebalance_report::existing_section(&existing),
        fetch_path_report::existing_section(&existing),
    ];
    for section in kept.iter().flatten() {
        md = format!("{}\n\n{}", md.trim_end(), section.trim_end());
        md.push('\n');
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &md)?;
    let title = format!(
        "Steady-state messages/s ({} x {} B, {} partitions)",
        results.messages, results.size, results.partitions
    );
    std::fs::write(&svg_path, svg::chart(&title, &results.chart_rows()))?;
    let pool_title = format!(
        "Messages/s with a 1 ms callback, by worker count ({} partitions)",
        results.pool_partitions
    );
    std::fs::write(
        &pool_svg_path,
        svg::chart(&pool_title, &results.pool_chart_rows()),
    )?;
    println!("{md}");
    for b in results.bars() {
        println!("bar: {}: {} -> {}", b.name, b.measured, b.verdict());
    }
    println!(
        "wrote {}, {} and {}",
        out.display(),
        svg_path.display(),
        pool_svg_path.display()
    );
    Ok(())
}
