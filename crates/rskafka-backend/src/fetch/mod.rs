//! The consumer's fetch path, on the I/O thread.
//!
//! - One task per broker that leads an assigned partition, each with one connection,
//!   sends one Fetch request covering all of that broker's fetchable partitions (in a
//!   fetch session, KIP-227, where the broker keeps one), as librdkafka and the Java
//!   consumer do: the connections are the brokers, not the partitions.
//! - The records are decoded by [`crate::records`]: every codec in pure Rust, headers
//!   as the ordered list Kafka sends, timestamp types from the batch.
//! - Under `read_committed`, records of aborted transactions are dropped with the
//!   response's aborted-transaction list; control batches are consumed and the position
//!   moves past them; lag is measured to the last stable offset.
//! - Leaders come from Metadata requests on the source's control connection; a leader
//!   change (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION, a
//!   lost connection) looks the leader up again and moves the partition.
//! - One prefetch budget for the whole consumer ([`budget`]) bounds memory.
//! - A batch that cannot be decoded is a fatal error for the source, carrying topic,
//!   partition and offset ([`crate::DecodeError`]), never an endless retry.

mod apply;
mod broker;
mod budget;
mod engine;
#[cfg(test)]
mod fake_broker_tests;
mod leaders;
mod list_offsets;
mod owned;
mod read;
mod session;
mod state;

use std::time::Duration;

use ktm_core::{Message, OffsetReset, SourceError};

pub(crate) use budget::BudgetPermit;
pub(crate) use engine::FetchEngine;
pub(crate) use owned::Owned;

use crate::wire::Security;

/// What the fetch path sends to the source.
#[derive(Debug)]
pub(crate) enum FetchItem {
    /// Records in offset order, starting at the partition's position. The permit holds
    /// their share of the prefetch budget until the item is dropped.
    Records {
        epoch: u64,
        messages: Vec<Message>,
        /// The partition's high watermark (its last stable offset under
        /// `read_committed`) in the response these records came with.
        high_watermark: i64,
        _permit: BudgetPermit,
    },
    /// Offsets before `to` that will never be delivered (transaction markers, records
    /// of aborted transactions), after the records sent before: the partition's
    /// position may move past them once those are settled.
    Passed { epoch: u64, to: i64 },
    /// A fetch that returned no record saw a new high watermark; sent only when it
    /// changed, so an idle partition sends nothing.
    HighWatermark { epoch: u64, high_watermark: i64 },
    /// A failure: transient ones are retried by the fetch path itself (this reports
    /// them), a fatal one ends the partition's fetching.
    Failed { epoch: u64, error: SourceError },
}

impl FetchItem {
    pub(crate) fn epoch(&self) -> u64 {
        match self {
            FetchItem::Records { epoch, .. }
            | FetchItem::Passed { epoch, .. }
            | FetchItem::HighWatermark { epoch, .. }
            | FetchItem::Failed { epoch, .. } => *epoch,
        }
    }
}

/// What the fetch path runs with.
#[derive(Clone, Debug)]
pub(crate) struct FetchSettings {
    /// `fetch.min.bytes`.
    pub(crate) min_bytes: i32,
    /// `fetch.max.bytes`: the most one Fetch response may hold.
    pub(crate) max_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub(crate) partition_max_bytes: i32,
    /// `fetch.max.wait.ms`.
    pub(crate) max_wait: Duration,
    pub(crate) reset: OffsetReset,
    /// `isolation.level=read_committed`.
    pub(crate) read_committed: bool,
    /// The prefetch budget: fetched bytes that may wait for the consumer thread.
    pub(crate) queued_max_bytes: i64,
    pub(crate) client_id: String,
    pub(crate) security: Security,
    /// How long connecting or one request may take.
    pub(crate) request_timeout: Duration,
}
