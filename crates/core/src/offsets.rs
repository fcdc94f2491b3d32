//! Commit positions, in Kafka's sense: the offset of the next record to consume.

use std::collections::BTreeMap;

use crate::TopicPartition;

/// Positions per topic-partition, each the offset of the *next* record to read: after
/// handling offset 41 the position to commit is 42, as in Kafka's `OffsetCommit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offsets(BTreeMap<TopicPartition, i64>);

impl Offsets {
    /// No positions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the position of `tp`, returning the previous one.
    pub fn insert(&mut self, tp: TopicPartition, position: i64) -> Option<i64> {
        self.0.insert(tp, position)
    }

    /// The position of `tp`, if any.
    pub fn get(&self, tp: &TopicPartition) -> Option<i64> {
        self.0.get(tp).copied()
    }

    /// Removes `tp`, returning its position.
    pub fn remove(&mut self, tp: &TopicPartition) -> Option<i64> {
        self.0.remove(tp)
    }

    /// Iterates in topic-partition order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, i64)> + '_ {
        self.0.iter().map(|(tp, p)| (tp, *p))
    }

    /// How many partitions have a position.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no partition has a position.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every position.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Copies every position of `other` in, replacing those already here.
    pub fn merge(&mut self, other: &Offsets) {
        for (tp, p) in other.iter() {
            self.0.insert(tp.clone(), p);
        }
    }

    /// Keeps only the partitions for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&TopicPartition) -> bool) {
        self.0.retain(|tp, _| keep(tp));
    }
}

impl FromIterator<(TopicPartition, i64)> for Offsets {
    fn from_iter<I: IntoIterator<Item = (TopicPartition, i64)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Offsets {
    type Item = (&'a TopicPartition, &'a i64);
    type IntoIter = std::collections::btree_map::Iter<'a, TopicPartition, i64>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Where to start a partition that has no committed offset (or whose committed offset is
/// out of the retained range): Kafka's `auto.offset.reset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetReset {
    /// Start at the oldest retained record.
    #[default]
    Earliest,
    /// Start after the newest record.
    Latest,
    /// Fail with an error instead of guessing.
    None,
}
