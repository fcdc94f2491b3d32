//! The typed error of consumer settings: what `ConsumerConfigBuilder::build` and the
//! backends' builders refuse, and why.

use std::time::Duration;

/// A consumer setting that Kafka would reject or that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No bootstrap server was given.
    #[error("no bootstrap servers given")]
    NoBootstrapServers,
    /// A bootstrap address is not `host:port`.
    #[error("bootstrap server {address:?} is not host:port: {reason}")]
    InvalidBootstrapAddress {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Neither topics to subscribe to nor partitions to assign.
    #[error("no topics to subscribe to and no partitions to assign")]
    NoTopics,
    /// A topic name breaks Kafka's rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A partition number below zero.
    #[error("invalid partition {partition} of topic {topic:?}: partitions start at 0")]
    InvalidPartition {
        /// The topic.
        topic: String,
        /// The partition given.
        partition: i32,
    },
    /// The group id is empty.
    #[error("group id must not be empty")]
    EmptyGroupId,
    /// The heartbeat interval must be below the session timeout.
    #[error("heartbeat interval {heartbeat:?} must be below the session timeout {session:?}")]
    HeartbeatNotBelowSession {
        /// The heartbeat interval given.
        heartbeat: Duration,
        /// The session timeout given.
        session: Duration,
    },
    /// A duration that must be positive was zero.
    #[error("{which} must be greater than zero")]
    ZeroDuration {
        /// Which setting.
        which: &'static str,
    },
    /// A byte size that must be positive was not.
    #[error("{which} must be between 1 and {max}, got {value}")]
    InvalidSize {
        /// Which setting.
        which: &'static str,
        /// The value given.
        value: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// A `group.instance.id` breaks Kafka's rules (those of topic names).
    #[error("invalid group instance id {id:?}: {reason}")]
    InvalidGroupInstanceId {
        /// The id given.
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The security settings do not fit together, or a file they name is missing
    /// (the reason never contains a secret).
    #[error("invalid security settings: {reason}")]
    Security {
        /// What is wrong.
        reason: String,
    },
    /// A backend-specific setting was rejected (with the backend's own message).
    #[error("invalid {backend} setting: {message}")]
    Backend {
        /// The backend.
        backend: &'static str,
        /// Its message.
        message: String,
    },
}
