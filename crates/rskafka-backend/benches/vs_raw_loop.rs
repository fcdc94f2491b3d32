//! Throughput of the ThreadManager with the rskafka backend against a hand-written
//! rskafka fetch loop over the same partitions, on the broker named by
//! `KAFKA_BOOTSTRAP_SERVERS`. Each measurement runs in its own child process, so each
//! peak RSS (VmHWM) is its own.
//!
//! Env: `KTM_BENCH_MESSAGES` per partition (default 200000), `KTM_BENCH_SIZE` bytes
//! (default 100), `KTM_BENCH_PARTITIONS` (default 3).
//!
//! With `--backlog` it instead measures the manager's peak RSS while it consumes a
//! large backlog (`KTM_BENCH_BACKLOG_LARGE`, default 1000000 messages in all) and a
//! small one (`KTM_BENCH_BACKLOG_SMALL`, default 100000), with the same prefetch
//! settings, to show that memory is bounded by the prefetch and not by the backlog:
//!
//! ```sh
//! cargo bench -p ktm-rskafka --bench vs_raw_loop -- --backlog
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use ktm_core::{CommitPolicy, Message, ThreadManager};
use ktm_rskafka::RskafkaSource;
use rskafka::chrono::DateTime;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

const FETCH_MAX_BYTES: i32 = 1024 * 1024;
const FETCH_WAIT_MS: i32 = 50;
/// The prefetch budget of all partitions (the backend's default, set explicitly).
const QUEUED_MAX_BYTES: i64 = 32 * 1024 * 1024;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn client(bootstrap: &str) -> Client {
    ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await
        .unwrap()
}

/// `total` messages spread over `partitions` (the first ones get the remainder).
fn split(total: usize, partitions: i32) -> Vec<usize> {
    let n = usize::try_from(partitions).unwrap();
    (0..n)
        .map(|i| total / n + usize::from(i < total % n))
        .collect()
}

/// Creates `topic` with one partition per entry of `counts` and writes that many
/// records of `size` bytes to each, `batch` records per produce request.
async fn produce(bootstrap: &str, topic: &str, counts: &[usize], size: usize, batch: usize) {
    let partitions = i32::try_from(counts.len()).unwrap();
    let c = client(bootstrap).await;
    c.controller_client()
        .unwrap()
        .create_topic(topic, partitions, 1, 5_000)
        .await
        .unwrap();
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ts = DateTime::from_timestamp_millis(i64::try_from(ms).unwrap()).unwrap();
    // Producing a million records takes a while: a bar on a terminal (hidden otherwise).
    let bar = ProgressBar::new(counts.iter().sum::<usize>() as u64).with_style(
        ProgressStyle::with_template("producing [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap()
            .progress_chars("=> "),
    );
    for (p, &count) in (0..partitions).zip(counts) {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut left = count;
        while left > 0 {
            let k = left.min(batch);
            let records = (0..k)
                .map(|_| Record {
                    key: None,
                    value: Some(vec![b'x'; size]),
                    headers: BTreeMap::new(),
                    timestamp: ts,
                })
                .collect();
            pc.produce(records, Compression::NoCompression)
                .await
                .unwrap();
            left -= k;
            bar.inc(k as u64);
        }
    }
    bar.finish_and_clear();
}

/// The baseline: one task per partition fetching from 0 until it has every record.
async fn raw(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) -> u64 {
    let c = Arc::new(client(bootstrap).await);
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let c = Arc::clone(&c);
        let topic = topic.to_owned();
        tasks.push(tokio::spawn(async move {
            let pc = c
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            let (mut offset, mut n) = (0_i64, 0_u64);
            while n < per_partition as u64 {
                let (records, _) = pc
                    .fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_WAIT_MS)
                    .await
                    .unwrap();
                for r in &records {
                    if r.offset >= offset {
                        n += 1;
                        offset = r.offset + 1;
                    }
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

fn managed(bootstrap: &str, topic: &str, total: u64) -> u64 {
    let source = RskafkaSource::builder()
        .bootstrap_servers([bootstrap])
        .topics([topic])
        .group_id(format!("bench-{topic}"))
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_secs(1))
        .max_partition_fetch_bytes(FETCH_MAX_BYTES)
        .queued_max_bytes(QUEUED_MAX_BYTES)
        .fetch_max_wait(Duration::from_millis(u64::try_from(FETCH_WAIT_MS).unwrap()))
        .build()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    let m = ThreadManager::builder(source)
        .thread_lifetime(None)
        .commit_policy(CommitPolicy::Interval(Duration::from_secs(5)))
        .callback(move |_: &Message| -> Result<(), std::io::Error> {
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .build()
        .unwrap();
    m.start().unwrap();
    while count.load(Ordering::Relaxed) < total {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = m.stop();
    count.load(Ordering::Relaxed)
}

fn child(
    mode: &str,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    total: u64,
) {
    let start = Instant::now();
    let n = match mode {
        "raw" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(raw(bootstrap, topic, partitions, per_partition)),
        _ => managed(bootstrap, topic, total),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("RESULT {n} {secs} {}", vm_hwm_kib());
}

/// Runs one measurement in a child process: (messages, seconds, peak RSS in KiB).
fn run_child(mode: &str, topic: &str, total: u64) -> (u64, f64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", mode, topic, &total.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{mode} child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let f: Vec<&str> = line.split_whitespace().collect();
    (
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

fn main() {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        eprintln!(
            "vs_raw_loop: skipped: KAFKA_BOOTSTRAP_SERVERS is not set (run scripts/tansu.sh start)"
        );
        return;
    };
    let per_partition = env("KTM_BENCH_MESSAGES", 200_000);
    let size = env("KTM_BENCH_SIZE", 100);
    let partitions = i32::try_from(env("KTM_BENCH_PARTITIONS", 3)).unwrap();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(
            &args[i + 1],
            &bootstrap,
            &args[i + 2],
            partitions,
            per_partition,
            args[i + 3].parse().unwrap(),
        );
        return;
    }
    if args.iter().any(|a| a == "--backlog") {
        backlog(&bootstrap, partitions, size);
        return;
    }
    let topic = topic_name("ktm-bench");
    let total = partitions as u64 * per_partition as u64;
    let counts = vec![per_partition; usize::try_from(partitions).unwrap()];
    produce_timed(&bootstrap, &topic, &counts, size, 5_000);
    let (rn, rs, rm) = run_child("raw", &topic, total);
    let (mn, ms, mm) = run_child("managed", &topic, total);
    let (rr, mr) = (rn as f64 / rs, mn as f64 / ms);
    println!("| consumer | messages | seconds | messages/s | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| raw rskafka fetch loop | {rn} | {rs:.2} | {rr:.0} | {:.1} |",
        rm as f64 / 1024.0
    );
    println!(
        "| ThreadManager + ktm-rskafka | {mn} | {ms:.2} | {mr:.0} | {:.1} |",
        mm as f64 / 1024.0
    );
    println!("ratio managed/raw: {:.2} (target >= 0.9)", mr / rr);
}

fn topic_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

fn produce_timed(bootstrap: &str, topic: &str, counts: &[usize], size: usize, batch: usize) {
    let total: usize = counts.iter().sum();
    eprintln!(
        "producing {total} messages of {size} B over {} partitions to {topic}...",
        counts.len()
    );
    let t = Instant::now();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(produce(bootstrap, topic, counts, size, batch));
    eprintln!("produced in {:?}", t.elapsed());
}

/// `--backlog`: the manager's peak RSS with a large and a small backlog, same settings.
fn backlog(bootstrap: &str, partitions: i32, size: usize) {
    let large = env("KTM_BENCH_BACKLOG_LARGE", 1_000_000);
    let small = env("KTM_BENCH_BACKLOG_SMALL", 100_000);
    let batch = env("KTM_BENCH_BATCH", 10_000);
    let mut rows = Vec::new();
    for total in [small, large] {
        let topic = topic_name(&format!("ktm-backlog-{total}"));
        produce_timed(bootstrap, &topic, &split(total, partitions), size, batch);
        let (n, secs, hwm) = run_child("managed", &topic, total as u64);
        assert_eq!(n, total as u64, "the manager must handle the whole backlog");
        rows.push((total, n, secs, hwm));
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "prefetch bound: queued_max_bytes {:.1} MiB for the {partitions} partitions, plus one \
         response in flight per broker",
        QUEUED_MAX_BYTES as f64 / (1024.0 * 1024.0)
    );
    println!(
        "| backlog (messages of {size} B) | handled | seconds | messages/s | peak RSS (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for (total, n, secs, hwm) in &rows {
        println!(
            "| {total} | {n} | {secs:.2} | {:.0} | {:.1} |",
            *n as f64 / secs,
            mib(*hwm)
        );
    }
    let (small_hwm, large_hwm) = (rows[0].3, rows[1].3);
    println!(
        "peak RSS ratio {large}/{small}: {:.2} (backlog ratio {:.0}; bounded memory: ~1)",
        large_hwm as f64 / small_hwm as f64,
        large as f64 / small as f64
    );
}
