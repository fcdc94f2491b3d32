//! Metadata requests: which brokers there are, and which of them leads each partition.
//! The group leader reads partition counts from it; the fetch path, the leaders.

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::conn::{Conn, ConnError};

/// What one Metadata answer said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClusterMetadata {
    /// Broker id -> `host:port`.
    pub(crate) brokers: BTreeMap<i32, String>,
    /// The topics asked for that the broker answered without error.
    pub(crate) topics: BTreeMap<String, TopicMetadata>,
    /// The topics asked for that came back with an error (unknown, unauthorized, ...).
    pub(crate) topic_errors: BTreeMap<String, ResponseError>,
}

/// One topic's partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TopicMetadata {
    /// Partition -> its leader, `None` while it has none (an election under way).
    pub(crate) leaders: BTreeMap<i32, Option<Leader>>,
}

/// A partition's leader, as the fetch path must name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leader {
    pub(crate) broker: i32,
    /// `-1` from brokers too old to say (Metadata v6 and older).
    pub(crate) epoch: i32,
}

/// Asks `conn` about `topics` (never creating them: a consumer must not, as
/// librdkafka's `allow.auto.create.topics=false`).
pub(crate) async fn cluster_metadata(
    conn: &mut Conn,
    topics: impl IntoIterator<Item = &str>,
) -> Result<ClusterMetadata, ConnError> {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(
            topics
                .into_iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.to_owned()))))
                })
                .collect(),
        ));
    let response = conn.send(&request).await?;
    let mut out = ClusterMetadata {
        brokers: response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect(),
        ..ClusterMetadata::default()
    };
    for topic in response.topics {
        let Some(name) = topic.name else { continue };
        let name = name.0.to_string();
        if let Some(e) = ResponseError::try_from_code(topic.error_code) {
            out.topic_errors.insert(name, e);
            continue;
        }
        let leaders = topic
            .partitions
            .iter()
            .map(|p| {
                // A partition error (LEADER_NOT_AVAILABLE, ...) or no leader id: the
                // leader is not known yet; the fetch path asks again later.
                // REPLICA_NOT_AVAILABLE only says a follower is down: the leader stands.
                let usable =
                    p.error_code == 0 || p.error_code == ResponseError::ReplicaNotAvailable.code();
                let leader = (usable && p.leader_id.0 >= 0).then_some(Leader {
                    broker: p.leader_id.0,
                    epoch: p.leader_epoch,
                });
                (p.partition_index, leader)
            })
            .collect();
        out.topics.insert(name, TopicMetadata { leaders });
    }
    Ok(out)
}
