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
            while let Some(a) = aborted
                .front()
                .filter(|a| a.first_offset <= batch.last_offset)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::encode::{TestBatch, TestRecord};

    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;

    /// `n` data records of producer `pid` from `base` (-1: not transactional).
    fn data(base: i64, n: i32, pid: i64) -> Vec<u8> {
        let records = (0..n)
            .map(|i| TestRecord::new(i, None, Some(b"v")))
            .collect();
        let mut batch = TestBatch::new(base, records);
        batch.producer_id = pid;
        if pid >= 0 {
            batch.attributes = TRANSACTIONAL;
        }
        batch.encode()
    }

    /// A transaction marker of producer `pid` at `offset`.
    fn marker(offset: i64, pid: i64, commit: bool) -> Vec<u8> {
        let key = [0, 0, 0, u8::from(commit)];
        let mut batch = TestBatch::new(
            offset,
            vec![TestRecord::new(0, Some(&key), Some(&[0, 0, 0, 0, 0, 0]))],
        );
        batch.producer_id = pid;
        batch.attributes = TRANSACTIONAL | CONTROL;
        batch.encode()
    }

    fn read(
        parts: &[Vec<u8>],
        aborted: &[(i64, i64)],
        from: i64,
        committed: bool,
    ) -> PartitionRead {
        let data = Bytes::from(parts.concat());
        let aborted = aborted
            .iter()
            .map(|&(producer_id, first_offset)| Aborted {
                producer_id,
                first_offset,
            })
            .collect();
        read_partition(&data, aborted, from, &Arc::from("t"), 0, committed).unwrap()
    }

    fn offsets(read: &PartitionRead) -> Vec<i64> {
        read.messages.iter().map(Message::offset).collect()
    }

    /// 0: no transaction; 1-2 committed (producer 5), marker 3; 4-5 aborted (producer
    /// 6), marker 6; 7-8 committed (5), marker 9 at the end of the log.
    fn log() -> Vec<Vec<u8>> {
        vec![
            data(0, 1, -1),
            data(1, 2, 5),
            marker(3, 5, true),
            data(4, 2, 6),
            marker(6, 6, false),
            data(7, 2, 5),
            marker(9, 5, true),
        ]
    }

    #[test]
    fn read_committed_drops_aborted_records_and_moves_past_every_marker() {
        let r = read(&log(), &[(6, 4)], 0, true);
        assert_eq!(offsets(&r), [0, 1, 2, 7, 8]);
        assert_eq!(r.next_offset, 10, "past the trailing commit marker");
        assert!(!r.needs_more_bytes);
    }

    #[test]
    fn read_uncommitted_keeps_aborted_records_but_never_markers() {
        let r = read(&log(), &[(6, 4)], 0, false);
        assert_eq!(offsets(&r), [0, 1, 2, 4, 5, 7, 8]);
        assert_eq!(r.next_offset, 10);
    }

    #[test]
    fn interleaved_transactions_are_told_apart_by_producer() {
        let parts = [
            data(0, 2, 6),
            data(2, 2, 5),
            marker(4, 6, false),
            marker(5, 5, true),
        ];
        let r = read(&parts, &[(6, 0)], 0, true);
        assert_eq!(offsets(&r), [2, 3]);
        assert_eq!(r.next_offset, 6);
    }

    #[test]
    fn an_aborted_transaction_that_begins_later_does_not_drop_earlier_batches() {
        // Producer 6 commits at 0-1 and aborts a later transaction from 3.
        let parts = [
            data(0, 2, 6),
            marker(2, 6, true),
            data(3, 1, 6),
            marker(4, 6, false),
        ];
        let r = read(&parts, &[(6, 3)], 0, true);
        assert_eq!(offsets(&r), [0, 1]);
        assert_eq!(r.next_offset, 5);
    }

    #[test]
    fn records_before_the_fetch_offset_are_dropped() {
        let r = read(&[data(10, 5, -1)], &[], 12, true);
        assert_eq!(offsets(&r), [12, 13, 14]);
        assert_eq!(r.next_offset, 15);
    }

    #[test]
    fn a_response_of_markers_only_moves_the_position_and_delivers_nothing() {
        let r = read(&[marker(9, 5, true)], &[], 9, true);
        assert!(r.messages.is_empty());
        assert_eq!(r.next_offset, 10);
    }

    #[test]
    fn a_batch_cut_short_asks_for_more_bytes() {
        let whole = data(0, 3, -1);
        let cut = whole[..whole.len() - 4].to_vec();
        let r = read(&[cut], &[], 0, true);
        assert!(r.messages.is_empty());
        assert!(r.needs_more_bytes);
        assert_eq!(r.next_offset, 0, "the position stays");
    }
}
