//! Properties of the cooperative-sticky assignor over random groups, including
//! rebalances played over several rounds.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const TOPICS: [&str; 3] = ["a", "b", "c"];

/// Random groups: members subscribing to the same topics or not, owning random
/// partitions (of existing topics or not) in random generations.
fn group(uniform: bool) -> impl Strategy<Value = (Members, BTreeMap<String, i32>)> {
    let topics = proptest::sample::subsequence(TOPICS.to_vec(), 1..=3);
    let owned = proptest::collection::vec(
        (
            proptest::sample::select(vec!["a", "b", "c", "d"]),
            0..10_i32,
        ),
        0..8,
    );
    let member = (topics.clone(), owned, proptest::option::of(0..4_i32));
    let counts = proptest::collection::btree_map(
        proptest::sample::select(TOPICS.to_vec()),
        0..10_i32,
        0..=3,
    );
    (proptest::collection::vec(member, 1..=6), topics, counts).prop_map(
        move |(ms, shared, counts)| {
            let members = ms
                .into_iter()
                .enumerate()
                .map(|(i, (topics, owned, generation))| {
                    let topics = if uniform { shared.clone() } else { topics };
                    (format!("m{i}"), meta(&topics, &owned, generation))
                })
                .collect();
            (
                members,
                counts
                    .into_iter()
                    .map(|(t, n)| (t.to_string(), n))
                    .collect(),
            )
        },
    )
}

/// The most owned partitions a balanced assignment of identical subscriptions can keep.
fn most_kept(members: &Members, counts: &BTreeMap<String, i32>) -> usize {
    let group = Group::new(members, counts);
    let (p, n) = (group.candidates.len(), group.subscriptions.len());
    let (min_quota, extra) = (p / n, p % n);
    let owned: Vec<usize> = group
        .subscriptions
        .keys()
        .map(|id| group.owners.values().filter(|o| *o == id).count())
        .collect();
    let over = owned.iter().filter(|o| **o > min_quota).count();
    owned.iter().map(|o| (*o).min(min_quota)).sum::<usize>() + extra.min(over)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn rounds_follow_the_rules((members, counts) in prop_oneof![group(true), group(false)]) {
        let out = cooperative_sticky(&members, &counts);
        check_round(&members, &counts, &out);
        prop_assert_eq!(&cooperative_sticky(&members, &counts), &out);
        let reversed: Members = members.iter().rev().cloned().collect();
        prop_assert_eq!(&cooperative_sticky(&reversed, &counts), &out);
    }

    #[test]
    fn identical_subscriptions_balance_and_stick((members, counts) in group(true)) {
        let plan = target(&members, &counts);
        prop_assert!(spread(plan.values().map(BTreeSet::len)) <= 1);
        let owners = Group::new(&members, &counts).owners;
        let kept: usize = plan
            .iter()
            .map(|(id, tps)| tps.iter().filter(|(t, p)| owners.get(&(t.as_str(), *p)) == Some(&id.as_str())).count())
            .sum();
        prop_assert_eq!(kept, most_kept(&members, &counts));
    }

    /// Round 1 withholds what changes owner; once its owners revoked it, round 2 hands it
    /// over: everything assigned, balanced for identical subscriptions, nothing revoked.
    #[test]
    fn two_rounds_complete_the_rebalance((members, counts) in group(true)) {
        let round1 = cooperative_sticky(&members, &counts);
        let members = apply(&members, &round1);
        let round2 = cooperative_sticky(&members, &counts);
        check_round(&members, &counts, &round2);
        let given: BTreeSet<_> = flat(&round2).into_values().flatten().collect();
        prop_assert_eq!(given, universe(&members, &counts));
        prop_assert!(spread(flat(&round2).values().map(BTreeSet::len)) <= 1);
        for (id, tps) in flat(&round1) {
            prop_assert!(of(&round2, &id).is_superset(&tps), "{} revoked in round 2", id);
        }
    }

    /// Different subscriptions: every round follows the rules and a few complete it.
    #[test]
    fn mixed_subscriptions_converge((mut members, counts) in group(false)) {
        let all = universe(&members, &counts);
        for _ in 0..3 {
            let out = cooperative_sticky(&members, &counts);
            check_round(&members, &counts, &out);
            members = apply(&members, &out);
        }
        let out = cooperative_sticky(&members, &counts);
        let given: BTreeSet<_> = flat(&out).into_values().flatten().collect();
        prop_assert_eq!(given, all);
    }

    /// 3 -> 4 members: old members revoke only what moves, exactly the minimum, and the
    /// newcomer gets it in the next round.
    #[test]
    fn a_join_moves_the_minimum((members, counts) in group(true)) {
        let mut members: Members = members
            .into_iter()
            .take(3)
            .map(|(id, m)| (id, MemberMetadata { owned: Vec::new(), generation: None, ..m }))
            .collect();
        let settled = cooperative_sticky(&members, &counts);
        members = apply(&members, &settled);
        let topics = members[0].1.topics.iter().map(String::as_str).collect::<Vec<_>>();
        members.push(("new".into(), meta(&topics, &[], None)));
        let minimum = universe(&members, &counts).len() - most_kept(&members, &counts);
        let round1 = cooperative_sticky(&members, &counts);
        check_round(&members, &counts, &round1);
        let mut revoked = 0;
        for (id, m) in &members[..members.len() - 1] {
            let kept = of(&round1, id);
            prop_assert!(kept.iter().all(|tp| m.owned.contains(tp)));
            revoked += m.owned.len() - kept.len();
        }
        prop_assert_eq!(revoked, minimum);
        members = apply(&members, &round1);
        let round2 = cooperative_sticky(&members, &counts);
        prop_assert_eq!(of(&round2, "new").len(), minimum);
    }
}
