//! What a child measures about itself: messages handled and when (the [`Meter`]), its
//! peak RSS, the CPU time it used, and the most TCP connections it held to the broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::probe;
use crate::BoxResult;

/// How long a child may take to read the backlog before it gives up.
const CONSUME_DEADLINE: Duration = Duration::from_secs(900);
/// How long a child may wait for its first message (a Tansu group join takes a few
/// seconds): a consumer that keeps failing to fetch is reported early, not after
/// [`CONSUME_DEADLINE`].
const FIRST_MESSAGE_DEADLINE: Duration = Duration::from_secs(120);

/// A throughput measurement.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Throughput {
    pub(crate) messages: u64,
    /// From the first message to the last.
    pub(crate) seconds: f64,
    pub(crate) peak_rss_kib: u64,
    /// CPU time (user + system, every thread) of the child from the first message to
    /// the last, as the steady state is timed (the decoding of what was prefetched
    /// before the first message is left out: at most the prefetch bound).
    pub(crate) cpu_seconds: f64,
    /// CPU time of the child from its start to the last message (start-up and group
    /// join included).
    pub(crate) cpu_total_seconds: f64,
    /// The most ESTABLISHED TCP connections the child held to the broker's port at
    /// once, sampled every [`probe::SAMPLE_EVERY`] (0: not sampled).
    pub(crate) connections: u32,
}

impl Throughput {
    pub(crate) fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// CPU seconds per million messages.
    pub(crate) fn cpu_per_million(&self) -> f64 {
        if self.messages > 0 {
            self.cpu_seconds * 1e6 / self.messages as f64
        } else {
            f64::NAN
        }
    }
}

/// Counts messages and notes when the first and the last arrived (and the CPU time
/// used by then).
pub(crate) struct Meter {
    total: u64,
    count: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    cpu_at_first: OnceLock<f64>,
    cpu_at_last: OnceLock<f64>,
    /// The broker's port, to count the connections once more when the last message
    /// comes, while the consumer still holds them all (a raw loop closes them as soon
    /// as it is done, and a run shorter than the sampling period would show none).
    broker_port: Option<u16>,
    connections_at_last: OnceLock<u32>,
}

impl Meter {
    pub(crate) fn new(total: u64, broker_port: Option<u16>) -> Arc<Self> {
        Arc::new(Self {
            total,
            count: AtomicU64::new(0),
            first: OnceLock::new(),
            last: OnceLock::new(),
            cpu_at_first: OnceLock::new(),
            cpu_at_last: OnceLock::new(),
            broker_port,
            connections_at_last: OnceLock::new(),
        })
    }

    /// One message handled (its payload is touched so that it is not optimised out).
    #[inline]
    pub(crate) fn record(&self, payload: Option<&[u8]>) {
        std::hint::black_box(payload);
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        // CPU read here, once each, rather than when `wait` notices: up to 50 ms of
        // the consumer idling (or of a raw loop's extra fetches) would be counted.
        if n == 1 {
            let _ = self.cpu_at_first.set(probe::cpu_seconds());
            let _ = self.first.set(Instant::now());
        }
        if n == self.total {
            let _ = self.last.set(Instant::now());
            let _ = self.cpu_at_last.set(probe::cpu_seconds());
            if let Some(port) = self.broker_port {
                let _ = self
                    .connections_at_last
                    .set(probe::broker_connections(port));
            }
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.last.get().is_some()
    }

    /// Waits until every message was seen, drawing a progress bar (on a terminal).
    pub(crate) fn wait(&self, label: &str) -> BoxResult<Throughput> {
        let bar = ProgressBar::new(self.total).with_style(
            ProgressStyle::with_template(&format!(
                "{label:>16} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
            ))?
            .progress_chars("=> "),
        );
        let started = Instant::now();
        let deadline = started + CONSUME_DEADLINE;
        while !self.done() {
            if self.first.get().is_none() && started.elapsed() > FIRST_MESSAGE_DEADLINE {
                return Err(format!(
                    "{label}: no message after {FIRST_MESSAGE_DEADLINE:?} (set RUST_LOG to \
                     see why)"
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{label}: only {} of {} messages after {CONSUME_DEADLINE:?}",
                    self.count.load(Ordering::Relaxed),
                    self.total
                )
                .into());
            }
            bar.set_position(self.count.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(50));
        }
        bar.finish_and_clear();
        let (Some(first), Some(last)) = (self.first.get(), self.last.get()) else {
            return Err("no message was seen".into());
        };
        let cpu = |at: &OnceLock<f64>| at.get().copied().unwrap_or(f64::NAN);
        Ok(Throughput {
            messages: self.count.load(Ordering::Relaxed),
            seconds: last.duration_since(*first).as_secs_f64(),
            peak_rss_kib: vm_hwm_kib(),
            cpu_seconds: cpu(&self.cpu_at_last) - cpu(&self.cpu_at_first),
            cpu_total_seconds: cpu(&self.cpu_at_last),
            connections: self.connections_at_last.get().copied().unwrap_or(0),
        })
    }
}

/// This process's peak resident set size (VmHWM), in KiB.
pub(crate) fn vm_hwm_kib() -> u64 {
    hwm_of("/proc/self/status")
}

/// The VmHWM line of a `/proc/<pid>/status` file, in KiB (0 when absent).
pub(crate) fn hwm_of(status_path: &str) -> u64 {
    std::fs::read_to_string(status_path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
