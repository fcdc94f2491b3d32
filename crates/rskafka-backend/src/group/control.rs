//! The source's control connection, to the group coordinator: committed offsets
//! (OffsetFetch, OffsetCommit) and the fetch path's Metadata requests. It is not the
//! membership connection, where a JoinGroup may be held for seconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use ktm_core::{Offsets, TopicPartition};
use tracing::debug;

use super::coordinator::{check, connect_coordinator, GroupError, GroupSettings};
use crate::wire::conn::Conn;
use crate::wire::{cluster_metadata, ClusterMetadata};

/// The group's generation and this member's id, as commits must carry them
/// (`-1` and `""` outside group membership).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommitIdentity {
    pub(crate) generation: i32,
    pub(crate) member_id: String,
}

/// The control client as the source, the member and the fetch path share it (on the
/// I/O thread only).
pub(crate) type SharedControl = Arc<tokio::sync::Mutex<ControlClient>>;

/// A lazily connected coordinator connection for offsets and metadata.
#[derive(Debug)]
pub(crate) struct ControlClient {
    settings: Arc<GroupSettings>,
    conn: Option<Conn>,
}

impl ControlClient {
    pub(crate) fn new(settings: Arc<GroupSettings>) -> Self {
        Self {
            settings,
            conn: None,
        }
    }

    /// Takes the connection out for one request; a request dropped half-way (the
    /// caller's future was cancelled) thus drops the connection rather than leaving a
    /// stray response on it.
    async fn take_conn(&mut self) -> Result<Conn, GroupError> {
        match self.conn.take() {
            Some(c) => Ok(c),
            None => connect_coordinator(&self.settings).await,
        }
    }

    fn put_back(&mut self, conn: Conn, result: &Result<(), GroupError>) {
        match result {
            Err(e) if e.needs_rediscovery() => {
                debug!(error = %e, "dropping the offsets connection")
            }
            _ => self.conn = Some(conn),
        }
    }

    /// What the cluster says about `topics`: their partitions' leaders, the brokers.
    pub(crate) async fn metadata(
        &mut self,
        topics: impl IntoIterator<Item = &str>,
    ) -> Result<ClusterMetadata, GroupError> {
        let mut conn = self.take_conn().await?;
        let result = cluster_metadata(&mut conn, topics)
            .await
            .map_err(GroupError::from);
        match &result {
            Ok(_) => self.conn = Some(conn),
            // Any error here is the connection's (the answer has no error of its own
            // that a new connection would not fix).
            Err(e) => debug!(error = %e, "dropping the control connection"),
        }
        result
    }

    /// The committed position of each partition; `None` when the group has none.
    pub(crate) async fn fetch(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, GroupError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(tp.topic()).or_default().push(tp.partition());
        }
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(
                self.settings.group_id.clone(),
            )))
            .with_topics(Some(
                by_topic
                    .into_iter()
                    .map(|(topic, p)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partition_indexes(p)
                    })
                    .collect(),
            ));
        let mut conn = self.take_conn().await?;
        let response = conn.send(&request).await;
        let mut out = BTreeMap::new();
        let result = response.map_err(GroupError::from).and_then(|r| {
            check("OffsetFetch", r.error_code)?;
            for t in &r.topics {
                for p in &t.partitions {
                    check("OffsetFetch", p.error_code)?;
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    let committed = (p.committed_offset >= 0).then_some(p.committed_offset);
                    out.insert(tp, committed);
                }
            }
            Ok(())
        });
        self.put_back(conn, &result);
        result?;
        for tp in partitions {
            out.entry(tp.clone()).or_insert(None);
        }
        Ok(out)
    }

    /// Commits `positions` as `identity`.
    pub(crate) async fn commit(
        &mut self,
        identity: &CommitIdentity,
        positions: &Offsets,
    ) -> Result<(), GroupError> {
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, position) in positions.iter() {
            by_topic.entry(tp.topic()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition())
                    .with_committed_offset(position)
                    .with_committed_metadata(None),
            );
        }
        let mut conn = self.take_conn().await?;
        let version = match conn.version::<OffsetCommitRequest>() {
            Ok(v) => v,
            Err(e) => {
                let result = Err(e.into());
                self.put_back(conn, &result);
                return result;
            }
        };
        // A static member names its instance, where the version has the field (v7+).
        let instance = self
            .settings
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 7)
            .map(|id| StrBytes::from_string(id.clone()));
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(
                self.settings.group_id.clone(),
            )))
            .with_generation_id_or_member_epoch(identity.generation)
            .with_member_id(StrBytes::from_string(identity.member_id.clone()))
            .with_group_instance_id(instance)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, p)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partitions(p)
                    })
                    .collect(),
            );
        let response = conn.send_at(&request, version).await;
        let result = response.map_err(GroupError::from).and_then(|r| {
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .try_for_each(|p| check("OffsetCommit", p.error_code))
        });
        self.put_back(conn, &result);
        result
    }
}
