//! Tests of the cooperative-sticky assignor: examples here, properties over random
//! groups in `sticky_props.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::super::{assign, Assignor};
use super::*;

type Members = Vec<(String, MemberMetadata)>;

fn meta(topics: &[&str], owned: &[(&str, i32)], generation: Option<i32>) -> MemberMetadata {
    MemberMetadata {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        generation,
    }
}

fn counts(spec: &[(&str, i32)]) -> BTreeMap<String, i32> {
    spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

/// Member -> its partitions, flattened.
fn flat(a: &GroupAssignment) -> BTreeMap<String, BTreeSet<(String, i32)>> {
    a.iter()
        .map(|(id, topics)| {
            let tps = topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect();
            (id.clone(), tps)
        })
        .collect()
}

fn of(a: &GroupAssignment, member: &str) -> BTreeSet<(String, i32)> {
    flat(a).remove(member).unwrap_or_default()
}

fn tps(spec: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
    spec.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

/// The target before withholding, flattened.
fn target(
    members: &Members,
    counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeSet<(String, i32)>> {
    Group::new(members, counts)
        .target()
        .into_iter()
        .map(|(id, p)| {
            (
                id.to_string(),
                p.into_iter().map(|(t, n)| (t.to_string(), n)).collect(),
            )
        })
        .collect()
}

/// Every partition a subscriber could get.
fn universe(members: &Members, counts: &BTreeMap<String, i32>) -> BTreeSet<(String, i32)> {
    counts
        .iter()
        .filter(|(t, _)| members.iter().any(|(_, m)| m.topics.contains(t)))
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect()
}

/// The members after applying `out`: each owns what it was given (having revoked the
/// rest), in a new generation.
fn apply(members: &Members, out: &GroupAssignment) -> Members {
    let generation = members
        .iter()
        .filter_map(|(_, m)| m.generation)
        .max()
        .unwrap_or(0)
        + 1;
    members
        .iter()
        .map(|(id, m)| {
            let owned = of(out, id).into_iter().collect();
            (
                id.clone(),
                MemberMetadata {
                    topics: m.topics.clone(),
                    owned,
                    generation: Some(generation),
                },
            )
        })
        .collect()
}

fn spread(loads: impl Iterator<Item = usize>) -> usize {
    let loads: Vec<usize> = loads.collect();
    loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0)
}

/// The rules every round obeys: partitions exist, go to subscribers, once; a partition
/// goes to a member only if no other member claims it, or its claim outranks every other;
/// a partition left out is claimed by someone (withheld); every member has an entry.
fn check_round(members: &Members, counts: &BTreeMap<String, i32>, out: &GroupAssignment) {
    let all = universe(members, counts);
    let mut seen = BTreeSet::new();
    let ids: BTreeSet<&String> = members.iter().map(|(id, _)| id).collect();
    assert_eq!(out.keys().collect::<BTreeSet<_>>(), ids);
    let generation = |m: &MemberMetadata| m.generation.unwrap_or(-1);
    for (id, tps) in flat(out) {
        let me = &members.iter().find(|(m, _)| *m == id).unwrap().1;
        for tp in tps {
            assert!(all.contains(&tp), "{tp:?} does not exist");
            assert!(
                me.topics.contains(&tp.0),
                "{id} does not subscribe to {tp:?}"
            );
            assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
            for (other, m) in members.iter().filter(|(o, _)| *o != id) {
                if m.owned.contains(&tp) {
                    assert!(
                        me.owned.contains(&tp),
                        "{id} got {tp:?}, still owned by {other}"
                    );
                    assert!(
                        generation(me) > generation(m),
                        "{id} outranked by {other} for {tp:?}"
                    );
                }
            }
        }
    }
    for tp in all.difference(&seen) {
        assert!(
            members.iter().any(|(_, m)| m.owned.contains(tp)),
            "{tp:?} left out"
        );
    }
}

#[test]
fn fresh_group_is_complete_and_balanced() {
    let members: Members = ["a", "b", "c"]
        .iter()
        .map(|id| (id.to_string(), meta(&["t", "u"], &[], None)))
        .collect();
    let c = counts(&[("t", 7), ("u", 3)]);
    let out = cooperative_sticky(&members, &c);
    check_round(&members, &c, &out);
    let loads: Vec<usize> = flat(&out).values().map(BTreeSet::len).collect();
    assert_eq!(loads.iter().sum::<usize>(), 10);
    assert_eq!(spread(loads.into_iter()), 1);
    assert_eq!(
        assign(
            Assignor::CooperativeSticky,
            &[("a".into(), meta(&["t"], &[], None))],
            &c
        )["a"]["t"],
        (0..7).collect::<Vec<_>>()
    );
}

#[test]
fn owners_keep_a_balanced_assignment() {
    let members: Members = vec![
        ("a".into(), meta(&["t"], &[("t", 0), ("t", 3)], Some(4))),
        ("b".into(), meta(&["t"], &[("t", 1), ("t", 4)], Some(4))),
        ("c".into(), meta(&["t"], &[("t", 2)], Some(4))),
    ];
    let out = cooperative_sticky(&members, &counts(&[("t", 5)]));
    assert_eq!(of(&out, "a"), tps(&[("t", 0), ("t", 3)]));
    assert_eq!(of(&out, "b"), tps(&[("t", 1), ("t", 4)]));
    assert_eq!(of(&out, "c"), tps(&[("t", 2)]));
}

/// 3 -> 4 members: each old member revokes one partition (the minimum) and keeps the
/// rest; the newcomer gets the three in the next round.
#[test]
fn join_moves_the_minimum_after_revocation() {
    let owned = |ps: &[i32]| ps.iter().map(|p| ("t", *p)).collect::<Vec<_>>();
    let mut members: Members = vec![
        ("a".into(), meta(&["t"], &owned(&[0, 1, 2, 3]), Some(2))),
        ("b".into(), meta(&["t"], &owned(&[4, 5, 6, 7]), Some(2))),
        ("c".into(), meta(&["t"], &owned(&[8, 9, 10, 11]), Some(2))),
        ("d".into(), meta(&["t"], &[], None)),
    ];
    let c = counts(&[("t", 12)]);
    let round1 = cooperative_sticky(&members, &c);
    check_round(&members, &c, &round1);
    assert!(of(&round1, "d").is_empty());
    for (id, m) in &members[..3] {
        let kept = of(&round1, id);
        assert_eq!(kept.len(), 3, "{id}");
        assert!(kept.iter().all(|tp| m.owned.contains(tp)), "{id}");
    }
    members = apply(&members, &round1);
    let round2 = cooperative_sticky(&members, &c);
    check_round(&members, &c, &round2);
    assert_eq!(of(&round2, "d").len(), 3);
    for id in ["a", "b", "c"] {
        assert_eq!(of(&round2, id), of(&round1, id));
    }
}

/// A member leaving: nobody claims its partitions any more, so they move at once.
#[test]
fn partitions_of_a_leaver_move_at_once() {
    let members: Members = vec![
        ("a".into(), meta(&["t"], &[("t", 0), ("t", 1)], Some(3))),
        ("b".into(), meta(&["t"], &[("t", 2), ("t", 3)], Some(3))),
    ];
    let out = cooperative_sticky(&members, &counts(&[("t", 6)]));
    assert_eq!(of(&out, "a").len() + of(&out, "b").len(), 6);
    assert!(of(&out, "a").is_superset(&tps(&[("t", 0), ("t", 1)])));
    assert!(of(&out, "b").is_superset(&tps(&[("t", 2), ("t", 3)])));
}

/// A stale claim (a member that missed a rebalance) loses to the higher generation.
#[test]
fn higher_generation_claim_wins() {
    let members: Members = vec![
        ("a".into(), meta(&["t"], &[("t", 0)], Some(5))),
        ("b".into(), meta(&["t"], &[("t", 0), ("t", 1)], Some(3))),
    ];
    let c = counts(&[("t", 2)]);
    let out = cooperative_sticky(&members, &c);
    check_round(&members, &c, &out);
    assert_eq!(of(&out, "a"), tps(&[("t", 0)]));
    assert_eq!(of(&out, "b"), tps(&[("t", 1)]));
}

/// Two claims in the same generation: nobody owns it, and it waits until both revoke.
#[test]
fn same_generation_conflict_waits_for_both_claimants() {
    let mut members: Members = vec![
        ("a".into(), meta(&["t"], &[("t", 0), ("t", 1)], Some(4))),
        ("b".into(), meta(&["t"], &[("t", 0), ("t", 2)], Some(4))),
        ("c".into(), meta(&["t"], &[], None)),
    ];
    let c = counts(&[("t", 3)]);
    let out = cooperative_sticky(&members, &c);
    check_round(&members, &c, &out);
    assert_eq!(of(&out, "a"), tps(&[("t", 1)]));
    assert_eq!(of(&out, "b"), tps(&[("t", 2)]));
    assert!(of(&out, "c").is_empty());
    members = apply(&members, &out);
    assert_eq!(of(&cooperative_sticky(&members, &c), "c"), tps(&[("t", 0)]));
}

/// Owned partitions of a topic no longer subscribed are dropped (handed over once
/// revoked); those of a vanished topic are simply forgotten.
#[test]
fn unsubscribed_and_vanished_topics_are_dropped() {
    let mut members: Members = vec![
        (
            "a".into(),
            meta(&["t"], &[("t", 0), ("u", 0), ("gone", 0)], Some(2)),
        ),
        ("b".into(), meta(&["u"], &[], Some(2))),
    ];
    let c = counts(&[("t", 1), ("u", 1)]);
    let out = cooperative_sticky(&members, &c);
    check_round(&members, &c, &out);
    assert_eq!(of(&out, "a"), tps(&[("t", 0)]));
    assert!(of(&out, "b").is_empty());
    members = apply(&members, &out);
    assert_eq!(of(&cooperative_sticky(&members, &c), "b"), tps(&[("u", 0)]));
}

#[test]
fn only_cooperative_sticky_is_cooperative() {
    assert!(Assignor::CooperativeSticky.is_cooperative());
    assert!(!Assignor::Range.is_cooperative() && !Assignor::RoundRobin.is_cooperative());
    let name = Assignor::CooperativeSticky.protocol_name();
    assert_eq!(name, "cooperative-sticky");
    assert_eq!(
        Assignor::from_protocol_name(name),
        Some(Assignor::CooperativeSticky)
    );
}

/// A large group: 3 members own 600 partitions, 17 join; it stays quick, balanced, and
/// moves the minimum.
#[test]
fn large_join_is_balanced_and_minimal() {
    let owned: Vec<Vec<(&str, i32)>> = (0..3)
        .map(|m| (0..600).filter(|p| p % 3 == m).map(|p| ("t", p)).collect())
        .collect();
    let members: Members = (0..20)
        .map(|i| {
            let owned = owned.get(i).map_or(&[][..], Vec::as_slice);
            (format!("m{i:02}"), meta(&["t"], owned, Some(9)))
        })
        .collect();
    let c = counts(&[("t", 600)]);
    let plan = target(&members, &c);
    assert!(plan.values().all(|p| p.len() == 30));
    let out = cooperative_sticky(&members, &c);
    check_round(&members, &c, &out);
    assert_eq!(flat(&out).values().map(BTreeSet::len).sum::<usize>(), 90);
}

#[path = "sticky_props.rs"]
mod props;
