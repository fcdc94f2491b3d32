//! The eager assignors, Kafka's `range` and `roundrobin`.

use std::collections::BTreeMap;

use super::{GroupAssignment, MemberSubscription};

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

pub(super) fn range(
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

pub(super) fn round_robin(
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
