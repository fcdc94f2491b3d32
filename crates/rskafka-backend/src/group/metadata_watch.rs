//! The group leader's watch on the metadata it assigned from, as the Java consumer
//! keeps one (`metadata.max.age.ms`): when a subscribed topic appears, disappears or
//! changes its number of partitions, the leader rejoins so the group is assigned anew.
//! Without it a topic created after the group formed (or recreated, after a broker
//! restarted empty) would never be consumed: nothing else makes the group rebalance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::control::SharedControl;
use tokio::time::Instant;
use tracing::debug;

use super::coordinator::GroupError;

/// Topic -> number of partitions, for the topics that exist.
pub(super) type PartitionCounts = BTreeMap<String, i32>;

/// Reads how many partitions each of `topics` has; topics that do not exist are left
/// out (so that their appearing later is a change).
pub(super) async fn partition_counts(
    control: &SharedControl,
    topics: &BTreeSet<String>,
) -> Result<PartitionCounts, GroupError> {
    let metadata = control
        .lock()
        .await
        .metadata(topics.iter().map(String::as_str))
        .await?;
    Ok(metadata
        .topics
        .into_iter()
        .map(|(name, t)| (name, i32::try_from(t.leaders.len()).unwrap_or(i32::MAX)))
        .collect())
}

/// What the leader assigned from, and when to look again.
#[derive(Debug)]
pub(super) struct MetadataWatch {
    topics: BTreeSet<String>,
    assigned_from: PartitionCounts,
    every: Duration,
    next: Instant,
}

impl MetadataWatch {
    /// Watches `topics` (every member's subscription), which had `assigned_from`
    /// partitions when the leader assigned them; the first look is `every` from now.
    pub(super) fn new(
        topics: BTreeSet<String>,
        assigned_from: PartitionCounts,
        every: Duration,
    ) -> Self {
        Self {
            topics,
            assigned_from,
            every,
            next: Instant::now() + every,
        }
    }

    /// Re-reads the metadata if `every` has passed since the last look, giving up after
    /// `patience` (the caller must keep heartbeating). A description of the change when
    /// the topics no longer match what was assigned; `None` otherwise, or when the
    /// metadata could not be read (the next look tries again).
    pub(super) async fn look(
        &mut self,
        control: &SharedControl,
        patience: Duration,
    ) -> Option<String> {
        if !self.due(Instant::now()) {
            return None;
        }
        match tokio::time::timeout(patience, partition_counts(control, &self.topics)).await {
            Ok(Ok(current)) => changes(&self.assigned_from, &current),
            Ok(Err(e)) => {
                debug!(error = %e, "reading the subscribed topics' metadata failed; looking again later");
                None
            }
            Err(_) => {
                debug!(
                    ?patience,
                    "reading the subscribed topics' metadata timed out; looking again later"
                );
                None
            }
        }
    }

    /// The watched topics that did not exist when the leader assigned.
    pub(super) fn missing(&self) -> Vec<&str> {
        self.topics
            .iter()
            .filter(|t| !self.assigned_from.contains_key(*t))
            .map(String::as_str)
            .collect()
    }

    /// Whether it is time to look at `now`; if so, the next look is `every` later.
    fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }
}

/// How `now` differs from `before`, topic by topic (e.g. `orders: 2 -> 3 partitions`);
/// `None` when they are alike.
fn changes(before: &PartitionCounts, now: &PartitionCounts) -> Option<String> {
    let topics: BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    let described: Vec<String> = topics
        .into_iter()
        .filter_map(|t| match (before.get(t), now.get(t)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!("{t}: {a} -> {b} partitions")),
            (None, Some(b)) => Some(format!("{t}: appeared with {b} partitions")),
            (Some(_), None) => Some(format!("{t}: gone")),
            (None, None) => None,
        })
        .collect();
    (!described.is_empty()).then(|| described.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(&str, i32)]) -> PartitionCounts {
        entries.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    #[test]
    fn the_same_topics_are_no_change() {
        let a = counts(&[("orders", 2), ("billing", 1)]);
        assert_eq!(changes(&a, &a.clone()), None);
        assert_eq!(changes(&counts(&[]), &counts(&[])), None);
    }

    #[test]
    fn a_topic_that_appears_disappears_or_grows_is_a_change() {
        let before = counts(&[("orders", 2), ("billing", 1)]);
        let now = counts(&[("orders", 3), ("audit", 4)]);
        assert_eq!(
            changes(&before, &now).as_deref(),
            Some("audit: appeared with 4 partitions, billing: gone, orders: 2 -> 3 partitions")
        );
        // A broker that restarted empty: the topic was gone when the group formed and
        // is back now.
        assert_eq!(
            changes(&counts(&[]), &counts(&[("orders", 2)])).as_deref(),
            Some("orders: appeared with 2 partitions")
        );
    }

    #[test]
    fn names_the_topics_missing_when_assigned() {
        let topics = BTreeSet::from(["audit".to_owned(), "orders".to_owned()]);
        let watch = MetadataWatch::new(topics, counts(&[("orders", 2)]), Duration::from_secs(1));
        assert_eq!(watch.missing(), ["audit"]);
    }

    #[test]
    fn looks_once_per_interval() {
        let start = Instant::now();
        let every = Duration::from_secs(5);
        let mut watch = MetadataWatch::new(BTreeSet::new(), counts(&[]), every);
        assert!(!watch.due(start), "not before the first interval");
        assert!(!watch.due(start + Duration::from_secs(4)));
        let first = start + Duration::from_secs(6);
        assert!(watch.due(first));
        assert!(!watch.due(first), "once per interval");
        assert!(!watch.due(first + Duration::from_secs(4)));
        assert!(watch.due(first + every));
    }
}
