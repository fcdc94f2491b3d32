//! The rows of `--fetch-path`: each consumer measured `--runs` times, summed up as
//! the median messages/s and CPU, and the largest peak RSS and connection count.

use crate::consumers::{Kind, Throughput};
use crate::produce_codec::Codec;

/// One consumer's runs in one row.
pub(crate) struct Measured {
    pub(crate) kind: Kind,
    /// The runs whose child succeeded.
    pub(crate) runs: Vec<Throughput>,
    /// Why the other children failed.
    pub(crate) failures: Vec<String>,
}

/// What the report shows of a [`Measured`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Summary {
    /// Median steady-state messages/s, and the slowest and fastest run's.
    pub(crate) per_second: f64,
    pub(crate) slowest: f64,
    pub(crate) fastest: f64,
    /// First to last message, of the run with the median messages/s.
    pub(crate) seconds: f64,
    /// The largest of the runs: a bound is checked against the worst.
    pub(crate) peak_rss_kib: u64,
    pub(crate) connections: u32,
    /// Medians of the runs.
    pub(crate) cpu_per_million: f64,
    pub(crate) cpu_total_seconds: f64,
}

/// The median of `v` (the lower one of an even count: a figure that was measured).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

impl Measured {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            kind,
            runs: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The figures over the runs that succeeded; `None` if none did.
    pub(crate) fn summary(&self) -> Option<Summary> {
        let rates: Vec<f64> = self.runs.iter().map(Throughput::per_second).collect();
        let per_second = median(rates.clone());
        let middle = self.runs.iter().find(|t| t.per_second() == per_second)?;
        Some(Summary {
            per_second,
            slowest: rates.iter().copied().fold(f64::INFINITY, f64::min),
            fastest: rates.iter().copied().fold(0.0, f64::max),
            seconds: middle.seconds,
            peak_rss_kib: self.runs.iter().map(|t| t.peak_rss_kib).max()?,
            connections: self.runs.iter().map(|t| t.connections).max()?,
            cpu_per_million: median(self.runs.iter().map(Throughput::cpu_per_million).collect()),
            cpu_total_seconds: median(self.runs.iter().map(|t| t.cpu_total_seconds).collect()),
        })
    }
}

/// `kind`'s summary among `measured`, if it was measured.
pub(crate) fn summary_of(measured: &[Measured], kind: Kind) -> Option<Summary> {
    measured
        .iter()
        .find(|m| m.kind == kind)
        .and_then(Measured::summary)
}

/// The consumers of one partition count.
pub(crate) struct PartitionRow {
    pub(crate) partitions: i32,
    pub(crate) measured: Vec<Measured>,
}

/// The consumers of one codec.
pub(crate) struct CodecRow {
    pub(crate) codec: Codec,
    pub(crate) measured: Vec<Measured>,
}
