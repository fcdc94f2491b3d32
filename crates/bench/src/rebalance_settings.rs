//! The settings of `ktm-bench --rebalance` (its rows, its command-line flags).

use std::time::Duration;

use crate::BoxResult;

/// One row: a backend and an assignor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    RskafkaEager,
    RskafkaCooperative,
    RdkafkaEager,
    RdkafkaCooperative,
}

impl Variant {
    pub(crate) const ALL: [Variant; 4] = [
        Variant::RskafkaEager,
        Variant::RskafkaCooperative,
        Variant::RdkafkaEager,
        Variant::RdkafkaCooperative,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::RskafkaEager => "rskafka-eager",
            Variant::RskafkaCooperative => "rskafka-cooperative",
            Variant::RdkafkaEager => "rdkafka-eager",
            Variant::RdkafkaCooperative => "rdkafka-cooperative",
        }
    }

    pub(crate) fn backend(self) -> &'static str {
        match self {
            Variant::RskafkaEager | Variant::RskafkaCooperative => "ThreadManager + ktm-rskafka",
            _ => "ThreadManager + ktm-rdkafka",
        }
    }

    pub(crate) fn assignor(self) -> &'static str {
        match self {
            Variant::RskafkaEager | Variant::RdkafkaEager => "range (eager)",
            _ => "cooperative-sticky",
        }
    }

    pub(crate) fn cooperative(self) -> bool {
        matches!(
            self,
            Variant::RskafkaCooperative | Variant::RdkafkaCooperative
        )
    }

    /// `a,b,c` into variants (`all`: every one).
    pub(crate) fn parse_list(s: &str) -> BoxResult<Vec<Self>> {
        if s == "all" {
            return Ok(Self::ALL.to_vec());
        }
        s.split(',')
            .map(|n| {
                Self::ALL
                    .into_iter()
                    .find(|v| v.name() == n.trim())
                    .ok_or_else(|| format!("unknown rebalance row {n:?}").into())
            })
            .collect()
    }
}

/// What `--rebalance` runs with.
pub(crate) struct Settings {
    pub(crate) joins: usize,
    pub(crate) partitions: i32,
    /// Records per second written to each partition.
    pub(crate) rate: u32,
    pub(crate) rows: Vec<Variant>,
    /// Group session timeout (Tansu 0.6 can take half of it to complete a join; with
    /// 3 s its groups of 2-3 members never settled, see BENCHMARKS.md).
    pub(crate) session_timeout: Duration,
    pub(crate) heartbeat: Duration,
    /// `--mock-cluster`: run against librdkafka's in-process mock cluster, not Tansu.
    pub(crate) mock_cluster: bool,
    /// Whether `--session-timeout-ms` or `--heartbeat-ms` was given.
    session_given: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            joins: 5,
            partitions: 12,
            rate: 50,
            rows: Variant::ALL.to_vec(),
            session_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(1),
            mock_cluster: false,
            session_given: false,
        }
    }
}

impl Settings {
    /// Takes a flag without a value; whether it was one of these.
    pub(crate) fn switch(&mut self, flag: &str) -> bool {
        if flag == "--mock-cluster" {
            self.mock_cluster = true;
        }
        flag == "--mock-cluster"
    }

    /// Takes a flag and its value; whether it was one of these.
    pub(crate) fn set(&mut self, flag: &str, value: &str) -> BoxResult<bool> {
        match flag {
            "--joins" => self.joins = value.parse()?,
            "--rebalance-partitions" => self.partitions = value.parse()?,
            "--rate" => self.rate = value.parse()?,
            "--session-timeout-ms" => {
                self.session_timeout = Duration::from_millis(value.parse()?);
                self.session_given = true;
            }
            "--heartbeat-ms" => {
                self.heartbeat = Duration::from_millis(value.parse()?);
                self.session_given = true;
            }
            "--rows" => self.rows = Variant::parse_list(value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the settings once parsed (`rebalance`: whether `--rebalance` was given,
    /// `fetch_path`: whether `--fetch-path` was, `brokers`: whether `--brokers` was) and
    /// fills in the mock cluster's defaults.
    pub(crate) fn check(
        &mut self,
        rebalance: bool,
        fetch_path: bool,
        brokers: bool,
    ) -> BoxResult<()> {
        if self.joins == 0 || self.partitions < 4 || self.rate == 0 {
            return Err(
                "--joins and --rate must be at least 1, --rebalance-partitions at least 4".into(),
            );
        }
        if self.mock_cluster && (!(rebalance || fetch_path) || brokers) {
            return Err(
                "--mock-cluster goes with --rebalance or --fetch-path, without --brokers".into(),
            );
        }
        if self.mock_cluster && !self.session_given {
            // The mock holds a rebalance of a formed group for the session timeout less
            // 1 s: keep it short.
            self.session_timeout = Duration::from_secs(4);
            self.heartbeat = Duration::from_millis(400);
        }
        Ok(())
    }
}
