//! The measured consumers. Each runs in a child process of the bench
//! (`ktm-bench --child KIND ...`), so the peak RSS it reports (VmHWM) is its own, and
//! each reads the backlog from offset 0 in a consumer group of its own.
//!
//! Steady state is the message count over the time from the first message to the
//! last, both taken where the message is handed to the code (the callback, or the
//! loop body), so group joins and the start-up are left out.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ktm_core::{
    CommitPolicy, Message as CoreMessage, OffsetReset, ThreadManager, ThreadManagerBuilder,
    WorkerPool,
};
use ktm_rdkafka::RdkafkaSource;
use ktm_rskafka::RskafkaSource;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::ClientBuilder;

pub(crate) use crate::meter::Throughput;
use crate::meter::{vm_hwm_kib, Meter};
use crate::probe;
use crate::BoxResult;

/// `max.partition.fetch.bytes` of the rskafka loop and the rskafka manager.
const FETCH_MAX_BYTES: i32 = 1024 * 1024;
/// `fetch.max.wait.ms` of every Rust consumer here (raw loops and managers alike). Tansu
/// 0.6 holds every fetch this long even when records are there (at 50 ms the rskafka
/// loop read 480k messages/s, at 5 ms 1.3M-2M), so the broker's wait, not the client,
/// would be measured.
const FETCH_WAIT_MS: i32 = 5;
/// librdkafka's `fetch.queue.backoff.ms`, for the rdkafka loop and manager alike: its
/// default (1 s) stops fetching a partition for a second whenever its local queue is
/// full, which stalls any consumer slower than the fetch (the manager, which copies each
/// record into an owned message, reached 0.2M messages/s with it, 1.1M without).
const FETCH_QUEUE_BACKOFF_MS: &str = "5";
/// librdkafka's prefetch queue bound, for the rdkafka loop and manager alike (defaults:
/// 64 MiB and 100,000 messages). With the defaults the same loop swung between 0.68M
/// and 1.68M messages/s from run to run; with 4 MiB it held at 1.05M-1.19M, with half the
/// peak RSS.
/// The rskafka manager's prefetch budget (`queued_max_bytes`) is the same bound, so that
/// both managers may hold as many fetched bytes.
const QUEUED_MAX_KBYTES: i64 = 4096;
const QUEUED_MIN_MESSAGES: &str = "10000";

/// The librdkafka settings above as Python dict entries, for the original's patched copy.
pub(crate) fn fetch_settings_python() -> String {
    format!(
        r#""fetch.wait.max.ms": {FETCH_WAIT_MS}, "fetch.queue.backoff.ms": {FETCH_QUEUE_BACKOFF_MS}, "queued.max.messages.kbytes": {QUEUED_MAX_KBYTES}, "queued.min.messages": {QUEUED_MIN_MESSAGES}"#
    )
}
/// Group session timeout: Tansu 0.6 can take half of it to complete a join.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a stop-latency run may wait for its assignment.
const ASSIGN_DEADLINE: Duration = Duration::from_secs(60);
/// What the slow callback of the worker-pool rows does per message.
pub(crate) const SLOW_CALLBACK: Duration = Duration::from_millis(1);

/// What a child process measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    RawRskafka,
    RawRdkafka,
    ManagerRskafka,
    /// The rdkafka manager not reading record headers, as the raw loop does not: the
    /// like-for-like row of the bar.
    ManagerRdkafka,
    /// The rdkafka manager with its defaults (record headers read): a reference row.
    ManagerRdkafkaHeaders,
    StopRskafka,
    StopRdkafka,
    /// The close of a raw `BaseConsumer`: a reference for the rdkafka manager's stop.
    CloseRawRdkafka,
    /// The manager on a worker pool with a callback sleeping [`SLOW_CALLBACK`].
    PoolRskafka,
    PoolRdkafka,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::RawRskafka => "raw-rskafka",
            Kind::RawRdkafka => "raw-rdkafka",
            Kind::ManagerRskafka => "manager-rskafka",
            Kind::ManagerRdkafka => "manager-rdkafka",
            Kind::ManagerRdkafkaHeaders => "manager-rdkafka-headers",
            Kind::StopRskafka => "stop-rskafka",
            Kind::StopRdkafka => "stop-rdkafka",
            Kind::CloseRawRdkafka => "close-raw-rdkafka",
            Kind::PoolRskafka => "pool-rskafka",
            Kind::PoolRdkafka => "pool-rdkafka",
        }
    }

    pub(crate) fn parse(s: &str) -> BoxResult<Self> {
        [
            Kind::RawRskafka,
            Kind::RawRdkafka,
            Kind::ManagerRskafka,
            Kind::ManagerRdkafka,
            Kind::ManagerRdkafkaHeaders,
            Kind::StopRskafka,
            Kind::StopRdkafka,
            Kind::CloseRawRdkafka,
            Kind::PoolRskafka,
            Kind::PoolRdkafka,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| format!("unknown child kind {s:?}").into())
    }
}

/// What the parent passes to a child.
#[derive(Clone, Debug)]
pub(crate) struct ChildArgs {
    pub(crate) kind: Kind,
    pub(crate) brokers: String,
    pub(crate) topic: String,
    pub(crate) messages: u64,
    pub(crate) partitions: i32,
    pub(crate) stops: usize,
    /// Worker threads, for the pool kinds.
    pub(crate) workers: usize,
    /// Which repetition of the same measurement this is: part of the group id, so that
    /// every run reads the backlog from offset 0.
    pub(crate) run: usize,
}

/// The child's side: measures, then prints one `RESULT` or `STOPS` line on stdout.
pub(crate) fn run_child(a: &ChildArgs) -> BoxResult<()> {
    match a.kind {
        Kind::StopRskafka | Kind::StopRdkafka | Kind::CloseRawRdkafka => {
            let mut ms = Vec::with_capacity(a.stops);
            for i in 0..a.stops {
                let group = format!("{}-{}-{i}", a.topic, a.kind.name());
                let builder = match a.kind {
                    Kind::StopRskafka => {
                        ThreadManager::builder(rskafka_source(a, &group, OffsetReset::Latest)?)
                    }
                    Kind::StopRdkafka => ThreadManager::builder(rdkafka_source(
                        a,
                        &group,
                        OffsetReset::Latest,
                        true,
                    )?),
                    _ => {
                        ms.push(raw_rdkafka_close_ms(a, &group)?);
                        eprintln!("{}: {}/{}: {:.2} ms", a.kind.name(), i + 1, a.stops, ms[i]);
                        continue;
                    }
                };
                let manager = builder
                    .thread_lifetime(None)
                    .callback(|_: &CoreMessage| -> Result<(), std::io::Error> { Ok(()) })
                    .build()?;
                ms.push(stop_latency_ms(&manager)?);
                eprintln!(
                    "{}: stop {}/{}: {:.2} ms",
                    a.kind.name(),
                    i + 1,
                    a.stops,
                    ms[i]
                );
            }
            let list: Vec<String> = ms.iter().map(|m| format!("{m:.3}")).collect();
            println!("STOPS {} {}", vm_hwm_kib(), list.join(" "));
        }
        _ => {
            // Counted from before the consumer connects until after it closed.
            let port = probe::port_of(&a.brokers).ok_or("--brokers has no port")?;
            let sampler = probe::Sampler::start(port)?;
            let measured = throughput(a);
            let sampled = sampler.finish();
            let t = measured.inspect_err(|e| {
                // On stdout too, so that the parent can report why.
                println!("FAILED {}", e.to_string().replace('\n', " "));
            })?;
            println!(
                "RESULT {} {} {} {} {} {}",
                t.messages,
                t.seconds,
                t.peak_rss_kib,
                t.cpu_seconds,
                t.cpu_total_seconds,
                sampled.max(t.connections)
            );
        }
    }
    Ok(())
}

/// Starts the manager, waits for its assignment, lets it idle 0.5 s, times `stop()`.
fn stop_latency_ms(manager: &ThreadManager) -> BoxResult<f64> {
    manager.start()?;
    let deadline = Instant::now() + ASSIGN_DEADLINE;
    while manager.stats().assignment.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("no assignment after {ASSIGN_DEADLINE:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    manager.stop()?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

fn rskafka_source(a: &ChildArgs, group: &str, reset: OffsetReset) -> BoxResult<RskafkaSource> {
    Ok(RskafkaSource::builder()
        .bootstrap_servers([a.brokers.as_str()])
        .topics([a.topic.as_str()])
        .group_id(group)
        .offset_reset(reset)
        .session_timeout(SESSION_TIMEOUT)
        .heartbeat_interval(HEARTBEAT)
        .max_partition_fetch_bytes(FETCH_MAX_BYTES)
        .fetch_max_wait(Duration::from_millis(u64::from(
            FETCH_WAIT_MS.unsigned_abs(),
        )))
        .queued_max_bytes(QUEUED_MAX_KBYTES * 1024)
        .build()?)
}

fn rdkafka_source(
    a: &ChildArgs,
    group: &str,
    reset: OffsetReset,
    headers: bool,
) -> BoxResult<RdkafkaSource> {
    Ok(RdkafkaSource::builder()
        .bootstrap_servers([a.brokers.as_str()])
        .topics([a.topic.as_str()])
        .group_id(group)
        .offset_reset(reset)
        .session_timeout(SESSION_TIMEOUT)
        .heartbeat_interval(HEARTBEAT)
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES.to_string())
        .set("queued.min.messages", QUEUED_MIN_MESSAGES)
        .read_headers(headers)
        .build()?)
}

/// A manager builder over the backlog from offset 0, on rskafka or rdkafka.
fn manager_builder(a: &ChildArgs, group: &str, rskafka: bool) -> BoxResult<ThreadManagerBuilder> {
    Ok(if rskafka {
        ThreadManager::builder(rskafka_source(a, group, OffsetReset::Earliest)?)
    } else {
        // Record headers cost librdkafka a parse per record, even an empty block; the
        // raw loop reads none, and neither does this row (the reference row does).
        let headers = a.kind != Kind::ManagerRdkafka;
        ThreadManager::builder(rdkafka_source(a, group, OffsetReset::Earliest, headers)?)
    })
}

fn throughput(a: &ChildArgs) -> BoxResult<Throughput> {
    let meter = Meter::new(a.messages, probe::port_of(&a.brokers));
    // A group per run: each reads the topic from offset 0.
    let group = format!("{}-{}-{}-{}", a.topic, a.kind.name(), a.workers, a.run);
    match a.kind {
        Kind::RawRskafka => {
            let stop = Arc::new(AtomicBool::new(false));
            let (m, s, args) = (Arc::clone(&meter), Arc::clone(&stop), a.clone());
            let worker = std::thread::spawn(move || -> BoxResult<()> {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(raw_rskafka(&args, &m, &s))
            });
            let result = meter.wait(a.kind.name());
            stop.store(true, Ordering::Relaxed);
            worker.join().map_err(|_| "the rskafka loop panicked")??;
            result
        }
        Kind::RawRdkafka => {
            let stop = Arc::new(AtomicBool::new(false));
            let (m, s, args) = (Arc::clone(&meter), Arc::clone(&stop), a.clone());
            let worker = std::thread::spawn(move || raw_rdkafka(&args, &group, &m, &s));
            let result = meter.wait(a.kind.name());
            stop.store(true, Ordering::Relaxed);
            worker.join().map_err(|_| "the rdkafka loop panicked")??;
            result
        }
        Kind::PoolRskafka | Kind::PoolRdkafka => {
            let m = Arc::clone(&meter);
            let manager = manager_builder(a, &group, a.kind == Kind::PoolRskafka)?
                .thread_lifetime(None)
                .commit_policy(CommitPolicy::Interval(Duration::from_secs(5)))
                .parallel_callback(
                    WorkerPool::new(a.workers),
                    move |msg: &CoreMessage| -> Result<(), std::io::Error> {
                        std::thread::sleep(SLOW_CALLBACK);
                        m.record(msg.payload());
                        Ok(())
                    },
                )
                .build()?;
            manager.start()?;
            let result = meter.wait(&format!("{} x{}", a.kind.name(), a.workers));
            manager.stop()?;
            result
        }
        _ => {
            let m = Arc::clone(&meter);
            // Commits every 5 s, like the original's enable.auto.commit default.
            let manager = manager_builder(a, &group, a.kind == Kind::ManagerRskafka)?
                .thread_lifetime(None)
                .commit_policy(CommitPolicy::Interval(Duration::from_secs(5)))
                .callback(move |msg: &CoreMessage| -> Result<(), std::io::Error> {
                    m.record(msg.payload());
                    Ok(())
                })
                .build()?;
            manager.start()?;
            let result = meter.wait(a.kind.name()).map_err(|e| {
                // Why a manager that kept retrying never got its messages.
                match manager.stats().last_error {
                    Some(last) => format!("{e}; the manager's last error: {last}").into(),
                    None => e,
                }
            });
            manager.stop()?;
            result
        }
    }
}

/// The rskafka baseline: one task per partition fetching from offset 0.
async fn raw_rskafka(a: &ChildArgs, meter: &Meter, stop: &AtomicBool) -> BoxResult<()> {
    let client = Arc::new(ClientBuilder::new(vec![a.brokers.clone()]).build().await?);
    let mut tasks = Vec::new();
    for p in 0..a.partitions {
        let pc = client
            .partition_client(a.topic.clone(), p, UnknownTopicHandling::Retry)
            .await?;
        tasks.push(async move {
            let mut offset = 0_i64;
            while !stop.load(Ordering::Relaxed) && !meter.done() {
                let (records, _) = pc
                    .fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_WAIT_MS)
                    .await?;
                for r in &records {
                    // A fetch returns the whole batch holding `offset`: skip what was read.
                    if r.offset >= offset {
                        meter.record(r.record.value.as_deref());
                        offset = r.offset + 1;
                    }
                }
            }
            Ok::<(), rskafka::client::error::Error>(())
        });
    }
    for r in futures_util::future::join_all(tasks).await {
        r?;
    }
    Ok(())
}

/// A `BaseConsumer` in `group`, with the settings of the rdkafka manager.
fn base_consumer(a: &ChildArgs, group: &str, reset: &str) -> BoxResult<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("group.id", group)
        .set("auto.offset.reset", reset)
        .set("enable.auto.commit", "false")
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set("heartbeat.interval.ms", HEARTBEAT.as_millis().to_string())
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES.to_string())
        .set("queued.min.messages", QUEUED_MIN_MESSAGES)
        .create()?)
}

/// A raw `BaseConsumer`, subscribed and polled until it has its assignment, idles
/// (polling) 0.5 s; then the time to close it (dropping it closes it: leaves the group).
fn raw_rdkafka_close_ms(a: &ChildArgs, group: &str) -> BoxResult<f64> {
    let consumer = base_consumer(a, group, "latest")?;
    consumer.subscribe(&[a.topic.as_str()])?;
    let deadline = Instant::now() + ASSIGN_DEADLINE;
    while consumer.assignment()?.count() == 0 {
        if Instant::now() > deadline {
            return Err(format!("no assignment after {ASSIGN_DEADLINE:?}").into());
        }
        let _ = consumer.poll(Duration::from_millis(10));
    }
    let idle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < idle {
        let _ = consumer.poll(Duration::from_millis(10));
    }
    let t = Instant::now();
    drop(consumer);
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// The librdkafka baseline: a `BaseConsumer` in its own group, polled in a loop.
fn raw_rdkafka(a: &ChildArgs, group: &str, meter: &Meter, stop: &AtomicBool) -> BoxResult<()> {
    let consumer = base_consumer(a, group, "earliest")?;
    consumer.subscribe(&[a.topic.as_str()])?;
    while !stop.load(Ordering::Relaxed) && !meter.done() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => meter.record(m.payload()),
            Some(Err(e)) => eprintln!("raw-rdkafka: {e}"),
            None => {}
        }
    }
    Ok(())
}

/// The parent's side: runs one child and parses its line.
pub(crate) fn spawn_child(a: &ChildArgs) -> BoxResult<String> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--child",
            a.kind.name(),
            "--brokers",
            &a.brokers,
            "--topic",
            &a.topic,
        ])
        .args(["--messages", &a.messages.to_string()])
        .args(["--partitions", &a.partitions.to_string()])
        .args(["--stops", &a.stops.to_string()])
        .args(["--workers", &a.workers.to_string()])
        .args(["--run", &a.run.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failure = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FAILED "))
        .map_or_else(String::new, |why| format!(": {why}"));
    stdout
        .lines()
        .find(|l| l.starts_with("RESULT ") || l.starts_with("STOPS "))
        .map(str::to_owned)
        .ok_or_else(|| format!("child {} failed ({}){failure}", a.kind.name(), out.status).into())
}

/// Parses a `RESULT messages seconds hwm_kib cpu_s cpu_total_s connections` line.
pub(crate) fn parse_result(line: &str) -> BoxResult<Throughput> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 7 {
        return Err(format!("bad child line {line:?}").into());
    }
    Ok(Throughput {
        messages: f[1].parse()?,
        seconds: f[2].parse()?,
        peak_rss_kib: f[3].parse()?,
        cpu_seconds: f[4].parse()?,
        cpu_total_seconds: f[5].parse()?,
        connections: f[6].parse()?,
    })
}

/// Parses a `STOPS hwm_kib ms ms ...` line into the stop latencies in ms.
pub(crate) fn parse_stops(line: &str) -> BoxResult<Vec<f64>> {
    line.split_whitespace()
        .skip(2)
        .map(|v| v.parse::<f64>().map_err(Into::into))
        .collect()
}
