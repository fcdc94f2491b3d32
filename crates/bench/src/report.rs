//! The report: `docs/BENCHMARKS.md` (tables, bars, machine, command) from one run.

use std::fmt::Write as _;
use std::process::Command;

use crate::consumers::{Kind, SLOW_CALLBACK};
use crate::meter::Throughput;
use crate::python::PythonOutcome;

/// One worker-pool run: a backend, a worker count, what it reached.
pub(crate) struct PoolRow {
    pub(crate) backend: Kind,
    pub(crate) workers: usize,
    pub(crate) throughput: Throughput,
}

fn backend_name(kind: Kind) -> &'static str {
    match kind {
        Kind::PoolRdkafka => "ThreadManager + ktm-rdkafka",
        _ => "ThreadManager + ktm-rskafka",
    }
}

/// Everything one run measured, and how it was set up.
pub(crate) struct Results {
    pub(crate) command: String,
    pub(crate) broker: String,
    pub(crate) messages: u64,
    pub(crate) size: usize,
    pub(crate) partitions: i32,
    pub(crate) raw_rskafka: Throughput,
    pub(crate) manager_rskafka: Throughput,
    pub(crate) raw_rdkafka: Throughput,
    pub(crate) manager_rdkafka: Throughput,
    /// The rdkafka manager with record headers read (its default): a reference row.
    pub(crate) manager_rdkafka_headers: Throughput,
    pub(crate) stops_rskafka: Vec<f64>,
    pub(crate) stops_rdkafka: Vec<f64>,
    /// Closing a raw `BaseConsumer` the same way: a reference, not a bar.
    pub(crate) close_raw_rdkafka: Vec<f64>,
    pub(crate) python: PythonOutcome,
    /// The original given the Rust consumers' fetch settings (a patched copy).
    pub(crate) python_same_fetch: PythonOutcome,
    pub(crate) pool_messages: u64,
    pub(crate) pool_partitions: i32,
    pub(crate) pool_rows: Vec<PoolRow>,
    pub(crate) notes: Vec<String>,
}

/// One bar of the issue and whether this run passes it.
pub(crate) struct Bar {
    pub(crate) name: String,
    pub(crate) measured: String,
    /// `None`: could not be checked (the original was not measured).
    pub(crate) pass: Option<bool>,
}

impl Bar {
    pub(crate) fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "not checked",
        }
    }
}

/// The nearest-rank percentile `p` (0..=100) of `v`.
pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Results {
    /// The bars of the issue, checked against this run.
    pub(crate) fn bars(&self) -> Vec<Bar> {
        let mut bars = Vec::new();
        for (name, m, raw, raw_name) in [
            (
                "ThreadManager + ktm-rskafka",
                &self.manager_rskafka,
                &self.raw_rskafka,
                "raw rskafka fetch loop",
            ),
            (
                "ThreadManager + ktm-rdkafka",
                &self.manager_rdkafka,
                &self.raw_rdkafka,
                "raw rdkafka BaseConsumer loop",
            ),
        ] {
            let ratio = m.per_second() / raw.per_second();
            bars.push(Bar {
                name: format!("{name} >= 0.9 x {raw_name}"),
                measured: format!("{ratio:.2} x"),
                pass: Some(ratio >= 0.9),
            });
        }
        for (name, m) in [
            ("ThreadManager + ktm-rskafka", &self.manager_rskafka),
            ("ThreadManager + ktm-rdkafka", &self.manager_rdkafka),
        ] {
            bars.push(match &self.python {
                Ok(py) if py.steady_per_s > 0.0 => {
                    let ratio = m.per_second() / py.steady_per_s;
                    Bar {
                        name: format!("{name} >= 5 x the Python original's messages/s"),
                        measured: format!("{ratio:.1} x"),
                        pass: Some(ratio >= 5.0),
                    }
                }
                Ok(_) => Bar {
                    name: format!("{name} >= 5 x the Python original's messages/s"),
                    measured: "the original reported 0 messages/s".to_owned(),
                    pass: None,
                },
                Err(why) => Bar {
                    name: format!("{name} >= 5 x the Python original's messages/s"),
                    measured: format!("original not measured: {why}"),
                    pass: None,
                },
            });
        }
        for (name, stops) in [
            ("ThreadManager + ktm-rskafka", &self.stops_rskafka),
            ("ThreadManager + ktm-rdkafka", &self.stops_rdkafka),
        ] {
            let p99 = percentile(stops, 99.0);
            let bar_name = format!("{name} p99 stop() <= 1/20 of the original's p99");
            bars.push(match &self.python {
                Ok(py) if !py.stops_ms.is_empty() => {
                    let limit = percentile(&py.stops_ms, 99.0) / 20.0;
                    Bar {
                        name: bar_name,
                        measured: format!("{p99:.1} ms vs limit {limit:.1} ms"),
                        pass: Some(p99 <= limit),
                    }
                }
                Ok(_) => Bar {
                    name: bar_name,
                    measured: "the original reported no stop runs".to_owned(),
                    pass: None,
                },
                Err(why) => Bar {
                    name: bar_name,
                    measured: format!("original not measured: {why}"),
                    pass: None,
                },
            });
        }
        for kind in [Kind::PoolRskafka, Kind::PoolRdkafka] {
            let of = |w: usize| {
                self.pool_rows
                    .iter()
                    .find(|r| r.backend == kind && r.workers == w)
                    .map(|r| r.throughput.per_second())
            };
            if let (Some(one), Some(eight)) = (of(1), of(8)) {
                let ratio = eight / one;
                bars.push(Bar {
                    name: format!(
                        "{} with a 1 ms callback: 8 workers over 8 partitions >= 6 x 1 worker",
                        backend_name(kind)
                    ),
                    measured: format!("{ratio:.2} x"),
                    pass: Some(ratio >= 6.0),
                });
            }
        }
        bars
    }

    /// The worker-pool rows for their chart: (consumer and workers, messages/s).
    pub(crate) fn pool_chart_rows(&self) -> Vec<(String, f64)> {
        self.pool_rows
            .iter()
            .map(|r| {
                let backend = backend_name(r.backend).trim_start_matches("ThreadManager + ");
                let noun = if r.workers == 1 { "worker" } else { "workers" };
                (
                    format!("{backend}, {} {noun}", r.workers),
                    r.throughput.per_second(),
                )
            })
            .collect()
    }

    /// The worker-pool table: messages/s per worker count, and the speed-up over one.
    fn pool_table(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "{} messages of {} B over {} partitions (produced one record per batch: the pool \
             pauses and resumes partitions, and Tansu 0.6 answers a fetch that starts inside \
             a batch wrongly); the callback sleeps {} ms per message; `WorkerPool::new(n)` \
             with the default queue (256 messages per worker) and partition order; a consumer \
             group per run.\n",
            self.pool_messages,
            self.size,
            self.pool_partitions,
            SLOW_CALLBACK.as_millis()
        );
        let _ = writeln!(
            s,
            "| consumer | workers | steady-state messages/s | vs 1 worker | peak RSS (MiB) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for row in &self.pool_rows {
            let one = self
                .pool_rows
                .iter()
                .find(|r| r.backend == row.backend && r.workers == 1)
                .map_or(f64::NAN, |r| r.throughput.per_second());
            let t = &row.throughput;
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.2} | {:.1} |",
                backend_name(row.backend),
                row.workers,
                t.per_second(),
                t.per_second() / one,
                mib(t.peak_rss_kib)
            );
        }
    }

    /// The throughput rows: (consumer, messages/s) for the chart.
    pub(crate) fn chart_rows(&self) -> Vec<(String, f64)> {
        let mut rows = vec![
            (
                "raw rskafka fetch loop".to_owned(),
                self.raw_rskafka.per_second(),
            ),
            (
                "ThreadManager + ktm-rskafka".to_owned(),
                self.manager_rskafka.per_second(),
            ),
            (
                "raw rdkafka BaseConsumer loop".to_owned(),
                self.raw_rdkafka.per_second(),
            ),
            (
                "ThreadManager + ktm-rdkafka".to_owned(),
                self.manager_rdkafka.per_second(),
            ),
            (
                "ThreadManager + ktm-rdkafka, headers read".to_owned(),
                self.manager_rdkafka_headers.per_second(),
            ),
        ];
        if let Ok(py) = &self.python {
            rows.push((
                "Python original (confluent-kafka)".to_owned(),
                py.steady_per_s,
            ));
        }
        if let Ok(py) = &self.python_same_fetch {
            rows.push((
                "Python original, same fetch settings".to_owned(),
                py.steady_per_s,
            ));
        }
        rows
    }

    /// `docs/BENCHMARKS.md`.
    pub(crate) fn markdown(&self, svg_name: &str, pool_svg_name: &str) -> String {
        let mut s = String::new();
        let now = utc_now();
        let _ = writeln!(s, "# Benchmarks\n");
        let _ = writeln!(
            s,
            "Generated by `ktm-bench` (crates/bench) on {now}; re-run the command below to \
             regenerate this file, `{svg_name}` and `{pool_svg_name}`. Numbers from one run on one machine: \
             compare rows of the same run, not across machines.\n"
        );
        let _ = writeln!(s, "## Command\n\n```sh");
        let _ = writeln!(s, "pip install confluent-kafka   # for the Python original");
        let _ = writeln!(s, "{}\n```\n", self.command);
        let _ = writeln!(s, "## Setup\n");
        let _ = writeln!(
            s,
            "- Backlog: {} messages of {} B over {} partitions, produced with rskafka in \
             batches of 10,000 records from offset 0.",
            self.messages, self.size, self.partitions
        );
        let _ = writeln!(s, "- Broker: {}.", self.broker);
        for line in machine() {
            let _ = writeln!(s, "- {line}");
        }
        let _ = writeln!(s, "\n## Throughput and peak memory\n");
        let _ = writeln!(
            s,
            "| consumer | messages | seconds (first to last) | steady-state messages/s | \
             vs its raw loop | peak RSS (MiB) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for (name, t, raw) in [
            (
                "raw rskafka fetch loop",
                &self.raw_rskafka,
                &self.raw_rskafka,
            ),
            (
                "ThreadManager + ktm-rskafka",
                &self.manager_rskafka,
                &self.raw_rskafka,
            ),
            (
                "raw rdkafka BaseConsumer loop",
                &self.raw_rdkafka,
                &self.raw_rdkafka,
            ),
            (
                "ThreadManager + ktm-rdkafka",
                &self.manager_rdkafka,
                &self.raw_rdkafka,
            ),
            (
                "reference: ThreadManager + ktm-rdkafka, headers read (its default)",
                &self.manager_rdkafka_headers,
                &self.raw_rdkafka,
            ),
        ] {
            let _ = writeln!(
                s,
                "| {name} | {} | {:.2} | {:.0} | {:.2} | {:.1} |",
                t.messages,
                t.seconds,
                t.per_second(),
                t.per_second() / raw.per_second(),
                mib(t.peak_rss_kib)
            );
        }
        match &self.python {
            Ok(py) => {
                let _ = writeln!(
                    s,
                    "| Python original (confluent-kafka) | {} | {} | {:.0} | - | {:.1} |",
                    py.messages,
                    if py.steady_per_s > 0.0 {
                        format!("{:.2}", py.messages as f64 / py.steady_per_s)
                    } else {
                        "-".to_owned()
                    },
                    py.steady_per_s,
                    mib(py.peak_rss_kib)
                );
            }
            Err(why) => {
                let _ = writeln!(s, "| Python original (confluent-kafka) | {why} | | | | |");
            }
        }
        if let Ok(py) = &self.python_same_fetch {
            let _ = writeln!(
                s,
                "| context: the original with the same fetch settings (patched copy) | {} | {:.2} | {:.0} | - | {:.1} |",
                py.messages,
                py.messages as f64 / py.steady_per_s.max(f64::MIN_POSITIVE),
                py.steady_per_s,
                mib(py.peak_rss_kib)
            );
        }
        let _ = writeln!(s, "\n![steady-state messages/s]({svg_name})\n");
        let _ = writeln!(s, "## `stop()` latency\n");
        let _ = writeln!(s, "| consumer | runs | p50 (ms) | p99 (ms) | max (ms) |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        let stop_row = |s: &mut String, name: &str, v: &[f64]| {
            let max = v.iter().copied().fold(f64::NAN, f64::max);
            let _ = writeln!(
                s,
                "| {name} | {} | {:.2} | {:.2} | {max:.2} |",
                v.len(),
                percentile(v, 50.0),
                percentile(v, 99.0)
            );
        };
        stop_row(&mut s, "ThreadManager + ktm-rskafka", &self.stops_rskafka);
        stop_row(&mut s, "ThreadManager + ktm-rdkafka", &self.stops_rdkafka);
        stop_row(
            &mut s,
            "reference: closing a raw rdkafka BaseConsumer (drop)",
            &self.close_raw_rdkafka,
        );
        match &self.python {
            Ok(py) => stop_row(&mut s, "Python original (confluent-kafka)", &py.stops_ms),
            Err(why) => {
                let _ = writeln!(s, "| Python original (confluent-kafka) | {why} | | | |");
            }
        }
        let _ = writeln!(
            s,
            "\n## Callback sleeping 1 ms, with 1, 2, 4 and 8 workers\n"
        );
        self.pool_table(&mut s);
        let _ = writeln!(s, "\n![messages/s by worker count]({pool_svg_name})");
        let _ = writeln!(s, "\n## Bars\n");
        let _ = writeln!(s, "| bar | this run | pass |\n|---|---|---|");
        for b in self.bars() {
            let _ = writeln!(s, "| {} | {} | {} |", b.name, b.measured, b.verdict());
        }
        let _ = writeln!(s, "\n## How it is measured\n");
        for line in [
            "Each Rust consumer runs in a child process of the bench (`ktm-bench --child KIND`), \
             so its peak RSS (VmHWM from `/proc/self/status`, read at the end) is its own. \
             The Python original's peak RSS is VmHWM of its process, polled every 100 ms; it \
             covers its whole run, the stop runs included.",
            "Each consumer reads the whole backlog from offset 0 in a consumer group of its \
             own (the raw rskafka loop has no group: one fetch task per partition). \
             Steady state = messages / time from the first message to the last, taken where \
             the message reaches the code (the callback, or the loop body), so group joins \
             are left out. The Python original reports the same quantity itself.",
            "Every Rust consumer fetches with fetch.max.wait.ms 5: Tansu 0.6 holds every \
             fetch for fetch.max.wait.ms even when records are available (with 50 ms the \
             rskafka loop reached about 480k messages/s on this machine, with 5 ms 1.3M-2M; \
             librdkafka's default 500 ms held the rdkafka loop at about 190k). The rskafka \
             loop and manager fetch max.partition.fetch.bytes 1 MiB (the manager's prefetch \
             budget, queued_max_bytes, is 4 MiB for all partitions, the bound of librdkafka's \
             queue below); the rdkafka loop and manager also set \
             fetch.queue.backoff.ms 5 (librdkafka's default 1 s pauses a partition's fetching \
             whenever its local queue is full, which held the rdkafka manager at about 0.2M \
             messages/s), and bound librdkafka's prefetch queue to 4 MiB / 10,000 messages \
             (queued.max.messages.kbytes, queued.min.messages; with the 64 MiB default the \
             same raw loop swung between 0.68M and 1.68M messages/s over 15 runs on this \
             machine; with 4 MiB it held at 1.05M-1.19M over 9 runs, with half the peak RSS), and librdkafka's defaults otherwise. The Python original runs as \
             shipped: confluent-kafka with librdkafka's defaults. Group consumers use \
             session.timeout.ms 6000, heartbeat 1000 ms (Tansu 0.6 can take half the \
             session timeout to complete a join). Managers commit every 5 s (the original \
             auto-commits every 5 s).",
            "The ThreadManager + ktm-rdkafka row reads no record headers \
             (`RdkafkaSourceBuilder::read_headers(false)`), like the raw loop, which reads \
             only each record's payload; the reference row below it runs the rdkafka \
             backend's defaults, headers read. librdkafka parses a record's header block on \
             every read, with a heap-allocated reader, even when the block is empty (as \
             here); with the manager as the only user of the consumer thread's time, that \
             parse is the difference between the two rows. The rskafka backend always \
             reads headers (rskafka decodes them with the record).",
            "`stop()` latency of a manager: a manager subscribed to an empty topic of the same \
             partition count (offset reset latest), in a new group each run, is started; once \
             `stats().assignment` is non-empty it idles 0.5 s, then `stop()` is timed (the \
             in-flight poll ends, positions are committed, the source closed, the thread \
             joined). The original (`--stops N`) does the same with its own class on the \
             backlog topic at latest: its `stop()` joins a thread blocked in \
             `poll(timeout=1)`, then closes the consumer. p50/p99 are nearest-rank: with \
             20 runs, p99 is the slowest run.",
            "The reference row times dropping (closing: leave group, destroy) a raw \
             rdkafka `BaseConsumer` set up the same way (subscribed to the empty topic, \
             polled until assigned, then 0.5 s idle). Its 100 ms are rust-rdkafka's drop \
             waiting out a 100 ms poll after librdkafka has closed (librdkafka serves its \
             terminate op as a mere wake-up); the rdkafka backend's close waits for the \
             close inside the closing revoke callback instead, so its `stop()` returns once \
             the member has left the group, without that poll.",
        ] {
            let _ = writeln!(s, "- {line}");
        }
        if let Ok(py) = &self.python_same_fetch {
            let _ = writeln!(
                s,
                "- Context for the 5 x bars, which compare with the original as shipped: a \
                 copy of the original given the Rust consumers' fetch settings \
                 (fetch.wait.max.ms 5, fetch.queue.backoff.ms 5, the same prefetch queue bound) reached {:.0} messages/s; \
                 against it the rskafka manager is {:.1} x and the rdkafka manager {:.1} x.",
                py.steady_per_s,
                self.manager_rskafka.per_second() / py.steady_per_s,
                self.manager_rdkafka.per_second() / py.steady_per_s
            );
        }
        if let Ok(py) = &self.python {
            let raw = self.raw_rdkafka.per_second();
            if raw > 0.0 {
                let _ = writeln!(
                    s,
                    "- The Python original (confluent-kafka, librdkafka underneath) reached \
                     {:.2} x the raw rdkafka BaseConsumer loop's messages/s in this run.",
                    py.steady_per_s / raw
                );
            }
            if let Some(first) = py.first_message_s {
                let _ = writeln!(
                    s,
                    "- The original's first message arrived {first:.1} s after it started \
                     (its group join, default session.timeout.ms 45000); its steady state \
                     starts there."
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC` (civil-from-days).
pub(crate) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// CPU model, cores, memory, OS and rustc of this machine.
pub(crate) fn machine() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or_else(|| "unknown".to_owned(), |v| v.trim_matches('"').to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    vec![
        format!("CPU: {model}, {cores} cores available to the bench (shared with other work)"),
        format!("Memory: {:.1} GiB", mem_kib as f64 / (1024.0 * 1024.0)),
        format!("OS: {os}, Linux {}", kernel.trim()),
        format!("Rust: {rustc}, release profile"),
    ]
}
