//! What a backend says about its subscription when asked before consuming
//! ([`MessageSource::describe`](crate::MessageSource::describe)).

use crate::TopicPartition;

/// What a source is configured to read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subscribed {
    /// These topics, through the group protocol.
    Topics(Vec<String>),
    /// Every topic whose name matches this pattern (the pattern's syntax is the
    /// backend's).
    Pattern(String),
    /// Exactly these partitions, without group membership.
    Partitions(Vec<TopicPartition>),
}

/// One topic as the broker described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// Its partition count; `None` when the broker does not know the topic.
    pub partitions: Option<i32>,
}

impl TopicDescription {
    /// A topic the broker knows, with `partitions` partitions.
    pub fn found(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions: Some(partitions),
        }
    }

    /// A topic the broker does not know.
    pub fn missing(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            partitions: None,
        }
    }
}

/// What the group coordinator said about the consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupStatus {
    /// A coordinator took the group (FindCoordinator, or an equivalent, succeeded).
    Accepted {
        /// The coordinator, as `host:port` or a broker id, as the backend knows it.
        coordinator: String,
    },
    /// The broker refused the group id (invalid, not authorized, ...).
    Rejected {
        /// The broker's answer.
        error: String,
    },
}

/// A source's answer to [`describe`](crate::MessageSource::describe).
///
/// ```
/// use ktm_core::{GroupStatus, SourceDescription, Subscribed, TopicDescription};
/// let d = SourceDescription::new(
///     "127.0.0.1:9092",
///     Subscribed::Topics(vec!["orders".into()]),
///     vec![TopicDescription::found("orders", 3)],
/// )
/// .with_group("billing", GroupStatus::Accepted { coordinator: "127.0.0.1:9092".into() });
/// assert_eq!(d.topics[0].partitions, Some(3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceDescription {
    /// The broker that answered (or the bootstrap list), for the report.
    pub endpoint: String,
    /// What the source is configured to read.
    pub subscription: Subscribed,
    /// The topics subscribed to (or matched by the pattern, or holding the assigned
    /// partitions), each with its partition count or missing.
    pub topics: Vec<TopicDescription>,
    /// The consumer group and its coordinator's answer; `None` without a group.
    pub group: Option<(String, GroupStatus)>,
}

impl SourceDescription {
    /// A description without a group.
    pub fn new(
        endpoint: impl Into<String>,
        subscription: Subscribed,
        topics: Vec<TopicDescription>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            subscription,
            topics,
            group: None,
        }
    }

    /// Adds the group and what its coordinator said.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>, status: GroupStatus) -> Self {
        self.group = Some((group.into(), status));
        self
    }
}
