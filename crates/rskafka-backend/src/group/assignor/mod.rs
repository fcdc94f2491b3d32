//! The client-side partition assignors the group leader runs: Kafka's `range` and
//! `roundrobin` (eager), and KIP-429's `cooperative-sticky`.

mod eager;
mod sticky;

use std::collections::BTreeMap;

use super::protocol::MemberMetadata;
pub(crate) use sticky::cooperative_sticky;

/// How the group leader shares partitions among members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Assignor {
    /// Kafka's `range`: per topic, consecutive partitions to each member in member-id
    /// order, the first members taking one extra when it does not divide evenly.
    #[default]
    Range,
    /// Kafka's `roundrobin`: every subscribed partition, in topic-partition order, dealt
    /// to the members in turn (skipping members not subscribed to its topic).
    RoundRobin,
    /// Kafka's `cooperative-sticky` (KIP-429), as Java's `CooperativeStickyAssignor` and
    /// librdkafka's: balanced (with identical subscriptions, member partition counts
    /// differ by at most one), partitions stay with their owner whenever balance allows,
    /// and a partition changing owner is first revoked by its owner, then assigned to
    /// the new one in the next rebalance.
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name members advertise in JoinGroup.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Whether the assignor follows the cooperative rebalance protocol (KIP-429):
    /// members keep their partitions during a rebalance and revoke only those the new
    /// assignment takes away. True only for [`Assignor::CooperativeSticky`].
    pub fn is_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }

    /// The assignor named `name`, if it is one of ours.
    pub fn from_protocol_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }
}

/// A member's id and the topics it subscribes to.
pub(crate) type MemberSubscription = (String, Vec<String>);

/// Topic -> partitions, per member id.
pub(crate) type GroupAssignment = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// Shares the partitions of `partition_counts` (topic -> number of partitions) among
/// `members` (id and JoinGroup metadata). Every member gets an entry, possibly empty;
/// topics nobody subscribes to, or that are missing from `partition_counts`, are not
/// assigned. The eager assignors read only the members' topics; the cooperative one
/// also what they own.
pub(crate) fn assign(
    assignor: Assignor,
    members: &[(String, MemberMetadata)],
    partition_counts: &BTreeMap<String, i32>,
) -> GroupAssignment {
    if assignor == Assignor::CooperativeSticky {
        return cooperative_sticky(members, partition_counts);
    }
    let subscriptions: Vec<MemberSubscription> = members
        .iter()
        .map(|(id, m)| (id.clone(), m.topics.clone()))
        .collect();
    let mut out: GroupAssignment = members
        .iter()
        .map(|(id, _)| (id.clone(), BTreeMap::new()))
        .collect();
    match assignor {
        Assignor::RoundRobin => eager::round_robin(&subscriptions, partition_counts, &mut out),
        _ => eager::range(&subscriptions, partition_counts, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, &[&str])]) -> Vec<(String, MemberMetadata)> {
        spec.iter()
            .map(|(id, t)| {
                let metadata = MemberMetadata {
                    topics: t.iter().map(|s| s.to_string()).collect(),
                    ..MemberMetadata::default()
                };
                (id.to_string(), metadata)
            })
            .collect()
    }

    fn counts(spec: &[(&str, i32)]) -> BTreeMap<String, i32> {
        spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn of(a: &GroupAssignment, member: &str, topic: &str) -> Vec<i32> {
        a[member].get(topic).cloned().unwrap_or_default()
    }

    #[test]
    fn range_gives_consecutive_runs_extra_to_first_members() {
        let m = members(&[("b", &["t", "u"]), ("a", &["t", "u"])]);
        let a = assign(Assignor::Range, &m, &counts(&[("t", 3), ("u", 4)]));
        assert_eq!(of(&a, "a", "t"), vec![0, 1]);
        assert_eq!(of(&a, "b", "t"), vec![2]);
        assert_eq!(of(&a, "a", "u"), vec![0, 1]);
        assert_eq!(of(&a, "b", "u"), vec![2, 3]);
    }

    #[test]
    fn range_with_more_members_than_partitions_leaves_some_empty() {
        let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let a = assign(Assignor::Range, &m, &counts(&[("t", 2)]));
        assert_eq!(of(&a, "a", "t"), vec![0]);
        assert_eq!(of(&a, "b", "t"), vec![1]);
        assert!(a["c"].is_empty());
    }

    #[test]
    fn round_robin_deals_across_topics() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t", "u"])]);
        let a = assign(Assignor::RoundRobin, &m, &counts(&[("t", 3), ("u", 3)]));
        assert_eq!(of(&a, "a", "t"), vec![0, 2]);
        assert_eq!(of(&a, "b", "t"), vec![1]);
        assert_eq!(of(&a, "a", "u"), vec![1]);
        assert_eq!(of(&a, "b", "u"), vec![0, 2]);
    }

    #[test]
    fn only_subscribers_get_a_topic() {
        let m = members(&[("a", &["t"]), ("b", &["u"])]);
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let a = assign(assignor, &m, &counts(&[("t", 2), ("u", 1), ("x", 5)]));
            assert_eq!(of(&a, "a", "t"), vec![0, 1], "{assignor:?}");
            assert_eq!(of(&a, "b", "u"), vec![0], "{assignor:?}");
            assert!(a.values().all(|m| !m.contains_key("x")));
        }
    }

    #[test]
    fn every_partition_assigned_exactly_once() {
        for n_members in 1..6 {
            let ids: Vec<String> = (0..n_members).map(|i| format!("m{i}")).collect();
            let spec: Vec<(&str, &[&str])> = ids
                .iter()
                .map(|id| (id.as_str(), &["t", "u"][..]))
                .collect();
            let m = members(&spec);
            let c = counts(&[("t", 7), ("u", 2)]);
            for assignor in [Assignor::Range, Assignor::RoundRobin] {
                let a = assign(assignor, &m, &c);
                for (topic, &n) in &c {
                    let mut all: Vec<i32> = a
                        .values()
                        .flat_map(|m| m.get(topic).cloned().unwrap_or_default())
                        .collect();
                    all.sort_unstable();
                    assert_eq!(all, (0..n).collect::<Vec<_>>(), "{assignor:?} {n_members}");
                }
            }
        }
    }

    #[test]
    fn protocol_names_round_trip() {
        for a in [Assignor::Range, Assignor::RoundRobin] {
            assert_eq!(Assignor::from_protocol_name(a.protocol_name()), Some(a));
        }
        assert_eq!(Assignor::from_protocol_name("sticky"), None);
    }
}
