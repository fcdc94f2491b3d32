//! The consumer protocol embedded in JoinGroup and SyncGroup: subscriptions and
//! assignments, each an `i16` version followed by the struct.
//!
//! Subscriptions are written as `ConsumerProtocolSubscription` v3, as librdkafka 2.12
//! (`rd_kafka_consumer_protocol_member_metadata_new` in `src/rdkafka_assignor.c` writes
//! version 3) and the Java client 3.5+ (`ConsumerProtocol.serializeSubscription` writes
//! `HIGHEST_SUPPORTED_VERSION`, 3) do: topics, user data, owned partitions (v1+), the
//! generation (v2+) and a null rack id (v3+). The user data is the Java
//! `CooperativeStickyAssignor`'s: one `i32`, the generation (`subscriptionUserData`,
//! schema `COOPERATIVE_STICKY_ASSIGNOR_USER_DATA_V0`). Why that one:
//! - librdkafka's leader never reads user data; it takes the owned partitions from the v1
//!   field and the generation from the v2 field only
//!   (`rd_kafka_group_MemberMetadata_consumer_read` in `src/rdkafka_cgrp.c`).
//! - a Java leader (`CooperativeStickyAssignor.memberData`) takes the v2 field when it is
//!   not negative, and otherwise reads the user data as one `i32`: on our first join
//!   (generation -1) librdkafka's layout would make it read the partition-array count as a
//!   generation, Java's layout gives it -1, the truth. A Java leader older than the v2
//!   field (it parses newer versions with its own, dropping appended fields) also gets our
//!   generation from the user data.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The assignment version we write; readers of newer versions only see appended fields.
const ASSIGNMENT_VERSION: i16 = 0;

/// The subscription version we write (see the module docs).
const SUBSCRIPTION_VERSION: i16 = 3;

/// What a member told the group in its JoinGroup metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemberMetadata {
    /// The topics it subscribes to.
    pub(crate) topics: Vec<String>,
    /// The partitions it owns now (v1+ field; for a v0 subscription, those of sticky
    /// user data, if it carries any).
    pub(crate) owned: Vec<(String, i32)>,
    /// The generation its owned partitions are from; `None` when unknown (negative on the
    /// wire, or not there at all).
    pub(crate) generation: Option<i32>,
}

/// Encodes a subscription to `topics` that owns `owned`, as of `generation` (-1 when
/// the member has none yet): v3, with Java's cooperative user data (see the module docs).
pub(crate) fn encode_member_metadata(
    topics: &[String],
    owned: &[(String, i32)],
    generation: i32,
) -> Result<Bytes, String> {
    // Owned partitions grouped by topic, both sorted, as the Java client writes them.
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in owned {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let owned_partitions = by_topic
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            partitions.dedup();
            OwnedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(Some(Bytes::copy_from_slice(&generation.to_be_bytes())))
        .with_owned_partitions(owned_partitions)
        .with_generation_id(generation)
        .with_rack_id(None);
    let mut buf = BytesMut::new();
    buf.put_i16(SUBSCRIPTION_VERSION);
    sub.encode(&mut buf, SUBSCRIPTION_VERSION)
        .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Decodes any member's subscription, ours, librdkafka's or Java's. A version newer than
/// we know is read as our newest (versions only append fields, and both real clients do
/// the same). The generation is the v2+ field when it is not negative; otherwise it
/// comes from the user data, as the Java `CooperativeStickyAssignor.memberData` takes
/// it (see `user_data_generation`).
pub(crate) fn decode_member_metadata(mut bytes: Bytes) -> Result<MemberMetadata, String> {
    if bytes.remaining() < 2 {
        return Err("subscription shorter than its version".into());
    }
    let version = bytes
        .get_i16()
        .min(ConsumerProtocolSubscription::VERSIONS.max);
    let sub =
        ConsumerProtocolSubscription::decode(&mut bytes, version).map_err(|e| e.to_string())?;
    let mut owned: Vec<(String, i32)> = sub
        .owned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect();
    let from_user_data = sub.user_data.map(user_data_generation);
    if version == 0 && owned.is_empty() {
        // No owned field: the previous assignment of sticky user data stands in, as
        // Java's `StickyAssignor.memberData` does for subscriptions without it.
        if let Some(Some((_, Some(previous)))) = &from_user_data {
            owned.clone_from(previous);
        }
    }
    let generation = if sub.generation_id >= 0 {
        Some(sub.generation_id)
    } else {
        from_user_data.and_then(|g| g.map(|(generation, _)| generation))
    };
    Ok(MemberMetadata {
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned,
        generation: generation.filter(|g| *g >= 0),
    })
}

/// A generation and, for sticky user data, the previous assignment it carries.
type UserDataGeneration = (i32, Option<Vec<(String, i32)>>);

/// The generation in a member's user data, `None` when it holds none:
/// - exactly 4 bytes: Java's cooperative user data, the generation
///   (`CooperativeStickyAssignor.subscriptionUserData`);
/// - the sticky layout, `[topic:string [partition:i32]] generation:i32` filling the data
///   exactly (librdkafka's `rd_kafka_sticky_assignor_get_metadata` in
///   `src/rdkafka_sticky_assignor.c`, Java's `StickyAssignor` user data v1): its
///   generation and previous assignment;
/// - anything else of 4 bytes or more: its first `i32`, since that is what a Java leader
///   reads (`COOPERATIVE_STICKY_ASSIGNOR_USER_DATA_V0.read`); shorter data is the
///   default generation -1 Java falls back to when that read fails, so none.
fn user_data_generation(data: Bytes) -> Option<UserDataGeneration> {
    if data.len() == 4 {
        return Some((data.clone().get_i32(), None));
    }
    if let Some((generation, previous)) = sticky_user_data(data.clone()) {
        return Some((generation, Some(previous)));
    }
    (data.len() >= 4).then(|| (data.clone().get_i32(), None))
}

/// Parses the sticky user data layout, which must fill `data` exactly.
fn sticky_user_data(mut data: Bytes) -> Option<(i32, Vec<(String, i32)>)> {
    let mut previous = Vec::new();
    let topics = read_len(&mut data, 4)?;
    for _ in 0..topics {
        let len = read_len(&mut data, 2)?;
        if data.remaining() < len {
            return None;
        }
        let topic = String::from_utf8(data.split_to(len).to_vec()).ok()?;
        let partitions = read_len(&mut data, 4)?;
        if data.remaining() < partitions.checked_mul(4)? {
            return None;
        }
        for _ in 0..partitions {
            previous.push((topic.clone(), data.get_i32()));
        }
    }
    (data.remaining() == 4).then(|| (data.get_i32(), previous))
}

/// Reads a non-negative length of `width` (2 or 4) bytes.
fn read_len(data: &mut Bytes, width: usize) -> Option<usize> {
    if data.remaining() < width {
        return None;
    }
    let len = if width == 2 {
        i32::from(data.get_i16())
    } else {
        data.get_i32()
    };
    usize::try_from(len).ok()
}

/// Encodes an assignment (topic -> partitions).
pub(crate) fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Result<Bytes, String> {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, p)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(p.clone())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(ASSIGNMENT_VERSION);
    assignment
        .encode(&mut buf, ASSIGNMENT_VERSION)
        .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Decodes an assignment; empty bytes (a member given nothing) are no partitions.
pub(crate) fn decode_assignment(mut bytes: Bytes) -> Result<Vec<(String, i32)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.remaining() < 2 {
        return Err("assignment shorter than its version".into());
    }
    let version = bytes
        .get_i16()
        .min(ConsumerProtocolAssignment::VERSIONS.max);
    let assignment =
        ConsumerProtocolAssignment::decode(&mut bytes, version).map_err(|e| e.to_string())?;
    Ok(assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect())
}
