//! Consumer-group state: members, their target assignment, who owns each partition now,
//! and committed offsets.
//!
//! Rebalances are eager, as in Kafka's classic protocol: a new generation revokes every
//! partition from every member. A partition is handed to its new owner only after the
//! previous owner released it (committing first) or was evicted: the join barrier that
//! keeps a new owner from reading a committed offset that is about to move.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ktm_core::TopicPartition;

pub(crate) type MemberId = u64;

pub(crate) struct Member {
    pub(crate) topics: Vec<String>,
    pub(crate) target: Vec<TopicPartition>,
    pub(crate) last_seen: Instant,
}

/// One committed position, as recorded by the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    /// The partition.
    pub tp: TopicPartition,
    /// The committed position (next offset to read).
    pub position: i64,
}

#[derive(Default)]
pub(crate) struct Group {
    pub(crate) committed: BTreeMap<TopicPartition, i64>,
    pub(crate) commit_log: Vec<CommitRecord>,
    pub(crate) members: BTreeMap<MemberId, Member>,
    pub(crate) generation: u64,
    pub(crate) owners: BTreeMap<TopicPartition, MemberId>,
}

impl Group {
    pub(crate) fn commit(&mut self, tp: TopicPartition, position: i64) {
        self.committed.insert(tp.clone(), position);
        self.commit_log.push(CommitRecord { tp, position });
    }

    /// Starts a new generation and recomputes every member's target with the range
    /// assignor: per topic, members in id order take contiguous runs of partitions.
    pub(crate) fn rebalance(&mut self, partitions_of: impl Fn(&str) -> i32) {
        self.generation += 1;
        let mut topics: Vec<String> = self
            .members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        for m in self.members.values_mut() {
            m.target.clear();
        }
        for topic in topics {
            let subscribers: Vec<MemberId> = self
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(&topic))
                .map(|(id, _)| *id)
                .collect();
            let count = partitions_of(&topic);
            let n = subscribers.len() as i32;
            let (per, extra) = (count / n, count % n);
            let mut next = 0;
            for (i, id) in subscribers.iter().enumerate() {
                let take = per + i32::from((i as i32) < extra);
                if let Some(m) = self.members.get_mut(id) {
                    m.target.extend(
                        (next..next + take).map(|p| TopicPartition::new(topic.as_str(), p)),
                    );
                }
                next += take;
            }
        }
    }

    /// Removes members not seen for `session_timeout` (other than `except`), releasing
    /// their partitions uncommitted, as a broker does when a consumer dies. Returns
    /// whether anyone was evicted.
    pub(crate) fn evict_expired(
        &mut self,
        session_timeout: Duration,
        except: Option<MemberId>,
    ) -> bool {
        let now = Instant::now();
        let expired: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(id, m)| {
                Some(**id) != except && now.duration_since(m.last_seen) > session_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            tracing::warn!(
                member = id,
                "mock group: member evicted after its session timed out"
            );
            self.remove_member(*id);
        }
        !expired.is_empty()
    }

    pub(crate) fn remove_member(&mut self, id: MemberId) {
        self.members.remove(&id);
        self.owners.retain(|_, owner| *owner != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(topics: &[&str]) -> Member {
        Member {
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            target: Vec::new(),
            last_seen: Instant::now(),
        }
    }

    #[test]
    fn range_assignor_covers_every_partition_once() {
        let mut g = Group::default();
        for id in 0..3 {
            g.members.insert(id, member(&["a"]));
        }
        g.rebalance(|_| 7);
        let mut all: Vec<i32> = g
            .members
            .values()
            .flat_map(|m| m.target.iter().map(TopicPartition::partition))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
        let sizes: Vec<usize> = g.members.values().map(|m| m.target.len()).collect();
        assert_eq!(sizes, vec![3, 2, 2]);
    }
}
