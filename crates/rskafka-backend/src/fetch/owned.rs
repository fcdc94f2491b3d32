//! An owned partition, as the source keeps it: its assignment epoch, the batches held
//! while it is paused, the high watermark not yet reported. Dropping it stops the
//! partition's fetching.

use std::sync::Arc;

use ktm_core::{PollBatch, TopicPartition};

use super::state::Shared;
use super::FetchItem;

/// One partition the source owns.
#[derive(Debug)]
pub(crate) struct Owned {
    shared: Arc<Shared>,
    tp: TopicPartition,
    pub(crate) epoch: u64,
    paused: bool,
    /// Batches received while paused (or behind such batches), returned in order after
    /// the resume. They keep their share of the prefetch budget.
    held: Vec<FetchItem>,
    /// The last high watermark received, and whether the manager has not been told yet.
    high_watermark: Option<(i64, bool)>,
    /// The offset after the last message handed to the manager; `None` before the first.
    delivered_end: Option<i64>,
}

impl Owned {
    pub(super) fn new(shared: Arc<Shared>, tp: TopicPartition, epoch: u64) -> Self {
        Self {
            shared,
            tp,
            epoch,
            paused: false,
            held: Vec::new(),
            high_watermark: None,
            delivered_end: None,
        }
    }

    /// Hands a fetched item to the manager's batch: records, or offsets passed over
    /// (markers, aborted records) after them. `true` if it added messages.
    pub(crate) fn deliver(
        &mut self,
        tp: &TopicPartition,
        item: FetchItem,
        batch: &mut PollBatch,
    ) -> bool {
        match item {
            FetchItem::Records { messages, .. } => {
                let Some(last) = messages.last() else {
                    return false;
                };
                self.delivered_end = Some(last.offset() + 1);
                for m in messages {
                    batch.push(m);
                }
                true
            }
            FetchItem::Passed { to, .. } => {
                batch.pass(tp.clone(), self.delivered_end, to);
                false
            }
            FetchItem::HighWatermark { .. } | FetchItem::Failed { .. } => false,
        }
    }

    /// Stops (`true`) or restarts the partition's fetching. A paused partition leaves
    /// its broker's fetch requests (and fetch session) until resumed.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        let state = &mut *self.shared.lock();
        if let Some(part) = state.partitions.get_mut(&self.tp) {
            if part.epoch == self.epoch {
                part.paused = paused;
            }
        }
        state.wake_leader_of(&self.tp);
    }

    /// Whether a record batch must wait in [`held`](Self::hold) rather than go to the
    /// manager: while paused, and while older batches still wait (order).
    pub(crate) fn must_hold(&self) -> bool {
        self.paused || !self.held.is_empty()
    }

    pub(crate) fn hold(&mut self, item: FetchItem) {
        self.held.push(item);
    }

    /// The held batches, once the partition is resumed.
    pub(crate) fn take_held(&mut self) -> Option<Vec<FetchItem>> {
        if self.paused || self.held.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.held))
    }

    /// Notes a high watermark received from the broker.
    pub(crate) fn note_high_watermark(&mut self, high_watermark: i64) {
        if high_watermark >= 0 {
            self.high_watermark = Some((high_watermark, true));
        }
    }

    /// The high watermark not yet reported, if any; it counts as reported afterwards.
    pub(crate) fn take_high_watermark(&mut self) -> Option<i64> {
        match &mut self.high_watermark {
            Some((hw, unreported @ true)) => {
                *unreported = false;
                Some(*hw)
            }
            _ => None,
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state
            .partitions
            .get(&self.tp)
            .is_some_and(|p| p.epoch == self.epoch)
        {
            state.wake_leader_of(&self.tp);
            state.partitions.remove(&self.tp);
        }
    }
}
