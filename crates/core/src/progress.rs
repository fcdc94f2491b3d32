//! Per-partition progress of the consumer thread: handled, stored and committed positions.
//!
//! On the hot path (once per message), so lookups go through a small vector with the
//! last partition cached: consecutive messages mostly share a partition.

use std::sync::Arc;

use crate::{Message, Offsets, TopicPartition};

struct PartitionProgress {
    tp: TopicPartition,
    /// Next offset after the last handled message.
    handled: i64,
    /// What was last passed to `MessageSource::store`.
    stored: i64,
    /// What was last committed by the manager.
    committed: i64,
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
                return;
            }
        }
        self.handled_elsewhere(message);
    }

    #[inline(never)]
    fn handled_elsewhere(&mut self, message: &Message) {
        let idx = self.index_of(message.topic_arc(), message.partition());
        let p = &mut self.partitions[idx];
        p.handled = p.handled.max(message.offset() + 1);
    }

    fn index_of(&mut self, topic: &Arc<str>, partition: i32) -> usize {
        let matches = |p: &PartitionProgress| {
            p.tp.partition() == partition
                && (Arc::ptr_eq(p.tp.topic_arc(), topic) || **p.tp.topic_arc() == **topic)
        };
        if self.partitions.get(self.last).is_some_and(matches) {
            return self.last;
        }
        self.last = match self.partitions.iter().position(matches) {
            Some(i) => i,
            None => {
                self.partitions.push(PartitionProgress {
                    tp: TopicPartition::new(Arc::clone(topic), partition),
                    handled: i64::MIN,
                    stored: i64::MIN,
                    committed: i64::MIN,
                });
                self.partitions.len() - 1
            }
        };
        self.last
    }

    /// Positions handled since the last call; they count as stored afterwards.
    pub(crate) fn take_unstored(&mut self) -> Offsets {
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
    pub(crate) fn uncommitted(&self) -> Offsets {
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
