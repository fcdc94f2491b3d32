//! The command line of `ktm-bench`: its flags, their defaults and checks.

use std::path::{Path, PathBuf};

use crate::consumers::Kind;
use crate::{fetch_path, rebalance, BoxResult};

pub(crate) const USAGE: &str = "usage: ktm-bench [--brokers HOST:PORT] [--messages N] [--size BYTES] \
[--partitions P] [--stops K] [--pool-messages N] [--out docs/BENCHMARKS.md] [--python PATH] \
[--script PATH] [--skip-python]
       ktm-bench --rebalance [--brokers HOST:PORT | --mock-cluster] [--joins N] [--rebalance-partitions P] \
[--rate RECORDS_PER_S] [--session-timeout-ms MS] [--heartbeat-ms MS] [--rows all|rskafka-eager,rskafka-cooperative,rdkafka-eager,rdkafka-cooperative] \
[--out docs/BENCHMARKS.md]
       ktm-bench --fetch-path [--brokers HOST:PORT | --mock-cluster] [--messages N] [--size BYTES] \
[--scan-partitions 3,64,512|off] [--codecs none,lz4,zstd|off] [--partitions P_OF_CODEC_TOPICS] \
[--cap-fetch-version V] \
[--out docs/BENCHMARKS.md]";

/// The command-line options.
pub(crate) struct Options {
    pub(crate) brokers: Option<String>,
    pub(crate) messages: u64,
    pub(crate) size: usize,
    pub(crate) partitions: i32,
    pub(crate) stops: usize,
    /// Messages for each worker-pool run (a 1 ms callback: about 1,000/s per worker).
    pub(crate) pool_messages: u64,
    pub(crate) out: PathBuf,
    pub(crate) python: String,
    pub(crate) script: String,
    pub(crate) skip_python: bool,
    /// `--child KIND`: run one measurement and print it (internal).
    pub(crate) child: Option<Kind>,
    /// `--topic`: the child's topic (internal).
    pub(crate) topic: Option<String>,
    /// `--workers`: the child's worker count (internal).
    pub(crate) workers: usize,
    /// `--run`: the child's repetition number (internal).
    pub(crate) run: usize,
    /// `--rebalance`: run only the rebalance measurement.
    pub(crate) rebalance: bool,
    /// `--joins`, `--rebalance-partitions`, `--rate`, `--rows`: its settings.
    pub(crate) rebalance_settings: rebalance::Settings,
    /// `--fetch-path`: run only the partition-count and codec measurement.
    pub(crate) fetch_path: bool,
    /// `--scan-partitions`, `--codecs`: its settings.
    pub(crate) fetch_path_settings: fetch_path::Settings,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> BoxResult<Self> {
        let mut o = Options {
            brokers: None,
            messages: 1_000_000,
            size: 100,
            partitions: 3,
            stops: 20,
            pool_messages: 8_000,
            out: PathBuf::from("docs/BENCHMARKS.md"),
            python: "python3".to_owned(),
            script: default_script(),
            skip_python: false,
            child: None,
            topic: None,
            workers: 1,
            run: 0,
            rebalance: false,
            rebalance_settings: rebalance::Settings::default(),
            fetch_path: false,
            fetch_path_settings: fetch_path::Settings::default(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--skip-python" {
                o.skip_python = true;
                continue;
            }
            if flag == "--rebalance" {
                o.rebalance = true;
                continue;
            }
            if flag == "--fetch-path" {
                o.fetch_path = true;
                continue;
            }
            if o.rebalance_settings.switch(flag) {
                continue;
            }
            if flag == "--help" || flag == "-h" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            match flag.as_str() {
                "--brokers" => o.brokers = Some(value.clone()),
                "--messages" => o.messages = value.parse()?,
                "--size" => o.size = value.parse()?,
                "--partitions" => o.partitions = value.parse()?,
                "--stops" => o.stops = value.parse()?,
                "--pool-messages" => o.pool_messages = value.parse()?,
                "--workers" => o.workers = value.parse()?,
                "--run" => o.run = value.parse()?,
                "--out" => o.out = PathBuf::from(value),
                "--python" => o.python = value.clone(),
                "--script" => o.script = value.clone(),
                "--child" => o.child = Some(Kind::parse(value)?),
                "--topic" => o.topic = Some(value.clone()),
                _ if o.rebalance_settings.set(flag, value)? => {}
                _ if o.fetch_path_settings.set(flag, value)? => {}
                _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
            }
        }
        if o.messages == 0
            || o.partitions < 1
            || o.stops == 0
            || o.pool_messages == 0
            || o.workers == 0
        {
            return Err(
                "--messages, --partitions, --stops, --pool-messages and --workers must be at least 1"
                    .into(),
            );
        }
        if o.rebalance && o.fetch_path {
            return Err("--rebalance and --fetch-path are separate runs".into());
        }
        let brokers = o.brokers.is_some();
        o.rebalance_settings
            .check(o.rebalance, o.fetch_path, brokers)?;
        Ok(o)
    }
}

/// Where the Python original is: the project's `shared/` folder, beside the work tree.
fn default_script() -> String {
    const CANDIDATES: [&str; 3] = [
        "../shared/reference/seed_thread_manager.py",
        "shared/reference/seed_thread_manager.py",
        "/work/shared/reference/seed_thread_manager.py",
    ];
    CANDIDATES
        .iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or(&CANDIDATES[2])
        .to_string()
}
