//! Applying what a broker answered to the shared state: log ranges settle positions,
//! Fetch responses move them and send records, partition errors move partitions to
//! their new leader, reset them, or end them.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::FetchResponse;
use kafka_protocol::ResponseError;
use ktm_core::{SourceError, TopicPartition};
use tracing::{debug, warn};

use super::list_offsets::LogRange;
use super::read::{read_partition, Aborted, PartitionRead};
use super::session::Session;
use super::state::{Part, Position, Shared, State};
use super::FetchItem;
use crate::reset::{reset_to, resolve_start, ResetCause, Start};
use crate::{source_error, BACKEND};

/// The largest `max.partition.fetch.bytes` a partition grows to when one batch does
/// not fit (Kafka's default `message.max.bytes` is 1 MiB; brokers allow up to
/// `socket.request.max.bytes`, 100 MiB).
const LARGEST_PARTITION_FETCH: i32 = 100 * 1024 * 1024;

/// What a Fetch response brought.
pub(super) struct Applied {
    /// Some partition got records.
    pub(super) records: bool,
    /// Some partition got an error: the broker task backs off before the next request.
    pub(super) trouble: bool,
}

/// Whether `e` means the partition's leader is elsewhere now (or not yet known).
fn leader_moved(e: ResponseError) -> bool {
    matches!(
        e,
        ResponseError::NotLeaderOrFollower
            | ResponseError::LeaderNotAvailable
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::KafkaStorageError
            | ResponseError::ReplicaNotAvailable
            | ResponseError::OffsetNotAvailable
    )
}

/// A partition error that is not a leader move: fatal when no retry can fix it (the
/// Java consumer raises these from `poll`), else transient.
fn partition_error(tp: &TopicPartition, request: &str, e: ResponseError) -> SourceError {
    let message = format!("{request} {tp}: {e}");
    let fatal = !e.is_retriable()
        || matches!(
            e,
            // Retriable on the wire, but the same bytes come back every time.
            ResponseError::CorruptMessage
        );
    source_error(fatal, message)
}

/// The part of the state for `tp` if it is still the assignment and position the
/// answer was for.
fn current<'a>(state: &'a mut State, tp: &TopicPartition, asked: Position) -> Option<&'a mut Part> {
    state.partitions.get_mut(tp).filter(|p| p.position == asked)
}

/// Settles positions from log ranges; `true` if something went wrong.
pub(super) fn apply_ranges(
    shared: &Shared,
    ranges: BTreeMap<TopicPartition, Result<LogRange, ResponseError>>,
) -> bool {
    let mut guard = shared.lock();
    let state = &mut *guard;
    let mut trouble = false;
    for (tp, range) in ranges {
        let Some(part) = state
            .partitions
            .get_mut(&tp)
            .filter(|p| matches!(p.position, Position::Start(_) | Position::Check { .. }))
        else {
            continue;
        };
        let range = match range {
            Ok(range) => range,
            Err(e) if leader_moved(e) => {
                debug!(partition = %tp, error = %e, "listing offsets: leader moved");
                shared.lose_leaders(state, [&tp]);
                trouble = true;
                continue;
            }
            Err(e) => {
                shared.report(state, &tp, partition_error(&tp, "listing offsets of", e));
                trouble = true;
                continue;
            }
        };
        match settle(&tp, part.position, range, shared) {
            Ok(offset) => {
                debug!(partition = %tp, offset, "fetching");
                part.position = Position::At(offset);
            }
            Err(e) => shared.report(state, &tp, e),
        }
    }
    trouble
}

/// Where `position` goes given the log's `range`, by the reset policy where needed.
fn settle(
    tp: &TopicPartition,
    position: Position,
    range: LogRange,
    shared: &Shared,
) -> Result<i64, SourceError> {
    let LogRange { earliest, latest } = range;
    let policy = shared.settings.reset;
    let resolved = match position {
        // Only the lower bound of a committed offset is checked: some brokers (Tansu
        // 0.6) answer ListOffsets(latest) with less than the high watermark, and a
        // committed offset past the log end makes a real broker answer
        // OFFSET_OUT_OF_RANGE to the fetch, which comes back here.
        Position::Start(committed) => resolve_start(committed, earliest, i64::MAX, policy),
        Position::Check {
            offset,
            confirmed: false,
        } if (earliest..=latest).contains(&offset) => Ok(Start {
            offset,
            reset: None,
        }),
        Position::Check { offset, .. } => {
            let cause = ResetCause::OutOfRange {
                offset,
                earliest,
                latest,
            };
            reset_to(cause, earliest, latest, policy)
        }
        Position::At(offset) => Ok(Start {
            offset,
            reset: None,
        }),
        Position::Failed => return Err(SourceError::fatal(BACKEND, format!("{tp}: failed"))),
    };
    match resolved {
        Ok(Start {
            offset,
            reset: None | Some(ResetCause::NoCommit),
        }) => Ok(offset),
        Ok(Start {
            offset,
            reset: Some(cause),
        }) => {
            warn!(partition = %tp, ?cause, new_offset = offset, ?policy, "offset out of range; applying the reset policy");
            Ok(offset)
        }
        Err(e) => Err(SourceError::fatal(BACKEND, format!("{tp}: {e}"))),
    }
}

/// Applies a Fetch response to the partitions it names.
pub(super) fn apply_response(
    shared: &Shared,
    response: FetchResponse,
    session: &Session,
) -> Applied {
    let mut applied = Applied {
        records: false,
        trouble: false,
    };
    let read_committed = shared.settings.read_committed;
    for topic in response.responses {
        let name: Arc<str> = Arc::from(topic.topic.0.as_str());
        for p in topic.partitions {
            let tp = TopicPartition::new(Arc::clone(&name), p.partition_index);
            let Some(asked) = session.asked(&tp) else {
                continue;
            };
            let asked_at = Position::At(asked.offset);
            let error = ResponseError::try_from_code(p.error_code);
            // Decoded before taking the lock: the other tasks need not wait for it.
            let read = match (error, &p.records) {
                (None, Some(data)) if !data.is_empty() => {
                    let aborted = p
                        .aborted_transactions
                        .iter()
                        .flatten()
                        .map(|a| Aborted {
                            producer_id: a.producer_id.0,
                            first_offset: a.first_offset,
                        })
                        .collect();
                    Some(read_partition(
                        data,
                        aborted,
                        asked.offset,
                        &name,
                        tp.partition(),
                        read_committed,
                    ))
                }
                _ => None,
            };
            let mut guard = shared.lock();
            let state = &mut *guard;
            let Some(part) = current(state, &tp, asked_at) else {
                continue;
            };
            let watermark = if read_committed && p.last_stable_offset >= 0 {
                p.last_stable_offset
            } else {
                p.high_watermark
            };
            match (error, read) {
                (None, Some(Ok(read))) => {
                    applied.records |= !read.messages.is_empty();
                    if let Err(e) = deliver(shared, part, &tp, asked.offset, read, watermark) {
                        shared.report(state, &tp, e);
                    }
                }
                (None, Some(Err(e))) => {
                    let error = SourceError::fatal(BACKEND, e.to_string()).with_source(e);
                    shared.report(state, &tp, error);
                    applied.trouble = true;
                }
                (None, None) => {
                    // Nothing new. Past the high watermark, the log may have been
                    // truncated or recreated shorter: real Kafka answers
                    // OFFSET_OUT_OF_RANGE, Tansu 0.6 nothing, for ever.
                    if p.high_watermark >= 0 && asked.offset > p.high_watermark {
                        part.position = Position::Check {
                            offset: asked.offset,
                            confirmed: false,
                        };
                    }
                    note_watermark(shared, part, watermark);
                }
                (Some(ResponseError::OffsetOutOfRange), _) => {
                    part.position = Position::Check {
                        offset: asked.offset,
                        confirmed: true,
                    };
                }
                (Some(e), _) if leader_moved(e) => {
                    debug!(partition = %tp, error = %e, "fetch: leader moved");
                    shared.lose_leaders(state, [&tp]);
                    applied.trouble = true;
                }
                (Some(e), _) => {
                    let error = partition_error(&tp, "fetching", e);
                    if error.is_transient() {
                        warn!(partition = %tp, %error, "fetch error; retrying");
                    }
                    shared.report(state, &tp, error);
                    applied.trouble = true;
                }
            }
        }
    }
    applied
}

/// Moves the partition past what was read and sends its records.
fn deliver(
    shared: &Shared,
    part: &mut Part,
    tp: &TopicPartition,
    fetch_offset: i64,
    read: PartitionRead,
    watermark: i64,
) -> Result<(), SourceError> {
    if read.needs_more_bytes {
        if part.max_bytes >= LARGEST_PARTITION_FETCH {
            return Err(SourceError::fatal(
                BACKEND,
                format!(
                    "{tp}: the record batch at offset {fetch_offset} is larger than {} bytes",
                    part.max_bytes
                ),
            ));
        }
        // Older brokers (and some others) cut a batch that does not fit, rather than
        // sending it whole (KIP-74): ask for more next time.
        part.max_bytes = part
            .max_bytes
            .saturating_mul(2)
            .min(LARGEST_PARTITION_FETCH);
        debug!(partition = %tp, max_bytes = part.max_bytes, "a batch did not fit; fetching more");
        return Ok(());
    }
    let next = read.next_offset.max(fetch_offset);
    part.position = Position::At(next);
    let delivered_end = read
        .messages
        .last()
        .map_or(fetch_offset, |m| m.offset() + 1);
    if read.messages.is_empty() {
        note_watermark(shared, part, watermark);
    } else {
        part.reported_high_watermark = watermark;
        let item = FetchItem::Records {
            epoch: part.epoch,
            messages: read.messages,
            high_watermark: watermark,
            _permit: shared.budget.take(read.bytes),
        };
        let _ = shared.tx.send(item);
    }
    if next > delivered_end {
        let _ = shared.tx.send(FetchItem::Passed {
            epoch: part.epoch,
            to: next,
        });
    }
    Ok(())
}

/// Sends a new high watermark of a partition that got no records.
fn note_watermark(shared: &Shared, part: &mut Part, watermark: i64) {
    if watermark >= 0 && watermark != part.reported_high_watermark {
        part.reported_high_watermark = watermark;
        let _ = shared.tx.send(FetchItem::HighWatermark {
            epoch: part.epoch,
            high_watermark: watermark,
        });
    }
}
