//! The client-side partition assignors the group leader runs: Kafka's `range` and
//! `roundrobin`.

use std::collections::BTreeMap;

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
}

impl Assignor {
    /// The protocol name members advertise in JoinGroup.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// The assignor named `name`, if it is one of ours.
    pub fn from_protocol_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }
}

/// A member's id and the topics it subscribes to.
pub(crate) type MemberSubscription = (String, Vec<String>);

/// Topic -> partitions, per member id.
pub(crate) type GroupAssignment = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// Shares the partitions of `partition_counts` (topic -> number of partitions) among
/// `members`. Every member gets an entry, possibly empty; topics nobody subscribes to,
/// or that are missing from `partition_counts`, are not assigned.
pub(crate) fn assign(
    assignor: Assignor,
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let mut out: GroupAssignment = members
        .iter()
        .map(|(id, _)| (id.clone(), BTreeMap::new()))
        .collect();
    match assignor {
        Assignor::Range => range(members, partition_counts, &mut out),
        Assignor::RoundRobin => round_robin(members, partition_counts, &mut out),
    }
    out
}

fn subscribers<'a>(members: &'a [MemberSubscription], topic: &str) -> Vec<&'a str> {
    let mut ids: Vec<&str> = members
        .iter()
        .filter(|(_, topics)| topics.iter().any(|t| t == topic))
        .map(|(id, _)| id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn range(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
    out: &mut GroupAssignment,
) {
    for (topic, &count) in partition_counts {
        let ids = subscribers(members, topic);
        if ids.is_empty() || count <= 0 {
            continue;
        }
        let n = i32::try_from(ids.len()).unwrap_or(i32::MAX);
        let (per_member, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, id) in (0..).zip(ids) {
            let take = per_member + i32::from(i < extra);
            let partitions: Vec<i32> = (next..next + take).collect();
            next += take;
            if !partitions.is_empty() {
                if let Some(m) = out.get_mut(id) {
                    m.insert(topic.clone(), partitions);
                }
            }
        }
    }
}

fn round_robin(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
    out: &mut GroupAssignment,
) {
    let mut ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let mut turn = 0_usize;
    for (topic, &count) in partition_counts {
        let subs = subscribers(members, topic);
        if subs.is_empty() {
            continue;
        }
        for partition in 0..count {
            // The next member in turn that subscribes to this topic.
            while !subs.contains(&ids[turn % ids.len()]) {
                turn += 1;
            }
            let id = ids[turn % ids.len()];
            turn += 1;
            if let Some(m) = out.get_mut(id) {
                m.entry(topic.clone()).or_default().push(partition);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, &[&str])]) -> Vec<MemberSubscription> {
        spec.iter()
            .map(|(id, t)| (id.to_string(), t.iter().map(|s| s.to_string()).collect()))
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
            let m: Vec<MemberSubscription> = ids
                .iter()
                .map(|id| (id.clone(), vec!["t".into(), "u".into()]))
                .collect();
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
