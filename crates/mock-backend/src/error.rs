use thiserror::Error;

/// Errors from the in-memory cluster's own API (creating topics, producing, building
/// consumers). Errors a consumer meets while running are core `SourceError`s.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MockError {
    /// The topic does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The partition does not exist.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The missing partition.
        partition: i32,
    },
    /// `create_topic` for a name already taken.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A topic needs at least one partition.
    #[error("a topic needs at least one partition, got {0}")]
    InvalidPartitionCount(i32),
    /// A consumer builder was given a bad setting.
    #[error("invalid mock consumer configuration: {0}")]
    Config(&'static str),
}
