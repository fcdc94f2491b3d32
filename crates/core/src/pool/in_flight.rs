//! Which dispatched offsets are still unsettled, per partition: the commit position is
//! the first of them. With key ordering, callbacks of one partition finish out of order;
//! a later offset finishing first must not move the position past an earlier one.

use std::collections::{HashMap, VecDeque};

use crate::TopicPartition;

#[derive(Default)]
pub(crate) struct InFlight {
    partitions: HashMap<TopicPartition, VecDeque<Slot>>,
}

struct Slot {
    offset: i64,
    settled: bool,
}

impl InFlight {
    /// A message was handed to a worker. Offsets of a partition arrive in increasing order.
    pub(crate) fn dispatched(&mut self, tp: &TopicPartition, offset: i64) {
        match self.partitions.get_mut(tp) {
            Some(slots) => slots.push_back(Slot {
                offset,
                settled: false,
            }),
            None => {
                let slots = VecDeque::from([Slot {
                    offset,
                    settled: false,
                }]);
                self.partitions.insert(tp.clone(), slots);
            }
        }
    }

    /// A message was handled or disposed of. Returns the partition's new commit position
    /// when it moved: one past the last offset of the settled prefix. An offset that is
    /// not in flight (its partition was revoked meanwhile) changes nothing.
    pub(crate) fn settle(&mut self, tp: &TopicPartition, offset: i64) -> Option<i64> {
        let slots = self.partitions.get_mut(tp)?;
        let front = slots.front()?.offset;
        if offset != front {
            // Out of order: mark it and wait for the earlier ones.
            if let Ok(i) = slots.binary_search_by_key(&offset, |s| s.offset) {
                slots[i].settled = true;
            }
            return None;
        }
        let mut position = offset + 1;
        slots.pop_front();
        while let Some(slot) = slots.front().filter(|s| s.settled) {
            position = slot.offset + 1;
            slots.pop_front();
        }
        Some(position)
    }

    /// Messages of `tp` in flight.
    pub(crate) fn len_of(&self, tp: &TopicPartition) -> usize {
        self.partitions.get(tp).map_or(0, VecDeque::len)
    }

    /// Messages in flight, over all partitions.
    pub(crate) fn len(&self) -> usize {
        self.partitions.values().map(VecDeque::len).sum()
    }

    /// Forgets partitions this consumer no longer owns.
    pub(crate) fn forget(&mut self, gone: &[TopicPartition]) {
        for tp in gone {
            self.partitions.remove(tp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_position_waits_for_the_earliest_unsettled_offset() {
        let tp = TopicPartition::new("t", 0);
        let mut f = InFlight::default();
        for o in [3, 4, 6, 7] {
            f.dispatched(&tp, o);
        }
        assert_eq!(f.settle(&tp, 6), None, "4 is not settled yet");
        assert_eq!(f.settle(&tp, 4), None, "3 is not settled yet");
        assert_eq!(f.settle(&tp, 3), Some(7), "3, 4 and 6 settled: position 7");
        assert_eq!(f.settle(&tp, 7), Some(8));
        assert_eq!(f.len(), 0);
        assert_eq!(f.settle(&tp, 9), None, "not in flight");
    }

    proptest! {
        /// Whatever the order of settling, each reported position is one past a settled
        /// prefix: every dispatched offset below it is settled.
        #[test]
        fn a_position_never_passes_an_unsettled_offset(
            gaps in proptest::collection::vec(1_i64..3, 1..40),
            order in any::<proptest::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let tp = TopicPartition::new("t", 0);
            let mut f = InFlight::default();
            let mut offsets = Vec::new();
            let mut o = order.index(5) as i64;
            for g in gaps {
                f.dispatched(&tp, o);
                offsets.push(o);
                o += g;
            }
            // A seeded shuffle of the settle order.
            let mut shuffled = offsets.clone();
            let mut r = seed | 1;
            for i in (1..shuffled.len()).rev() {
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                shuffled.swap(i, (r % (i as u64 + 1)) as usize);
            }
            let mut settled = std::collections::BTreeSet::new();
            let mut last = i64::MIN;
            for s in shuffled {
                settled.insert(s);
                if let Some(p) = f.settle(&tp, s) {
                    prop_assert!(p > last, "positions only move forward");
                    last = p;
                    for d in offsets.iter().filter(|d| **d < p) {
                        prop_assert!(settled.contains(d), "position {p} passes unsettled {d}");
                    }
                }
            }
            prop_assert_eq!(last, offsets[offsets.len() - 1] + 1, "all settled: past the last");
        }
    }
}
