//! Throughput of the manager against a hand-written poll loop over the same mock source,
//! and `stop()` latency on an idle manager. Prints a table; the bars are ratios and
//! percentiles from this one run, never wall-clock assertions.
//!
//! `cargo bench -p ktm-core --bench manager_vs_loop` (env: KTM_BENCH_MESSAGES,
//! KTM_BENCH_ROUNDS, KTM_BENCH_STOPS)
//!
//! `KTM_BENCH_ONLY=manager|loop|setup` runs one side once (or only the setup: the
//! cluster and its filled topic) and prints no table, so that an instruction counter sees
//! nothing else: `scripts/callgrind-per-message.sh` runs it under callgrind.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ktm_core::{Message, MessageSource, PollBatch, ThreadManager};
use ktm_mock::MockCluster;

const TOPIC: &str = "bench";
const PARTITIONS: i32 = 3;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The no-op callback both sides call: counts, and says when the n-th message passed.
fn counting_callback(
    n: u64,
) -> (
    impl FnMut(&Message) -> Result<(), std::convert::Infallible> + Send + 'static,
    mpsc::Receiver<Instant>,
) {
    let (done_tx, done_rx) = mpsc::channel();
    let seen = Arc::new(AtomicU64::new(0));
    let callback = move |m: &Message| {
        black_box(m);
        if seen.fetch_add(1, Ordering::Relaxed) + 1 == n {
            let _ = done_tx.send(Instant::now());
        }
        Ok(())
    };
    (callback, done_rx)
}

/// The baseline: what a user would write by hand around the same source and callback,
/// on its own thread like the manager's (so both start with cold thread-local state).
fn hand_written_loop(cluster: &MockCluster, group: &str, n: u64) -> Duration {
    let source = cluster
        .consumer(group)
        .subscribe([TOPIC])
        .build()
        .expect("consumer");
    std::thread::spawn(move || run_loop(source, n))
        .join()
        .expect("loop thread")
}

fn run_loop(mut source: ktm_mock::MockSource, n: u64) -> Duration {
    let (mut callback, done) = counting_callback(n);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    rt.block_on(async {
        let mut batch = PollBatch::new();
        while done.try_recv().is_err() {
            batch.clear();
            source
                .poll(Duration::from_secs(1), &mut batch)
                .await
                .expect("poll");
            for m in batch.messages() {
                let _ = callback(m);
            }
        }
    });
    start.elapsed()
}

fn manager_run(cluster: &MockCluster, group: &str, n: u64) -> Duration {
    let source = cluster
        .consumer(group)
        .subscribe([TOPIC])
        .build()
        .expect("consumer");
    let (callback, done_rx) = counting_callback(n);
    let manager = ThreadManager::builder(source)
        .callback(callback)
        .thread_lifetime(None)
        .build()
        .expect("manager");
    let start = Instant::now();
    manager.start().expect("start");
    let end = done_rx.recv().expect("all handled");
    manager.stop().expect("stop");
    end - start
}

fn stop_latencies(cluster: &MockCluster, samples: u64) -> Vec<Duration> {
    (0..samples)
        .map(|i| {
            let source = cluster
                .consumer(format!("stop-{i}"))
                .subscribe(["idle"])
                .build()
                .expect("consumer");
            let manager = ThreadManager::builder(source)
                .callback(|_: &Message| -> Result<(), std::convert::Infallible> { Ok(()) })
                .poll_timeout(Duration::from_secs(1)) // the original's poll(timeout=1)
                .thread_lifetime(None)
                .build()
                .expect("manager");
            manager.start().expect("start");
            while manager.stats().assignment.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(5)); // idle, parked in poll
            let t = Instant::now();
            manager.stop().expect("stop");
            t.elapsed()
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(Duration::MAX)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = env("KTM_BENCH_MESSAGES", if quick { 20_000 } else { 1_000_000 });
    let rounds = env("KTM_BENCH_ROUNDS", if quick { 1 } else { 5 });
    let stops = env("KTM_BENCH_STOPS", if quick { 5 } else { 200 });

    let only = std::env::var("KTM_BENCH_ONLY").unwrap_or_default();

    let cluster = MockCluster::new();
    cluster.create_topic(TOPIC, PARTITIONS).expect("topic");
    cluster.create_topic("idle", 1).expect("topic");
    cluster.fill(TOPIC, n, 100).expect("fill");

    // One side, once, and nothing after it (no stop() samples, whose idle polls and
    // sleeps vary from run to run): what an instruction count of this process then grows
    // by with n is that side's work per message. `setup` runs neither side, so that the
    // fill's own growth with n can be subtracted.
    if !only.is_empty() {
        let took = match only.as_str() {
            "manager" => manager_run(&cluster, "mgr-only", n),
            "loop" => hand_written_loop(&cluster, "loop-only", n),
            "setup" => Duration::ZERO,
            other => panic!("KTM_BENCH_ONLY={other}: expected manager, loop or setup"),
        };
        println!("{only}: {n} messages in {:.3} s", took.as_secs_f64());
        return;
    }

    let (mut loops, mut managed) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // Alternate, so drift (thermal, other load) hits both alike.
        loops.push(hand_written_loop(&cluster, &format!("loop-{r}"), n));
        managed.push(manager_run(&cluster, &format!("mgr-{r}"), n));
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    if std::env::var_os("KTM_BENCH_VERBOSE").is_some() {
        let show = |v: &[Duration]| {
            v.iter()
                .map(|d| format!("{:.2}M", rate(*d) / 1e6))
                .collect::<Vec<_>>()
        };
        eprintln!(
            "loop rounds: {:?}\nmanager rounds: {:?}",
            show(&loops),
            show(&managed)
        );
    }
    let (loop_rate, mgr_rate) = (rate(median(loops)), rate(median(managed)));
    let ratio = mgr_rate / loop_rate;

    let mut lat = stop_latencies(&cluster, stops);
    lat.sort_unstable();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

    println!("\nmanager vs hand-written loop, mock source, no-op callback");
    println!("{n} messages x {rounds} rounds (median), {stops} stop() samples, poll timeout 1 s\n");
    println!("| measure                         | value        | bar        | ok  |");
    println!("|---------------------------------|--------------|------------|-----|");
    println!("| hand-written loop (msgs/s)      | {loop_rate:>12.0} |            |     |");
    println!("| manager (msgs/s)                | {mgr_rate:>12.0} |            |     |");
    println!(
        "| manager / loop                  | {ratio:>12.3} | >= 0.90    | {} |",
        ok(ratio >= 0.9)
    );
    println!(
        "| stop() p50                      | {:>9.3} ms |            |     |",
        ms(p50)
    );
    println!(
        "| stop() p99                      | {:>9.3} ms | < 10 ms    | {} |",
        ms(p99),
        ok(p99 < Duration::from_millis(10))
    );
    println!(
        "| stop() p99 / original's 1 s poll| {:>12.4} |            |     |",
        p99.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ok(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO "
    }
}
