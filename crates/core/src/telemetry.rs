//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, so any exporter
//! works (Prometheus, StatsD, OpenTelemetry...). Install the exporter's recorder before
//! `start()`: handles are registered when the consumer thread first sees a partition.
//!
//! Every name is prefixed `ktm_`. Labels: `group` on all (empty when the source has no
//! group), plus `topic` and `partition` on the per-partition ones.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `ktm_messages_handled_total` | counter | callbacks that returned `Ok` |
//! | `ktm_callback_failures_total` | counter | failed callback attempts (errors and panics) |
//! | `ktm_retries_total` | counter | callback attempts after a message's first |
//! | `ktm_dead_lettered_total` | counter | messages produced to the dead-letter topic |
//! | `ktm_skipped_total` | counter | messages skipped by the failure policy |
//! | `ktm_decode_failures_total` | counter | messages whose payload did not decode (the handler never ran) |
//! | `ktm_position` | gauge | next offset to handle |
//! | `ktm_committed_offset` | gauge | last committed position |
//! | `ktm_high_watermark` | gauge | the broker's high watermark, as last reported |
//! | `ktm_lag` | gauge | high watermark minus committed |
//! | `ktm_callback_duration_seconds` | histogram | sampled callback durations (1 in 64) |
//! | `ktm_commits_total`, `ktm_commit_errors_total`, `ktm_poll_errors_total`, `ktm_rebalances_total` | counter | per consumer (label `group`) |
//! | `ktm_assigned_partitions` | gauge | partitions assigned now |
//! | `ktm_pool_in_flight_messages` | gauge | with a worker pool: messages queued or running, unsettled |
//! | `ktm_pool_held_messages` | gauge | with a worker pool: messages held back, their partitions paused |
//!
//! Published once per polled batch (and per commit), never per message; the callback
//! histogram is fed by the same samples as [`PartitionStats::callback_time`].

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Label};

use crate::stats::Counters;
use crate::{Message, PartitionStats, TopicPartition};

/// A counter published from a running total: increments by the difference, so a total
/// that restarts (a partition revoked and assigned again) never makes it go backwards.
struct Total {
    counter: Counter,
    last: u64,
}

impl Total {
    fn new(counter: Counter) -> Self {
        Self { counter, last: 0 }
    }

    fn publish(&mut self, total: u64) {
        let delta = if total >= self.last {
            total - self.last
        } else {
            total
        };
        if delta > 0 {
            self.counter.increment(delta);
        }
        self.last = total;
    }

    fn publish_atomic(&mut self, total: &AtomicU64) {
        self.publish(Counters::read(total));
    }
}

struct PartitionMetrics {
    tp: TopicPartition,
    handled: Total,
    failures: Total,
    retries: Total,
    dead_lettered: Total,
    skipped: Total,
    decode_failures: Total,
    position: Gauge,
    committed: Gauge,
    high_watermark: Gauge,
    lag: Gauge,
    callback_seconds: Histogram,
}

impl PartitionMetrics {
    fn new(tp: &TopicPartition, group: &str) -> Self {
        let labels = [
            Label::new("group", group.to_owned()),
            Label::new("topic", tp.topic().to_owned()),
            Label::new("partition", tp.partition().to_string()),
        ];
        Self {
            tp: tp.clone(),
            handled: Total::new(counter!("ktm_messages_handled_total", labels.iter())),
            failures: Total::new(counter!("ktm_callback_failures_total", labels.iter())),
            retries: Total::new(counter!("ktm_retries_total", labels.iter())),
            dead_lettered: Total::new(counter!("ktm_dead_lettered_total", labels.iter())),
            skipped: Total::new(counter!("ktm_skipped_total", labels.iter())),
            decode_failures: Total::new(counter!("ktm_decode_failures_total", labels.iter())),
            position: gauge!("ktm_position", labels.iter()),
            committed: gauge!("ktm_committed_offset", labels.iter()),
            high_watermark: gauge!("ktm_high_watermark", labels.iter()),
            lag: gauge!("ktm_lag", labels.iter()),
            callback_seconds: histogram!("ktm_callback_duration_seconds", labels.iter()),
        }
    }

    fn publish(&mut self, p: &PartitionStats) {
        self.handled.publish(p.messages_handled);
        self.failures.publish(p.failures);
        self.retries.publish(p.retries);
        self.dead_lettered.publish(p.dead_lettered);
        self.skipped.publish(p.skipped);
        self.decode_failures.publish(p.decode_failures);
        let set = |g: &Gauge, v: Option<i64>| {
            if let Some(v) = v {
                g.set(v as f64);
            }
        };
        set(&self.position, p.position);
        set(&self.committed, p.committed);
        set(&self.high_watermark, p.high_watermark);
        set(&self.lag, p.lag);
    }
}

/// The consumer thread's metric handles.
pub(crate) struct ConsumerMetrics {
    group: String,
    partitions: Vec<PartitionMetrics>,
    commits: Total,
    commit_errors: Total,
    poll_errors: Total,
    rebalances: Total,
    assigned: Gauge,
    in_flight: Gauge,
    held: Gauge,
}

impl ConsumerMetrics {
    pub(crate) fn new(group: Option<&str>) -> Self {
        let group = group.unwrap_or_default().to_owned();
        let labels = [Label::new("group", group.clone())];
        Self {
            partitions: Vec::new(),
            commits: Total::new(counter!("ktm_commits_total", labels.iter())),
            commit_errors: Total::new(counter!("ktm_commit_errors_total", labels.iter())),
            poll_errors: Total::new(counter!("ktm_poll_errors_total", labels.iter())),
            rebalances: Total::new(counter!("ktm_rebalances_total", labels.iter())),
            assigned: gauge!("ktm_assigned_partitions", labels.iter()),
            in_flight: gauge!("ktm_pool_in_flight_messages", labels.iter()),
            held: gauge!("ktm_pool_held_messages", labels.iter()),
            group,
        }
    }

    /// Publishes a progress snapshot and the consumer's counters.
    pub(crate) fn publish(
        &mut self,
        partitions: &[PartitionStats],
        counters: &Counters,
        assigned: usize,
        (in_flight, held): (usize, usize),
    ) {
        for p in partitions {
            let idx = self.index_of(&p.tp);
            self.partitions[idx].publish(p);
        }
        self.commits.publish_atomic(&counters.commits);
        self.commit_errors.publish_atomic(&counters.commit_errors);
        self.poll_errors.publish_atomic(&counters.poll_errors);
        self.rebalances.publish_atomic(&counters.rebalances);
        self.assigned.set(assigned as f64);
        self.in_flight.set(in_flight as f64);
        self.held.set(held as f64);
    }

    /// Drops partitions the consumer gave up: their lag is another consumer's now (zeroed
    /// here so no alert fires on it), and their totals restart if they come back.
    pub(crate) fn forget(&mut self, gone: &[TopicPartition]) {
        self.partitions.retain(|p| {
            let keep = !gone.contains(&p.tp);
            if !keep {
                p.lag.set(0.0);
            }
            keep
        });
    }

    /// Records one sampled callback duration.
    pub(crate) fn callback_sample(&mut self, message: &Message, d: Duration) {
        let found = self.partitions.iter().position(|p| {
            p.tp.partition() == message.partition() && p.tp.topic() == message.topic()
        });
        let idx = match found {
            Some(i) => i,
            None => self.index_of(&message.topic_partition()),
        };
        self.partitions[idx]
            .callback_seconds
            .record(d.as_secs_f64());
    }

    fn index_of(&mut self, tp: &TopicPartition) -> usize {
        match self.partitions.iter().position(|p| &p.tp == tp) {
            Some(i) => i,
            None => {
                self.partitions.push(PartitionMetrics::new(tp, &self.group));
                self.partitions.len() - 1
            }
        }
    }
}
