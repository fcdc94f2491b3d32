//! `ktm-bench --fetch-path` (issue 16): the rskafka backend's own fetch path against the
//! partition count and the codec.
//!
//! Partition rows: for each partition count, a backlog of `--messages` records of
//! `--size` bytes over that many partitions (produced as the main run's backlog), read
//! by the raw rskafka loop (a `PartitionClient` per partition), the rskafka manager and
//! the rdkafka manager: messages/s, peak RSS, the most TCP connections each held to the
//! broker, CPU time. Codec rows: the same backlog size over `--partitions`, written by
//! librdkafka's producer with each codec, read by both managers: messages/s and CPU
//! seconds per million messages. Every consumer runs in a child process of its own
//! (`consumers::spawn_child`), as in the main run. The section is written into `--out`
//! (`fetch_path_report`), replacing an earlier one; the other runs keep it.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::broker::Broker;
use crate::consumers::{parse_result, spawn_child, ChildArgs, Kind};
use crate::fetch_cap;
use crate::fetch_path_report::{section, Layout};
use crate::fetch_path_rows::{CodecRow, Measured, PartitionRow};
use crate::produce::{self, TopicSpec, BATCH};
use crate::produce_codec::{self, Codec};
use crate::BoxResult;

/// The consumers of a partition row, in the report's order.
pub(crate) const PARTITION_KINDS: [Kind; 3] =
    [Kind::RawRskafka, Kind::ManagerRskafka, Kind::ManagerRdkafka];
/// The consumers of a codec row.
pub(crate) const CODEC_KINDS: [Kind; 2] = [Kind::ManagerRskafka, Kind::ManagerRdkafka];
/// librdkafka's mock cluster keeps at most 5 MiB of record batches per partition
/// (`max_size` in `rdkafka_mock.c`) and drops the oldest beyond: a larger backlog loses
/// its start, and a consumer from offset 0 never sees `--messages` records.
const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;
/// A v2 record's own bytes besides its value (length, attributes, deltas, key and header
/// counts), and some for the batch header: an estimate, on the large side.
const RECORD_OVERHEAD: u64 = 16;

/// What `--fetch-path` runs with (besides `--messages`, `--size`, `--partitions`).
pub(crate) struct Settings {
    /// `--scan-partitions`: the partition counts of the partition rows.
    pub(crate) partition_counts: Vec<i32>,
    /// `--codecs`: the codecs of the codec rows.
    pub(crate) codecs: Vec<Codec>,
    /// `--cap-fetch-version`: clients reach the Tansu started here through a proxy
    /// advertising at most this Fetch version (`fetch_cap`).
    pub(crate) cap_fetch_version: Option<i16>,
    /// `--runs`: children per consumer and row (the report shows their median).
    pub(crate) runs: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            partition_counts: vec![3, 64, 512],
            // `none`: the same payloads uncompressed, so a codec's cost shows.
            codecs: vec![Codec::None, Codec::Lz4, Codec::Zstd],
            cap_fetch_version: None,
            // A median of 3: the machine it was written for is shared with builds.
            runs: 3,
        }
    }
}

impl Settings {
    /// Takes a flag and its value; whether it was one of these.
    pub(crate) fn set(&mut self, flag: &str, value: &str) -> BoxResult<bool> {
        match flag {
            "--scan-partitions" if value == "off" => self.partition_counts.clear(),
            "--scan-partitions" => {
                self.partition_counts = value
                    .split(',')
                    .map(|p| p.trim().parse::<i32>())
                    .collect::<Result<_, _>>()?;
                if self.partition_counts.iter().any(|p| *p < 1) {
                    return Err("--scan-partitions: every count must be at least 1".into());
                }
            }
            "--codecs" => self.codecs = Codec::parse_list(value)?,
            "--cap-fetch-version" => self.cap_fetch_version = Some(value.parse()?),
            "--runs" => {
                self.runs = value.parse()?;
                if self.runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// How one `--fetch-path` run is set up.
pub(crate) struct Run<'a> {
    pub(crate) brokers: Option<&'a str>,
    pub(crate) mock_cluster: bool,
    pub(crate) messages: u64,
    pub(crate) size: usize,
    /// Partitions of the codec topics.
    pub(crate) codec_partitions: i32,
    pub(crate) out: &'a Path,
    pub(crate) command: String,
}

/// Produces each backlog, measures its consumers, writes the section into `run.out`.
pub(crate) fn run(s: &Settings, run: &Run<'_>) -> BoxResult<()> {
    if run.mock_cluster {
        check_fits_mock(s, run)?;
    }
    let started = Instant::now();
    let load_before = load_average();
    let (broker, proxy) = match (run.brokers, run.mock_cluster, s.cap_fetch_version) {
        (Some(address), _, None) => (Broker::given(address), None),
        (None, true, None) => (Broker::start_mock()?, None),
        (None, false, None) => (Broker::start_tansu()?, None),
        (None, false, Some(cap)) => {
            let listener = fetch_cap::bind()?;
            let broker = Broker::start_tansu_advertising(Some(listener.local_addr()?.port()))?;
            let proxy = fetch_cap::start(listener, &broker.address, cap)?;
            (broker, Some(proxy))
        }
        _ => {
            // A broker not started here advertises itself: clients would leave the
            // proxy after their first Metadata.
            return Err("--cap-fetch-version goes with the Tansu the bench starts \
                        (neither --brokers nor --mock-cluster)"
                .into());
        }
    };
    let bootstrap = proxy
        .as_ref()
        .map_or_else(|| broker.address.clone(), |p| p.address.clone());
    let description = match (&proxy, s.cap_fetch_version) {
        (Some(p), Some(cap)) => format!(
            "{}; every client through the bench's proxy on {} that advertises Fetch up to \
             v{cap} (`--cap-fetch-version`, see below)",
            broker.description, p.address
        ),
        _ => broker.description.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let base = format!("ktm-bench-fetch-{nanos}");
    // Each backlog is written just before its consumers read it, so the broker holds
    // one more backlog per row rather than all of them from the start.
    let create = |name: &str, partitions: i32| -> BoxResult<()> {
        match broker.mock() {
            Some(mock) => Ok(mock.create_topic(name, partitions, 1)?),
            None => {
                let spec = TopicSpec {
                    name,
                    partitions,
                    messages: 0,
                    batch: BATCH,
                };
                rt.block_on(produce::produce(&bootstrap, &[spec], run.size))
            }
        }
    };
    let template = ChildArgs {
        kind: Kind::RawRskafka,
        brokers: String::new(),
        topic: String::new(),
        messages: run.messages,
        partitions: 1,
        stops: 1,
        workers: 1,
        run: 0,
    };
    let mut partition_rows = Vec::new();
    for &partitions in &s.partition_counts {
        let topic = format!("{base}-p{partitions}");
        create(&topic, partitions)?;
        let spec = TopicSpec {
            name: &topic,
            partitions,
            messages: run.messages,
            batch: BATCH,
        };
        rt.block_on(produce::fill_created(&bootstrap, &[spec], run.size))?;
        let child = ChildArgs {
            brokers: bootstrap.clone(),
            topic: topic.clone(),
            partitions,
            ..template
        };
        let measured = measure_all(&PARTITION_KINDS, &child, s.runs);
        partition_rows.push(PartitionRow {
            partitions,
            measured,
        });
    }
    let mut codec_rows = Vec::new();
    for &codec in &s.codecs {
        let topic = format!("{base}-{}", codec.name());
        create(&topic, run.codec_partitions)?;
        produce_codec::produce(
            &bootstrap,
            &topic,
            run.codec_partitions,
            run.messages,
            run.size,
            codec,
        )?;
        let child = ChildArgs {
            brokers: bootstrap.clone(),
            topic: topic.clone(),
            partitions: run.codec_partitions,
            ..template
        };
        let measured = measure_all(&CODEC_KINDS, &child, s.runs);
        codec_rows.push(CodecRow { codec, measured });
    }
    let layout = Layout {
        command: &run.command,
        broker: &description,
        mock: broker.mock().is_some(),
        messages: run.messages,
        size: run.size,
        codec_partitions: run.codec_partitions,
        load_before,
        load_after: load_average(),
        took: started.elapsed(),
        runs: s.runs,
        fetch_cap: proxy.as_ref().and(s.cap_fetch_version),
    };
    let md = section(&layout, &partition_rows, &codec_rows);
    println!("{md}");
    let existing = std::fs::read_to_string(run.out).unwrap_or_default();
    std::fs::write(
        run.out,
        crate::fetch_path_report::splice(&existing, &md, layout.mock),
    )?;
    println!("wrote the fetch-path section into {}", run.out.display());
    drop(proxy);
    drop(broker);
    Ok(())
}

/// Refuses backlogs the mock cluster would truncate (see [`MOCK_PARTITION_BYTES`]).
fn check_fits_mock(s: &Settings, run: &Run<'_>) -> BoxResult<()> {
    let counts = s
        .partition_counts
        .iter()
        .copied()
        .chain((!s.codecs.is_empty()).then_some(run.codec_partitions));
    for partitions in counts {
        let per_partition = run.messages.div_ceil(u64::try_from(partitions)?);
        let bytes = per_partition * (u64::try_from(run.size)? + RECORD_OVERHEAD);
        if bytes > MOCK_PARTITION_BYTES {
            return Err(format!(
                "--mock-cluster: {per_partition} records of {} B per partition ({partitions} \
                 partitions) exceed the 5 MiB the mock cluster keeps per partition; use Tansu \
                 or fewer --messages",
                run.size
            )
            .into());
        }
    }
    Ok(())
}

/// Each of `kinds` reading `child.topic` from offset 0, `runs` times, the kinds taking
/// turns (so that a slow spell of the shared machine hits them alike). A failed child
/// is kept as its error, not raised, so the other rows are still measured.
fn measure_all(kinds: &[Kind], child: &ChildArgs, runs: usize) -> Vec<Measured> {
    let mut measured: Vec<Measured> = kinds.iter().map(|&k| Measured::new(k)).collect();
    for run in 0..runs {
        for m in &mut measured {
            let args = ChildArgs {
                kind: m.kind,
                run,
                ..child.clone()
            };
            let outcome = spawn_child(&args).and_then(|line| parse_result(&line));
            let (name, topic) = (m.kind.name(), &child.topic);
            match outcome {
                Ok(t) => {
                    eprintln!(
                        "{name:>16} on {topic} ({}/{runs}): {:.0} messages/s, peak RSS \
                         {:.1} MiB, {} connections, {:.2} CPU s per million",
                        run + 1,
                        t.per_second(),
                        t.peak_rss_kib as f64 / 1024.0,
                        t.connections,
                        t.cpu_per_million()
                    );
                    m.runs.push(t);
                }
                Err(e) => {
                    eprintln!("{name:>16} on {topic} ({}/{runs}): FAILED: {e}", run + 1);
                    m.failures.push(e.to_string());
                }
            }
        }
    }
    measured
}

/// The 1-minute load average (`/proc/loadavg`), for the report's machine note.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
