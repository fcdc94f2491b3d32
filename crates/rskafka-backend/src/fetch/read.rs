//! One partition's records in a Fetch response, as the consumer must see them: records
//! before the fetch position dropped (a response starts at a batch boundary), control
//! batches consumed, and under `read_committed` the batches of aborted transactions
//! dropped, the way the Java consumer's `CompletedFetch` reads them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use ktm_core::Message;

use crate::records::{self, ControlKind, DecodeError};

/// An aborted transaction in a Fetch response: the producer, and the offset of its
/// first record in this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Aborted {
    pub(super) producer_id: i64,
    pub(super) first_offset: i64,
}

/// What one partition's records come to.
#[derive(Debug, Default)]
pub(super) struct PartitionRead {
    pub(super) messages: Vec<Message>,
    /// The position after them: past the last batch read, even when every record of
    /// it was dropped (control batches, aborted transactions, compacted away), so an
    /// idle transactional partition does not fetch its commit marker again and again.
    pub(super) next_offset: i64,
    /// The records' share of memory, for the prefetch budget.
    pub(super) bytes: usize,
    /// The data held only part of a batch: the partition's fetch size is too small
    /// for its next batch.
    pub(super) needs_more_bytes: bool,
}

/// Reads `data`, fetched from `fetch_offset`.
pub(super) fn read_partition(
    data: &Bytes,
    mut aborted: Vec<Aborted>,
    fetch_offset: i64,
    topic: &Arc<str>,
    partition: i32,
    read_committed: bool,
) -> Result<PartitionRead, DecodeError> {
    let decoded = records::decode(data, topic, partition)?;
    aborted.sort_by_key(|a| a.first_offset);
    let mut aborted: VecDeque<Aborted> = aborted.into();
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let mut out = PartitionRead {
        next_offset: fetch_offset,
        bytes: data.len(),
        needs_more_bytes: decoded.batches.is_empty() && decoded.truncated,
        ..PartitionRead::default()
    };
    for batch in decoded.batches {
        if batch.last_offset < fetch_offset {
            continue;
        }
        let next = batch.last_offset.saturating_add(1);
        if read_committed && batch.producer_id >= 0 {
            // Transactions that started at or before this batch's end are open now.
            while let Some(a) = aborted.front().filter(|a| a.first_offset <= batch.last_offset)
            {
                aborting.insert(a.producer_id);
                aborted.pop_front();
            }
            if batch.control == Some(ControlKind::Abort) {
                aborting.remove(&batch.producer_id);
            } else if batch.is_transactional && aborting.contains(&batch.producer_id) {
                out.next_offset = next;
                continue;
            }
        }
        if batch.control.is_none() {
            out.messages.extend(
                batch
                    .records
                    .into_iter()
                    .filter(|m| m.offset() >= fetch_offset),
            );
        }
        out.next_offset = next;
    }
    // Decompressed records may take more room than the wire bytes.
    let payload: usize = out
        .messages
        .iter()
        .map(|m| m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len))
        .sum();
    out.bytes = out.bytes.max(payload);
    Ok(out)
}
