//! One rebalance round: JoinGroup (with the member-id handshake), the leader's
//! assignment, SyncGroup.

use std::collections::BTreeSet;

use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{JoinGroupRequest, SyncGroupRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::TopicPartition;
use tracing::debug;

use super::answers::JoinGroupAnswer;
use super::assignor::{assign, Assignor};
use super::control::CommitIdentity;
use super::coordinator::{check, GroupError};
use super::member::Member;
use super::metadata_watch::{partition_counts, MetadataWatch};
use super::protocol::{
    decode_assignment, decode_member_metadata, encode_assignment, encode_member_metadata,
    MemberMetadata,
};
use crate::wire::conn::Conn;

/// JoinGroup carries `group.instance.id` from v5, SyncGroup from v3 (Kafka 2.3).
const STATIC_JOIN_VERSION: i16 = 5;
const STATIC_SYNC_VERSION: i16 = 3;

/// A completed rebalance round.
pub(super) struct Joined {
    /// The member's generation and id, for commits.
    pub(super) identity: CommitIdentity,
    /// The partitions this member was given: its whole assignment.
    pub(super) partitions: Vec<TopicPartition>,
    /// Whether the group runs the cooperative protocol (KIP-429): the member keeps
    /// what it still owns across rebalances.
    pub(super) cooperative: bool,
    /// The leader's watch on the metadata it assigned from; `None` for followers.
    pub(super) watch: Option<MetadataWatch>,
}

/// Joins and syncs.
pub(super) async fn join_and_sync(m: &mut Member) -> Result<Joined, GroupError> {
    let mut conn = m.take_conn().await?;
    let result = round(m, &mut conn).await;
    m.put_back(conn, &result);
    result
}

async fn round(m: &mut Member, conn: &mut Conn) -> Result<Joined, GroupError> {
    let preferred = m.settings.assignor;
    // Only a cooperative member rejoins owning partitions; an eager one gave them all
    // up, and says nothing of a generation (its metadata stays the same across joins).
    let (owned, owned_generation): (Vec<(String, i32)>, i32) = if preferred.is_cooperative() {
        let owned = m
            .owned
            .iter()
            .map(|tp| (tp.topic().to_owned(), tp.partition()))
            .collect();
        (owned, m.owned_generation)
    } else {
        (Vec::new(), -1)
    };
    let subscription = encode_member_metadata(&m.settings.topics, &owned, owned_generation)
        .map_err(GroupError::Invalid)?;
    // A cooperative member offers only its own protocol: a group whose members agree
    // on an eager one would revoke everything, which the cooperative member does not
    // do (librdkafka refuses to mix the two kinds in one member likewise).
    let offered: &[Assignor] = if preferred.is_cooperative() {
        &[Assignor::CooperativeSticky]
    } else {
        &[preferred, Assignor::Range, Assignor::RoundRobin]
    };
    let protocols = offered
        .iter()
        .enumerate()
        .filter(|(i, a)| *i == 0 || **a != preferred)
        .map(|(_, a)| protocol(a.protocol_name(), subscription.clone()))
        .collect::<Vec<_>>();
    conn.set_request_timeout(m.settings.rebalance_timeout + m.settings.connect_timeout);
    let join_version = conn.version::<JoinGroupRequest>()?;
    let sync_version = conn.version::<SyncGroupRequest>()?;
    let instance = m.instance_id();
    if instance.is_some()
        && (join_version < STATIC_JOIN_VERSION || sync_version < STATIC_SYNC_VERSION)
    {
        return Err(GroupError::StaticMembershipUnsupported {
            join_version,
            sync_version,
        });
    }
    let mut handshakes = 0;
    let joined = loop {
        let request = join_request(m, protocols.clone()).with_group_instance_id(instance.clone());
        let response = conn.send_at(&request, join_version).await?;
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
    m.member_id.clone_from(&joined.member_id);
    let generation = joined.generation_id;
    if m.stale_generation.take() == Some(generation) {
        return Err(GroupError::KeptGeneration { generation });
    }
    let chosen = joined
        .protocol_name
        .as_deref()
        .and_then(Assignor::from_protocol_name)
        .unwrap_or(preferred);
    debug!(generation, leader = %joined.leader, member = %m.member_id, members = joined.members.len(), "JoinGroup answered");
    let (assignments, watch) = if joined.leader == joined.member_id {
        let (assignments, watch) = leader_assignments(m, &joined, chosen).await?;
        (assignments, Some(watch))
    } else {
        (Vec::new(), None)
    };
    let request = SyncGroupRequest::default()
        .with_group_id(m.group_id())
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(joined.member_id.clone()))
        .with_group_instance_id(instance)
        .with_assignments(assignments);
    let synced = conn.send_at(&request, sync_version).await?;
    if let Err(e) = check("SyncGroup", synced.error_code) {
        if e.code() == Some(ResponseError::RebalanceInProgress) {
            // The rejoin must bring a newer generation than the one refused here.
            m.stale_generation = Some(generation);
        }
        return Err(e);
    }
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
    Ok(Joined {
        identity,
        partitions,
        cooperative: chosen.is_cooperative(),
        watch,
    })
}

/// The leader shares the subscribed topics' partitions among the members, and starts
/// watching the metadata it shared them from.
async fn leader_assignments(
    m: &Member,
    joined: &JoinGroupAnswer,
    assignor: Assignor,
) -> Result<(Vec<SyncGroupRequestAssignment>, MetadataWatch), GroupError> {
    let mut members: Vec<(String, MemberMetadata)> = Vec::with_capacity(joined.members.len());
    for member in &joined.members {
        let metadata =
            decode_member_metadata(member.metadata.clone()).map_err(GroupError::Invalid)?;
        members.push((member.member_id.clone(), metadata));
    }
    let wanted: BTreeSet<String> = members
        .iter()
        .flat_map(|(_, m)| &m.topics)
        .cloned()
        .collect();
    let counts = partition_counts(&m.control, &wanted).await?;
    let plan = assign(assignor, &members, &counts);
    debug!(?assignor, ?plan, "leader assignment");
    let assignments = plan
        .iter()
        .map(|(member_id, partitions)| {
            let bytes = encode_assignment(partitions).map_err(GroupError::Invalid)?;
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_assignment(bytes))
        })
        .collect::<Result<_, GroupError>>()?;
    let watch = MetadataWatch::new(wanted, counts, m.settings.metadata_max_age);
    Ok((assignments, watch))
}

/// A protocol entry for JoinGroup.
fn protocol(name: &'static str, metadata: bytes::Bytes) -> JoinGroupRequestProtocol {
    JoinGroupRequestProtocol::default()
        .with_name(StrBytes::from_static_str(name))
        .with_metadata(metadata)
}

/// A JoinGroup request for the member's current id.
fn join_request(m: &Member, protocols: Vec<JoinGroupRequestProtocol>) -> JoinGroupRequest {
    let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    JoinGroupRequest::default()
        .with_group_id(m.group_id())
        .with_session_timeout_ms(millis(m.settings.session_timeout))
        .with_rebalance_timeout_ms(millis(m.settings.rebalance_timeout))
        .with_member_id(StrBytes::from_string(m.member_id.clone()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(protocols)
}
