//! The retained range of partitions (ListOffsets, earliest and latest), from their
//! leader: where the reset policy starts, and whether an offset is still in the log.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::TopicPartition;

use crate::wire::{Conn, ConnError};

/// ListOffsets' timestamp for the first offset.
const EARLIEST: i64 = -2;
/// ListOffsets' timestamp for the log end (the last stable offset under
/// read_committed).
const LATEST: i64 = -1;

/// A partition's retained range: `earliest` is its first offset, `latest` the next one
/// to be written (or the last stable offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LogRange {
    pub(super) earliest: i64,
    pub(super) latest: i64,
}

/// The range of each of `partitions` (with the leader epoch each was fetched at), or
/// the error its leader answered for it.
pub(super) async fn log_ranges(
    conn: &mut Conn,
    partitions: &[(TopicPartition, i32)],
    read_committed: bool,
) -> Result<BTreeMap<TopicPartition, Result<LogRange, ResponseError>>, ConnError> {
    let earliest = list(conn, partitions, EARLIEST, read_committed).await?;
    let latest = list(conn, partitions, LATEST, read_committed).await?;
    Ok(earliest
        .into_iter()
        .map(|(tp, e)| {
            let l = latest
                .get(&tp)
                .copied()
                .unwrap_or(Err(ResponseError::UnknownTopicOrPartition));
            let range = e.and_then(|earliest| l.map(|latest| LogRange { earliest, latest }));
            (tp, range)
        })
        .collect())
}

async fn list(
    conn: &mut Conn,
    partitions: &[(TopicPartition, i32)],
    timestamp: i64,
    read_committed: bool,
) -> Result<BTreeMap<TopicPartition, Result<i64, ResponseError>>, ConnError> {
    let mut by_topic: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (tp, leader_epoch) in partitions {
        by_topic.entry(tp.topic()).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(tp.partition())
                .with_current_leader_epoch(*leader_epoch)
                .with_timestamp(timestamp),
        );
    }
    let request = ListOffsetsRequest::default()
        // A consumer, not a replica (the default, 0, would be broker 0).
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(i8::from(read_committed))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, p)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                        .with_partitions(p)
                })
                .collect(),
        );
    let response = conn.send(&request).await?;
    let mut out = BTreeMap::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            let tp = TopicPartition::new(topic.name.0.as_str(), p.partition_index);
            let answer = match ResponseError::try_from_code(p.error_code) {
                Some(e) => Err(e),
                None => Ok(p.offset),
            };
            out.insert(tp, answer);
        }
    }
    for (tp, _) in partitions {
        out.entry(tp.clone())
            .or_insert(Err(ResponseError::UnknownTopicOrPartition));
    }
    Ok(out)
}
