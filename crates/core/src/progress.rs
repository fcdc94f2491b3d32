//! Per-partition progress of the consumer thread: handled, stored and committed positions.
//!
//! On the hot path (once per message), so lookups go through a small vector with the
//! last partition cached: consecutive messages mostly share a partition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::callback_time::TimeHistogram;

use crate::source::Passed;
use crate::stats::PartitionStats;
use crate::{Message, Offsets, TopicPartition};

struct PartitionProgress {
    tp: TopicPartition,
    /// Next offset after the last handled message.
    handled: i64,
    /// What was last passed to `MessageSource::store`.
    stored: i64,
    /// What was last committed by the manager.
    committed: i64,
    /// Messages handled, counted per message: one add on the fast path.
    count: u64,
    /// What happened to failed messages; off the fast path.
    failures: FailureCounts,
    /// Sampled callback durations.
    callback_time: TimeHistogram,
    /// The broker's last reported high watermark.
    high_watermark: Option<i64>,
    /// Offsets the source passed over (markers, aborted records), not yet applied:
    /// `handled` moves to `to` once it reaches `after` (or at once when `None`).
    passed: Option<(Option<i64>, i64)>,
    /// `handled` at the last snapshot, and when it last moved (or the partition appeared).
    snapshot_handled: i64,
    progressed_at: Instant,
}

/// Per-partition counts of failed attempts and of what the failure policy did.
#[derive(Default, Clone, Copy)]
pub(crate) struct FailureCounts {
    pub(crate) failures: u64,
    pub(crate) retries: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) skipped: u64,
    pub(crate) decode_failures: u64,
}

#[derive(Default)]
pub(crate) struct Progress {
    partitions: Vec<PartitionProgress>,
    last: usize,
}

impl Progress {
    /// Records that `message` was handled.
    #[inline]
    pub(crate) fn handled(&mut self, message: &Message) {
        // Fast path: the same partition as the previous message, same topic allocation.
        if let Some(p) = self.partitions.get_mut(self.last) {
            if p.tp.partition() == message.partition()
                && Arc::ptr_eq(p.tp.topic_arc(), message.topic_arc())
            {
                p.handled = p.handled.max(message.offset() + 1);
                p.count += 1;
                return;
            }
        }
        self.handled_elsewhere(message);
    }

    #[inline(never)]
    fn handled_elsewhere(&mut self, message: &Message) {
        let idx = self.index_of(message.topic_arc(), message.partition());
        self.last = idx;
        let p = &mut self.partitions[idx];
        if !Arc::ptr_eq(p.tp.topic_arc(), message.topic_arc()) {
            // Hold the messages' own topic allocation, so the fast path's pointer
            // comparison hits from the next message on.
            p.tp = TopicPartition::new(Arc::clone(message.topic_arc()), p.tp.partition());
        }
        p.handled = p.handled.max(message.offset() + 1);
        p.count += 1;
    }

    /// The entry of a partition, created if new; leaves the fast-path cache alone.
    fn index_of(&mut self, topic: &Arc<str>, partition: i32) -> usize {
        let matches = |p: &PartitionProgress| {
            p.tp.partition() == partition
                && (Arc::ptr_eq(p.tp.topic_arc(), topic) || **p.tp.topic_arc() == **topic)
        };
        if self.partitions.get(self.last).is_some_and(matches) {
            return self.last;
        }
        match self.partitions.iter().position(matches) {
            Some(i) => i,
            None => {
                self.partitions.push(PartitionProgress {
                    tp: TopicPartition::new(Arc::clone(topic), partition),
                    handled: i64::MIN,
                    stored: i64::MIN,
                    committed: i64::MIN,
                    count: 0,
                    failures: FailureCounts::default(),
                    callback_time: TimeHistogram::default(),
                    high_watermark: None,
                    passed: None,
                    snapshot_handled: i64::MIN,
                    progressed_at: Instant::now(),
                });
                self.partitions.len() - 1
            }
        }
    }

    /// Counts `handled` messages of `tp` that a worker handled and moves its position to
    /// `position` (never back), if given: workers finish a partition's messages out of
    /// order, so the in-flight tracker, not the offsets, decides the position.
    pub(crate) fn handled_run(&mut self, tp: &TopicPartition, handled: u64, position: Option<i64>) {
        let idx = self.index_of(tp.topic_arc(), tp.partition());
        let p = &mut self.partitions[idx];
        p.count += handled;
        if let Some(position) = position {
            p.handled = p.handled.max(position);
        }
    }

    /// Moves the position past a message the failure policy disposed of (skipped or
    /// dead-lettered): committable, but not counted as handled.
    pub(crate) fn disposed(&mut self, message: &Message) {
        let idx = self.index_of(message.topic_arc(), message.partition());
        let p = &mut self.partitions[idx];
        p.handled = p.handled.max(message.offset() + 1);
    }

    /// The failure counts of a partition, to update.
    pub(crate) fn failures_of(&mut self, tp: &TopicPartition) -> &mut FailureCounts {
        let idx = self.index_of(tp.topic_arc(), tp.partition());
        &mut self.partitions[idx].failures
    }

    /// Records a sampled callback duration for the message's partition.
    pub(crate) fn callback_sample(&mut self, message: &Message, d: Duration) {
        let idx = self.index_of(message.topic_arc(), message.partition());
        self.partitions[idx].callback_time.record(d);
    }

    /// Notes offsets the source passed over; applied once what was delivered before
    /// them is settled. A later report replaces an earlier one: its `after` is at least
    /// as far, and its `to` further.
    pub(crate) fn pass(&mut self, passed: Passed) {
        let idx = self.index_of(passed.tp.topic_arc(), passed.tp.partition());
        self.partitions[idx].passed = Some((passed.after, passed.to));
    }

    /// Moves positions past passed-over offsets where what came before is settled.
    /// Called per batch and commit, off the per-message path.
    fn apply_passed(&mut self) {
        for p in &mut self.partitions {
            let Some((after, to)) = p.passed else {
                continue;
            };
            if after.is_none_or(|after| p.handled >= after) {
                p.handled = p.handled.max(to);
                p.passed = None;
            }
        }
    }

    /// Records a high watermark the source reported.
    pub(crate) fn set_high_watermark(&mut self, tp: &TopicPartition, high_watermark: i64) {
        let idx = self.index_of(tp.topic_arc(), tp.partition());
        self.partitions[idx].high_watermark = Some(high_watermark);
    }

    /// Per-partition figures for `stats()`; notes which partitions moved since the last
    /// snapshot, for stall detection.
    pub(crate) fn snapshot(&mut self, now: Instant) -> Vec<PartitionStats> {
        self.apply_passed();
        self.partitions
            .iter_mut()
            .map(|p| {
                if p.handled != p.snapshot_handled {
                    p.snapshot_handled = p.handled;
                    p.progressed_at = now;
                }
                let known = |v: i64| (v != i64::MIN).then_some(v);
                let (position, committed) = (known(p.handled), known(p.committed));
                PartitionStats {
                    tp: p.tp.clone(),
                    position,
                    committed,
                    high_watermark: p.high_watermark,
                    lag: p
                        .high_watermark
                        .zip(committed.or(position))
                        .map(|(hw, done)| (hw - done).max(0)),
                    messages_handled: p.count,
                    failures: p.failures.failures,
                    retries: p.failures.retries,
                    dead_lettered: p.failures.dead_lettered,
                    skipped: p.failures.skipped,
                    decode_failures: p.failures.decode_failures,
                    callback_time: p.callback_time.summary(),
                    last_progress: p.progressed_at,
                }
            })
            .collect()
    }

    /// Positions handled since the last call; they count as stored afterwards.
    pub(crate) fn take_unstored(&mut self) -> Offsets {
        self.apply_passed();
        self.partitions
            .iter_mut()
            .filter(|p| p.handled > p.stored)
            .map(|p| {
                p.stored = p.handled;
                (p.tp.clone(), p.handled)
            })
            .collect()
    }

    /// Positions handled but not committed.
    pub(crate) fn uncommitted(&mut self) -> Offsets {
        self.apply_passed();
        self.partitions
            .iter()
            .filter(|p| p.handled > p.committed)
            .map(|p| (p.tp.clone(), p.handled))
            .collect()
    }

    pub(crate) fn mark_committed(&mut self, offsets: &Offsets) {
        for p in &mut self.partitions {
            if let Some(pos) = offsets.get(&p.tp) {
                p.committed = p.committed.max(pos);
            }
        }
    }

    /// Forgets partitions that were revoked or lost: they are no longer ours to commit.
    pub(crate) fn forget(&mut self, tps: &[TopicPartition]) {
        self.partitions.retain(|p| !tps.contains(&p.tp));
        self.last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(p: i32, o: i64) -> Message {
        Message::builder("t", p, o).build()
    }

    fn passed(p: i32, after: Option<i64>, to: i64) -> Passed {
        Passed {
            tp: TopicPartition::new("t", p),
            after,
            to,
        }
    }

    #[test]
    fn passed_offsets_move_the_position_only_once_what_came_before_is_settled() {
        let mut pr = Progress::default();
        // Records 7 and 8 delivered, 9 a commit marker: only 7 handled so far.
        pr.handled(&msg(0, 7));
        pr.pass(passed(0, Some(9), 10));
        let tp = TopicPartition::new("t", 0);
        assert_eq!(pr.take_unstored().get(&tp), Some(8), "8 is not settled yet");
        pr.handled(&msg(0, 8));
        assert_eq!(pr.take_unstored().get(&tp), Some(10), "past the marker");
        // A partition where nothing was delivered moves at once.
        pr.pass(passed(1, None, 4));
        assert_eq!(pr.uncommitted().get(&TopicPartition::new("t", 1)), Some(4));
    }

    #[test]
    fn tracks_handled_stored_and_committed_separately() {
        let mut pr = Progress::default();
        pr.handled(&msg(0, 0));
        pr.handled(&msg(0, 1));
        pr.handled(&msg(1, 7));
        let stored = pr.take_unstored();
        assert_eq!(stored.get(&TopicPartition::new("t", 0)), Some(2));
        assert_eq!(stored.get(&TopicPartition::new("t", 1)), Some(8));
        assert!(pr.take_unstored().is_empty(), "nothing new to store");
        let unc = pr.uncommitted();
        assert_eq!(unc.len(), 2);
        pr.mark_committed(&unc);
        assert!(pr.uncommitted().is_empty());
        pr.handled(&msg(1, 8));
        assert_eq!(pr.uncommitted().get(&TopicPartition::new("t", 1)), Some(9));
        pr.forget(&[TopicPartition::new("t", 1)]);
        assert!(
            pr.uncommitted().is_empty(),
            "a revoked partition is not committed"
        );
    }
}
