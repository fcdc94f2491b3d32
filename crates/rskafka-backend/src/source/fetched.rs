//! What the fetch path sends: records into the poll's batch (or held while their
//! partition is paused), high watermarks, failures.

use ktm_core::{PollBatch, SourceError, TopicPartition};
use tracing::debug;

use super::{RskafkaSource, DRAIN_PER_POLL};
use crate::fetch::FetchItem;

impl RskafkaSource {
    /// Takes a fetched item: `Ok(true)` if it added messages.
    pub(super) fn accept(
        &mut self,
        item: FetchItem,
        batch: &mut PollBatch,
    ) -> Result<bool, SourceError> {
        let epoch = item.epoch();
        let Some((tp, partition)) = self.owned.iter_mut().find(|(_, f)| f.epoch == epoch) else {
            return Ok(false);
        };
        match item {
            FetchItem::Records { high_watermark, .. } if partition.must_hold() => {
                partition.note_high_watermark(high_watermark);
                partition.hold(item);
                Ok(false)
            }
            FetchItem::Passed { .. } if partition.must_hold() => {
                partition.hold(item);
                Ok(false)
            }
            FetchItem::Records { high_watermark, .. } => {
                partition.note_high_watermark(high_watermark);
                Ok(partition.deliver(tp, item, batch))
            }
            FetchItem::Passed { .. } => Ok(partition.deliver(tp, item, batch)),
            FetchItem::HighWatermark { high_watermark, .. } => {
                partition.note_high_watermark(high_watermark);
                Ok(false)
            }
            FetchItem::Failed { error, .. } => Err(error),
        }
    }

    /// Returns the batches held for partitions resumed since: `true` if there were any.
    pub(super) fn release_held(&mut self, batch: &mut PollBatch) -> bool {
        let mut released = false;
        for (tp, partition) in &mut self.owned {
            let Some(held) = partition.take_held() else {
                continue;
            };
            for item in held {
                released |= partition.deliver(tp, item, batch);
            }
        }
        released
    }

    /// Reports each owned partition's high watermark received since the last report,
    /// once: several batches of one poll must not report it several times.
    pub(super) fn report_high_watermarks(&mut self, batch: &mut PollBatch) {
        for (tp, partition) in &mut self.owned {
            if let Some(hw) = partition.take_high_watermark() {
                batch.set_high_watermark(tp.clone(), hw);
            }
        }
    }

    /// Pauses (`true`) or resumes the owned partitions among `partitions`; the others
    /// are not this consumer's (any more), and there is nothing to remember for them.
    pub(super) fn set_paused(&mut self, partitions: &[TopicPartition], paused: bool) {
        for tp in partitions {
            match self.owned.get_mut(tp) {
                Some(partition) => partition.set_paused(paused),
                None => debug!(partition = %tp, paused, "not owned; pause or resume ignored"),
            }
        }
    }

    /// Adds the batches that are already waiting, without waiting.
    pub(super) fn drain_ready(&mut self, batch: &mut PollBatch) {
        for _ in 0..DRAIN_PER_POLL {
            let Ok(item) = self.rx.try_recv() else {
                return;
            };
            if let Err(e) = self.accept(item, batch) {
                self.deferred_error = Some(e);
                return;
            }
        }
    }
}
