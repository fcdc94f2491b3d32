//! One rebalance round: JoinGroup (with the member-id handshake), the leader's
//! assignment, SyncGroup.

use std::collections::BTreeMap;

use kafka_protocol::messages::join_group_response::JoinGroupResponse;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::SyncGroupRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::TopicPartition;
use tracing::debug;

use super::assignor::{assign, Assignor, MemberSubscription};
use super::conn::Conn;
use super::coordinator::{check, GroupError};
use super::membership::{join_request, protocol, Member};
use super::offsets::CommitIdentity;
use super::protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};

const JOIN_GROUP_VERSION: i16 = 5;
const SYNC_GROUP_VERSION: i16 = 3;

/// Joins and syncs; on success the member's generation, id and partitions.
pub(super) async fn join_and_sync(
    m: &mut Member,
) -> Result<(CommitIdentity, Vec<TopicPartition>), GroupError> {
    let mut conn = m.take_conn().await?;
    let result = round(m, &mut conn).await;
    m.put_back(conn, &result);
    result
}

async fn round(
    m: &mut Member,
    conn: &mut Conn,
) -> Result<(CommitIdentity, Vec<TopicPartition>), GroupError> {
    let subscription = encode_subscription(&m.settings.topics).map_err(GroupError::Invalid)?;
    let preferred = m.settings.assignor;
    let protocols = [preferred, Assignor::Range, Assignor::RoundRobin]
        .into_iter()
        .enumerate()
        .filter(|(i, a)| *i == 0 || *a != preferred)
        .map(|(_, a)| protocol(a.protocol_name(), subscription.clone()))
        .collect::<Vec<_>>();
    conn.set_request_timeout(m.settings.rebalance_timeout + m.settings.connect_timeout);
    let mut handshakes = 0;
    let joined = loop {
        let request = join_request(m, protocols.clone());
        let response = conn.send(&request, JOIN_GROUP_VERSION).await?;
        match ResponseError::try_from_code(response.error_code) {
            None => break response,
            Some(ResponseError::MemberIdRequired) if handshakes < 3 => {
                handshakes += 1;
                m.member_id = response.member_id.to_string();
                debug!(member = %m.member_id, "the coordinator gave us a member id");
            }
            Some(error) => {
                return Err(GroupError::Broker {
                    request: "JoinGroup",
                    error,
                })
            }
        }
    };
    m.member_id = joined.member_id.to_string();
    let generation = joined.generation_id;
    let assignments = if joined.leader == joined.member_id {
        leader_assignments(m, &joined).await?
    } else {
        Vec::new()
    };
    let request = SyncGroupRequest::default()
        .with_group_id(m.group_id())
        .with_generation_id(generation)
        .with_member_id(joined.member_id.clone())
        .with_assignments(assignments);
    let synced = conn.send(&request, SYNC_GROUP_VERSION).await?;
    check("SyncGroup", synced.error_code)?;
    let mut partitions: Vec<TopicPartition> = decode_assignment(synced.assignment)
        .map_err(GroupError::Invalid)?
        .into_iter()
        .filter(|(topic, _)| m.settings.topics.contains(topic))
        .map(|(topic, p)| TopicPartition::new(topic, p))
        .collect();
    partitions.sort();
    partitions.dedup();
    let identity = CommitIdentity {
        generation,
        member_id: m.member_id.clone(),
    };
    Ok((identity, partitions))
}

/// The leader shares the subscribed topics' partitions among the members.
async fn leader_assignments(
    m: &Member,
    joined: &JoinGroupResponse,
) -> Result<Vec<SyncGroupRequestAssignment>, GroupError> {
    let assignor = joined
        .protocol_name
        .as_deref()
        .and_then(Assignor::from_protocol_name)
        .unwrap_or(m.settings.assignor);
    let mut members: Vec<MemberSubscription> = Vec::with_capacity(joined.members.len());
    for member in &joined.members {
        let topics = decode_subscription(member.metadata.clone()).map_err(GroupError::Invalid)?;
        members.push((member.member_id.to_string(), topics));
    }
    let wanted: Vec<&String> = members.iter().flat_map(|(_, t)| t).collect();
    let topics = m
        .client
        .list_topics()
        .await
        .map_err(|e| GroupError::Invalid(format!("listing topics for the assignment: {e}")))?;
    let counts: BTreeMap<String, i32> = topics
        .into_iter()
        .filter(|t| wanted.contains(&&t.name))
        .map(|t| {
            let n = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            (t.name, n)
        })
        .collect();
    let plan = assign(assignor, &members, &counts);
    debug!(?assignor, ?plan, "leader assignment");
    plan.iter()
        .map(|(member_id, partitions)| {
            let bytes = encode_assignment(partitions).map_err(GroupError::Invalid)?;
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_assignment(bytes))
        })
        .collect()
}
