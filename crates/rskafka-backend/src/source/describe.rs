//! [`MessageSource::describe`](ktm_core::MessageSource::describe): Metadata for the
//! topics read and FindCoordinator for the group, on connections of its own that are
//! closed before it returns (it runs on preflight's runtime, not the I/O thread).

use kafka_protocol::ResponseError;
use ktm_core::{
    GroupStatus, SourceDescription, SourceError, Subscribed, Subscription, TopicDescription,
};
use tracing::debug;

use super::RskafkaSource;
use crate::group::{connect_coordinator, GroupError};
use crate::wire::{cluster_metadata, ClusterMetadata, Conn};
use crate::{source_error, BACKEND};

impl RskafkaSource {
    pub(super) async fn describe_now(&self) -> Result<SourceDescription, SourceError> {
        let consumer = &self.config.consumer;
        let topics = consumer.topics();
        let (endpoint, metadata) = self.metadata(&topics).await?;
        let mut described = Vec::with_capacity(topics.len());
        for topic in &topics {
            described.push(describe_topic(topic, &metadata)?);
        }
        let subscription = match &consumer.subscription {
            Subscription::Partitions(p) => Subscribed::Partitions(p.clone()),
            _ => Subscribed::Topics(topics.clone()),
        };
        let group = &self.group_settings.group_id;
        // FindCoordinator is what every member sends first: a group id the broker
        // refuses (invalid, not authorized) fails there, before any JoinGroup.
        let status = match connect_coordinator(&self.group_settings).await {
            Ok(conn) => GroupStatus::Accepted {
                coordinator: conn.addr().to_owned(),
            },
            Err(GroupError::Broker { error, .. }) if is_refusal(error) => GroupStatus::Rejected {
                error: format!("{error:?}"),
            },
            Err(e) => return Err(e.into_source_error("finding the group coordinator")),
        };
        Ok(SourceDescription::new(endpoint, subscription, described).with_group(group, status))
    }

    /// Asks the bootstrap brokers in turn for `topics`' metadata.
    async fn metadata(&self, topics: &[String]) -> Result<(String, ClusterMetadata), SourceError> {
        let s = &self.group_settings;
        let mut last = None;
        for addr in &s.bootstrap {
            let asked = async {
                let mut conn =
                    Conn::connect(addr, &s.client_id, &s.security, s.connect_timeout).await?;
                cluster_metadata(&mut conn, topics.iter().map(String::as_str)).await
            };
            match asked.await {
                Ok(metadata) => return Ok((addr.clone(), metadata)),
                Err(e) if e.is_fatal() => {
                    return Err(
                        source_error(true, format!("reading metadata from {addr}: {e}"))
                            .with_source(e),
                    )
                }
                Err(e) => {
                    debug!(broker = %addr, error = %e, "Metadata failed");
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => {
                SourceError::transient(BACKEND, format!("no broker answered: {e}")).with_source(e)
            }
            None => SourceError::fatal(BACKEND, "no bootstrap servers"),
        })
    }
}

/// One topic from the answer: its partitions, missing, or an error.
fn describe_topic(
    topic: &str,
    metadata: &ClusterMetadata,
) -> Result<TopicDescription, SourceError> {
    if let Some(t) = metadata.topics.get(topic) {
        let n = i32::try_from(t.leaders.len()).unwrap_or(i32::MAX);
        return Ok(if n > 0 {
            TopicDescription::found(topic, n)
        } else {
            TopicDescription::missing(topic)
        });
    }
    match metadata.topic_errors.get(topic) {
        None | Some(ResponseError::UnknownTopicOrPartition) => Ok(TopicDescription::missing(topic)),
        // Being created, or a leader being elected: ask again.
        Some(e) if e.is_retriable() => Err(SourceError::transient(
            BACKEND,
            format!("metadata for topic {topic:?}: {e:?}"),
        )),
        Some(e) => Err(SourceError::fatal(
            BACKEND,
            format!("metadata for topic {topic:?}: {e:?}"),
        )),
    }
}

/// The answers to FindCoordinator that refuse the group id itself.
fn is_refusal(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::InvalidGroupId | ResponseError::GroupAuthorizationFailed
    )
}
