//! KIP-429's `cooperative-sticky` assignor, with the rules of Java's
//! `CooperativeStickyAssignor` / `AbstractStickyAssignor` and librdkafka's
//! `rdkafka_sticky_assignor.c`, in an algorithm of our own:
//!
//! 1. Ownership. Claims of partitions that no longer exist are dropped. A partition
//!    claimed by several members belongs to the claim of the highest generation; when
//!    several claims share that highest generation, nobody owns it (Java's
//!    `allSubscriptionsEqual`: "claiming the same TopicPartition ... in the same
//!    generation ... will be invalidated"; librdkafka 2.12's
//!    `prepopulateCurrentAssignments` too, though it also drops a partition when two
//!    claims below the highest tie: we follow Java there). A lower-generation claim
//!    nobody outranks stands, as in both (a member without a generation counts as
//!    generation -1, Java's `DEFAULT_GENERATION` and librdkafka's default). An owner that
//!    no longer subscribes to the topic keeps the partition only until it revokes it:
//!    the target gives it to a subscriber, and step 3 withholds it meanwhile.
//! 2. Target. Members keep what they own; unowned partitions go, those with the fewest
//!    candidate members first, to the least-loaded subscriber; then, while some member
//!    has a partition a subscriber with at least two fewer partitions could take, the
//!    most-loaded such member gives one up, preferring partitions it does not own yet (so
//!    no revocation) to ones it owns. Every move shrinks the sum of squared loads, so
//!    this ends, and with identical subscriptions it ends with loads differing by at
//!    most one.
//! 3. Cooperation. A partition of the target whose new member is not its owner, while
//!    another member still claims it, is withheld this round (Java's `adjustAssignment`
//!    of the partitions "transferring ownership"): the claimants, not finding it in
//!    their assignment, revoke it and rejoin, and the next rebalance gives it away.
//!    Withholding on any other claim, not only the standing one, means nobody is ever
//!    assigned a partition another member may still consume.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::GroupAssignment;
use crate::group::protocol::MemberMetadata;

/// A topic partition.
type Tp<'a> = (&'a str, i32);

/// Member id -> the partitions it gets.
type Plan<'a> = BTreeMap<&'a str, BTreeSet<Tp<'a>>>;

/// Shares the partitions of `partition_counts` (topic -> number of partitions) among
/// `members` (member id, metadata), keeping partitions with their owners where balance
/// allows and withholding those that change owner until their owner has revoked them
/// (see the module docs). Every member gets an entry, possibly empty. The same input
/// always gives the same output.
pub(crate) fn cooperative_sticky(
    members: &[(String, MemberMetadata)],
    partition_counts: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let group = Group::new(members, partition_counts);
    group
        .target()
        .into_iter()
        .map(|(id, partitions)| {
            let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for tp in partitions
                .into_iter()
                .filter(|tp| !group.must_wait(*tp, id))
            {
                topics.entry(tp.0.to_string()).or_default().push(tp.1);
            }
            (id.to_string(), topics)
        })
        .collect()
}

/// The assignor's view of the group.
struct Group<'a> {
    /// Member id -> the topics it subscribes to.
    subscriptions: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Every partition to assign -> the members subscribing to its topic, by id.
    candidates: BTreeMap<Tp<'a>, Vec<&'a str>>,
    /// Partition -> every member claiming it, whatever its generation or subscription.
    claimants: BTreeMap<Tp<'a>, BTreeSet<&'a str>>,
    /// Partition -> the member whose claim stands (subscribing to its topic or not).
    owners: BTreeMap<Tp<'a>, &'a str>,
}

impl<'a> Group<'a> {
    fn new(
        members: &'a [(String, MemberMetadata)],
        partition_counts: &'a BTreeMap<String, i32>,
    ) -> Self {
        let mut metadata: BTreeMap<&str, &MemberMetadata> = BTreeMap::new();
        for (id, m) in members {
            // A JoinGroup response lists each member once; were one repeated, the first
            // would stand.
            metadata.entry(id.as_str()).or_insert(m);
        }
        let subscriptions: BTreeMap<&str, BTreeSet<&str>> = metadata
            .iter()
            .map(|(id, m)| (*id, m.topics.iter().map(String::as_str).collect()))
            .collect();
        let mut candidates = BTreeMap::new();
        for (topic, &count) in partition_counts {
            let ids: Vec<&str> = subscriptions
                .iter()
                .filter(|(_, topics)| topics.contains(topic.as_str()))
                .map(|(id, _)| *id)
                .collect();
            if !ids.is_empty() {
                for partition in 0..count {
                    candidates.insert((topic.as_str(), partition), ids.clone());
                }
            }
        }
        let mut claimants: BTreeMap<Tp, BTreeSet<&str>> = BTreeMap::new();
        // Partition -> the highest generation claiming it, and its claimants.
        let mut best: BTreeMap<Tp, (i32, BTreeSet<&str>)> = BTreeMap::new();
        for (id, m) in &metadata {
            let generation = m.generation.unwrap_or(-1);
            for (topic, partition) in &m.owned {
                let tp = (topic.as_str(), *partition);
                let Some((&tp, _)) = candidates.get_key_value(&tp) else {
                    continue;
                };
                claimants.entry(tp).or_default().insert(*id);
                match best.get_mut(&tp) {
                    Some((g, _)) if *g > generation => {}
                    Some((g, ids)) if *g == generation => {
                        ids.insert(*id);
                    }
                    _ => {
                        best.insert(tp, (generation, BTreeSet::from([*id])));
                    }
                }
            }
        }
        let owners = best
            .into_iter()
            .filter_map(|(tp, (_, ids))| {
                let mut ids = ids.into_iter();
                match (ids.next(), ids.next()) {
                    (Some(id), None) => Some((tp, id)),
                    _ => None,
                }
            })
            .collect();
        Group {
            subscriptions,
            candidates,
            claimants,
            owners,
        }
    }

    /// The assignment to reach, before withholding (step 2 of the module docs).
    fn target(&self) -> Plan<'a> {
        let mut plan: Plan = self
            .subscriptions
            .keys()
            .map(|id| (*id, BTreeSet::new()))
            .collect();
        for (tp, id) in &self.owners {
            if self.subscriptions.get(id).is_some_and(|t| t.contains(tp.0)) {
                if let Some(partitions) = plan.get_mut(id) {
                    partitions.insert(*tp);
                }
            }
        }
        let kept: BTreeSet<&Tp> = plan.values().flatten().collect();
        let mut free: Vec<(&Tp, &Vec<&str>)> = self
            .candidates
            .iter()
            .filter(|(tp, _)| !kept.contains(tp))
            .collect();
        free.sort_by_key(|(tp, ids)| (ids.len(), **tp));
        for (tp, ids) in free {
            if let Some(id) = least_loaded(&plan, ids, usize::MAX) {
                if let Some(partitions) = plan.get_mut(id) {
                    partitions.insert(*tp);
                }
            }
        }
        while let Some((tp, from, to)) = self.next_move(&plan) {
            if let Some(partitions) = plan.get_mut(from) {
                partitions.remove(&tp);
            }
            if let Some(partitions) = plan.get_mut(to) {
                partitions.insert(tp);
            }
        }
        plan
    }

    /// The next move evening out `plan`: from the most-loaded member that can give a
    /// partition to a candidate with at least two fewer, a partition it does not own
    /// if it can, to the least-loaded such candidate.
    fn next_move(&self, plan: &Plan<'a>) -> Option<(Tp<'a>, &'a str, &'a str)> {
        let mut donors: Vec<(&str, &BTreeSet<Tp>)> = plan.iter().map(|(id, p)| (*id, p)).collect();
        donors.sort_by_key(|(id, partitions)| (Reverse(partitions.len()), *id));
        let lightest = donors.last().map_or(0, |(_, partitions)| partitions.len());
        for (from, partitions) in donors {
            let load = partitions.len();
            if load < lightest + 2 {
                break;
            }
            let (owned, fresh): (Vec<&Tp>, Vec<&Tp>) = partitions
                .iter()
                .partition(|tp| self.owners.get(*tp) == Some(&from));
            for tp in fresh.into_iter().chain(owned) {
                let ids = self.candidates.get(tp).map_or(&[][..], Vec::as_slice);
                if let Some(to) = least_loaded(plan, ids, load - 1) {
                    return Some((*tp, from, to));
                }
            }
        }
        None
    }

    /// Whether `tp`, planned for member `id`, must wait for another member to revoke it
    /// (step 3 of the module docs).
    fn must_wait(&self, tp: Tp, id: &str) -> bool {
        self.owners.get(&tp) != Some(&id)
            && self
                .claimants
                .get(&tp)
                .is_some_and(|ids| ids.iter().any(|other| *other != id))
    }
}

/// Among `ids`, the member with the fewest partitions in `plan`, if fewer than `below`
/// (ties to the smallest id).
fn least_loaded<'a>(plan: &Plan<'a>, ids: &[&'a str], below: usize) -> Option<&'a str> {
    ids.iter()
        .map(|id| (plan.get(id).map_or(0, BTreeSet::len), *id))
        .filter(|(load, _)| *load < below)
        .min()
        .map(|(_, id)| id)
}

#[cfg(test)]
#[path = "sticky_tests.rs"]
mod tests;
