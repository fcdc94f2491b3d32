//! The `--fetch-path` section of `docs/BENCHMARKS.md`: the partition and codec tables,
//! and issue 16's goals checked against the same run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::consumers::Kind;
use crate::fetch_path_rows::{summary_of, CodecRow, Measured, PartitionRow};
use crate::produce_codec::Codec;
use crate::report::{machine, utc_now, Bar};
use crate::sections;

/// The heading that starts the section (against Tansu or a given broker).
const HEADING: &str = "## Fetch path: partition count and codecs";
/// The same against librdkafka's mock cluster (`--mock-cluster`): a section of its own.
const MOCK_HEADING: &str = "## Fetch path on librdkafka's mock cluster: partition count and codecs";

/// The fetch-path sections of an existing report (Tansu's, then the mock cluster's).
pub(crate) fn existing_section(report: &str) -> Option<String> {
    sections::existing(report, &[HEADING, MOCK_HEADING])
}

/// `report` with its fetch-path section (the mock cluster's when `mock`) replaced by
/// `section` (appended when absent).
pub(crate) fn splice(report: &str, section: &str, mock: bool) -> String {
    sections::splice_at(report, section, if mock { MOCK_HEADING } else { HEADING })
}

/// How the run was set up, for the section's text.
pub(crate) struct Layout<'a> {
    pub(crate) command: &'a str,
    pub(crate) broker: &'a str,
    pub(crate) mock: bool,
    pub(crate) messages: u64,
    pub(crate) size: usize,
    pub(crate) codec_partitions: i32,
    /// 1-minute load averages when the run started and ended.
    pub(crate) load_before: Option<f64>,
    pub(crate) load_after: Option<f64>,
    pub(crate) took: Duration,
    /// Children per consumer and row.
    pub(crate) runs: usize,
    /// `--cap-fetch-version`, if the clients went through the proxy.
    pub(crate) fetch_cap: Option<i16>,
}

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::RawRskafka => "raw rskafka loop (a PartitionClient per partition)",
        Kind::ManagerRdkafka => "ThreadManager + ktm-rdkafka",
        _ => "ThreadManager + ktm-rskafka",
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A goal whose two sides were measured: `pass(ratio)` decides it.
fn goal(name: String, sides: Option<(f64, f64)>, unit: &str, pass: impl Fn(f64) -> bool) -> Bar {
    match sides {
        Some((a, b)) if b > 0.0 => {
            let ratio = a / b;
            Bar {
                name,
                measured: format!("{a:.1} {unit} / {b:.1} {unit} = {ratio:.2} x"),
                pass: Some(pass(ratio)),
            }
        }
        _ => Bar {
            name,
            measured: "a row it needs was not measured".to_owned(),
            pass: None,
        },
    }
}

/// Issue 16's goals, as ratios of this run's rows.
pub(crate) fn goals(rows: &[PartitionRow]) -> Vec<Bar> {
    let manager = |p: i32, kind: Kind| {
        rows.iter()
            .find(|r| r.partitions == p)
            .and_then(|r| summary_of(&r.measured, kind))
    };
    let mut bars = Vec::new();
    let low = rows.iter().map(|r| r.partitions).min();
    let high = rows.iter().map(|r| r.partitions).max();
    if let Some((low, high)) = low.zip(high).filter(|(l, h)| l < h) {
        let (at_low, at_high) = (
            manager(low, Kind::ManagerRskafka),
            manager(high, Kind::ManagerRskafka),
        );
        let both = at_low.zip(at_high);
        bars.push(goal(
            format!("ThreadManager + ktm-rskafka: peak RSS at {high} partitions <= 2 x at {low}"),
            both.map(|(l, h)| (mib(h.peak_rss_kib), mib(l.peak_rss_kib))),
            "MiB",
            |r| r <= 2.0,
        ));
        bars.push(goal(
            format!(
                "ThreadManager + ktm-rskafka: messages/s at {high} partitions >= 0.8 x at {low}"
            ),
            both.map(|(l, h)| (h.per_second / 1e3, l.per_second / 1e3)),
            "k/s",
            |r| r >= 0.8,
        ));
    }
    for r in rows {
        let sides = summary_of(&r.measured, Kind::ManagerRskafka)
            .zip(summary_of(&r.measured, Kind::ManagerRdkafka))
            .map(|(a, b)| (a.per_second / 1e3, b.per_second / 1e3));
        bars.push(goal(
            format!(
                "ThreadManager + ktm-rskafka messages/s >= ThreadManager + ktm-rdkafka at {} \
                 partitions",
                r.partitions
            ),
            sides,
            "k/s",
            |ratio| ratio >= 1.0,
        ));
    }
    bars
}

/// One table row: the first cells, then the summary (or why every child failed).
fn row(s: &mut String, first: &str, m: &Measured, extra: Option<String>) {
    let Some(t) = m.summary() else {
        let why = m.failures.first().map_or("not run", String::as_str);
        let why = why.replace('|', "/").replace('\n', " ");
        let _ = writeln!(
            s,
            "| {first} | {} | failed: {why} | | | | | |",
            label(m.kind)
        );
        return;
    };
    let spread = if m.runs.len() > 1 {
        format!(" ({:.0}-{:.0})", t.slowest, t.fastest)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "| {first} | {} | {:.0}{spread} | {:.2} | {:.1} | {} | {:.2} | {:.2} |{}",
        label(m.kind),
        t.per_second,
        t.seconds,
        mib(t.peak_rss_kib),
        t.connections,
        t.cpu_per_million,
        t.cpu_total_seconds,
        extra.map_or_else(String::new, |e| format!(" {e} |"))
    );
}

/// The section.
pub(crate) fn section(l: &Layout<'_>, rows: &[PartitionRow], codecs: &[CodecRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", if l.mock { MOCK_HEADING } else { HEADING });
    let _ = writeln!(
        s,
        "Generated by `ktm-bench --fetch-path` on {}; it rewrites only this section. Issue \
         16: the rskafka backend's own fetch path (one connection per broker, one prefetch \
         budget for all partitions, its own record decoder) against the partition count and \
         the codec. Numbers from one run on one machine: compare rows of the same run.\n",
        utc_now()
    );
    let _ = writeln!(s, "```sh\n{}\n```\n", l.command);
    let _ = writeln!(
        s,
        "The issue's sizes are the defaults (1,000,000 messages of 100 B per backlog; 3, 64 \
         and 512 partitions; codecs none, lz4 and zstd over 3 partitions; 3 runs each): \
         `cargo run --release -p ktm-bench -- --fetch-path --cap-fetch-version 11` against \
         the Tansu 0.6 the bench starts (why the cap: see the last notes). librdkafka's mock \
         cluster (`--mock-cluster`) keeps only 5 MiB per partition, too little for these \
         backlogs.\n"
    );
    let _ = writeln!(s, "- Broker: {}.", l.broker);
    let _ = writeln!(
        s,
        "- Each backlog: {} messages of {} B. Partition backlogs produced with rskafka as in \
         the main run (payload `x` repeated, uncompressed, up to 10,000 records per batch). \
         Codec backlogs over {} partitions produced with librdkafka's producer \
         (compression.codec as named, linger.ms 100, batch.num.messages 10000, round robin), \
         JSON-like payloads of words from a 32-word vocabulary, so they compress as text.",
        l.messages, l.size, l.codec_partitions
    );
    for line in machine() {
        let _ = writeln!(s, "- {line}");
    }
    let load = |v: Option<f64>| v.map_or_else(|| "unknown".to_owned(), |v| format!("{v:.1}"));
    let _ = writeln!(
        s,
        "- Load average (1 min) {} when the run started, {} when it ended (the machine was \
         shared with other builds); the run took {:.0} s.",
        load(l.load_before),
        load(l.load_after),
        l.took.as_secs_f64()
    );
    if !rows.is_empty() {
        let _ = writeln!(s, "\n### By partition count\n");
        let _ = writeln!(
            s,
            "| partitions | consumer | steady-state messages/s | seconds (first to last) | \
             peak RSS (MiB) | TCP connections to the broker (max) | CPU s per million \
             messages | child CPU s, start to last message |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for r in rows {
            for m in &r.measured {
                row(&mut s, &r.partitions.to_string(), m, None);
            }
        }
        let _ = writeln!(s, "\n### Goals (ratios of this run)\n");
        let _ = writeln!(s, "| goal | this run | met |\n|---|---|---|");
        for b in goals(rows) {
            let _ = writeln!(s, "| {} | {} | {} |", b.name, b.measured, b.verdict());
        }
    }
    if !codecs.is_empty() {
        codec_table(&mut s, codecs);
    }
    notes(&mut s, l.runs);
    if let Some(cap) = l.fetch_cap {
        let _ = writeln!(
            s,
            "- `--cap-fetch-version {cap}`: every client (producers, the raw loop and both \
             managers) reached Tansu through a loopback proxy in the bench's process that \
             lowers the highest Fetch version in Tansu's ApiVersions answers to v{cap} and \
             forwards everything else unchanged; Tansu advertises the proxy's address, so the \
             connections counted are the clients' connections to the proxy. Why: Tansu 0.6 \
             puts the top-level tagged field 0 (NodeEndpoints, defined from Fetch v16) into \
             every flexible Fetch response (tansu-storage `service/fetch.rs`: \
             `node_endpoints(Some([].into()))`), and the rskafka backend, which sends Fetch \
             v12 and decodes it with kafka-protocol 0.18, rejects the response (\"Fetch \
             response v12: Tag 0 is not valid for version 12\"), drops the connection and \
             retries for ever: without the proxy the rskafka manager reads no record from \
             Tansu. Fetch v11 has no tagged fields. The proxy costs every consumer the same \
             extra loopback hop, and its CPU (in the bench's process, not the child's) \
             competes with the child for the 2 cores."
        );
    }
    let failures = rows
        .iter()
        .map(|r| (format!("{} partitions", r.partitions), &r.measured))
        .chain(
            codecs
                .iter()
                .map(|c| (c.codec.name().to_owned(), &c.measured)),
        );
    for (row_name, measured) in failures {
        for m in measured {
            for f in &m.failures {
                let _ = writeln!(s, "- {row_name}, {}: a child failed: {f}", label(m.kind));
            }
        }
    }
    s
}

/// The codec table: each manager's figures, and its CPU against its `none` row.
fn codec_table(s: &mut String, codecs: &[CodecRow]) {
    let _ = writeln!(s, "\n### By codec\n");
    let _ = writeln!(
        s,
        "| codec | consumer | steady-state messages/s | seconds (first to last) | peak RSS \
         (MiB) | TCP connections to the broker (max) | CPU s per million messages | child \
         CPU s, start to last message | CPU per message vs uncompressed |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let plain = codecs.iter().find(|c| c.codec == Codec::None);
    for c in codecs {
        for m in &c.measured {
            let base = plain.and_then(|p| summary_of(&p.measured, m.kind));
            let vs = match (m.summary(), base) {
                (Some(t), Some(b)) => format!("{:.2} x", t.cpu_per_million / b.cpu_per_million),
                _ => "-".to_owned(),
            };
            row(s, c.codec.name(), m, Some(vs));
        }
    }
}

fn notes(s: &mut String, runs: usize) {
    let _ = writeln!(s, "\n### How it is measured\n");
    let _ = writeln!(
        s,
        "- Each consumer is measured {runs} time(s) per row, the consumers taking turns. \
         Messages/s is the median run's (slowest-fastest run in parentheses), seconds that \
         run's; peak RSS and connections are the largest of the runs; CPU figures are \
         medians. A goal is checked on these figures."
    );
    for line in [
        "Each consumer runs in a child process (`ktm-bench --child KIND`), reads the backlog \
         from offset 0 (the managers in a consumer group of their own, committing every 5 s; \
         the raw loop without a group, one task and one rskafka `PartitionClient` per \
         partition). Steady-state messages/s = messages / time from the first message \
         handed to the code to the last. Peak RSS is the child's VmHWM.",
        "TCP connections: a thread of the child counts, every 100 ms from before the \
         consumer is built until after it stopped (and once more when the last message is \
         handed), the ESTABLISHED sockets of `/proc/self/net/tcp` and `tcp6` whose remote \
         port is the broker's and whose inode is one of the child's own descriptors \
         (`/proc/self/fd`); the table shows the most at once.",
        "CPU: user + system time of the whole child (every thread) from `/proc/self/stat` \
         (10 ms resolution). CPU s per million messages is taken over the steady state, \
         from the first message handed to the code to the last, as messages/s is (records \
         prefetched before the first message, at most the 4 MiB prefetch bound, are \
         decoded outside it); the next column is the child's whole CPU time up to the last \
         message (start-up, group join and the connection sampler included).",
        "Settings as in the main run: fetch.max.wait.ms 5 for every consumer (Tansu 0.6 \
         holds every fetch that long); max.partition.fetch.bytes 1 MiB for the rskafka loop \
         and manager, whose prefetch budget (queued_max_bytes) is 4 MiB for all partitions; \
         the rdkafka manager with queued.max.messages.kbytes 4096, queued.min.messages \
         10000, fetch.queue.backoff.ms 5, record headers not read; group session timeout \
         6 s, heartbeat 1 s.",
    ] {
        let _ = writeln!(s, "- {line}");
    }
}
