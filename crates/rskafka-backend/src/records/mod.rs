//! The record decoder: the `records` bytes of a Fetch response, for one partition, into
//! [`Message`]s, batch by batch.
//!
//! Read as librdkafka and the Java consumer read them: record batches v2 (magic 2) with
//! every codec, control batches, and the legacy message sets of magic 0 and 1. Its own
//! decoder rather than rskafka's, which keeps headers in a map (duplicates collapse,
//! order and null values are lost) and refuses control batches it does not know.
//!
//! Nothing here panics on any input: reads are bounds-checked ([`reader`]), lengths use
//! checked arithmetic, and every failure is a [`DecodeError`] naming the batch.

mod batch;
mod codec;
mod error;
mod legacy;
mod reader;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use bytes::Bytes;
use ktm_core::Message;

pub use error::{DecodeError, DecodeErrorKind};
use reader::Reader;

/// Bytes before every format's magic byte: base offset (8), length (4) and the
/// partition leader epoch (v2) or CRC (v0/v1) (4).
const MAGIC_AT: usize = 16;

/// The base offset and length, which the length does not count (Kafka's
/// `LOG_OVERHEAD`).
const LOG_OVERHEAD: usize = 12;

/// The smallest length of any format (a magic-0 message with a null key and value:
/// CRC, magic, attributes and two lengths). Below it the framing itself is corrupt, as
/// Java judges it, and no later batch can be found.
const MIN_LENGTH: usize = 14;

/// One record batch (or legacy message set entry) as it was on the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    /// The offset of the batch's first record (for a compressed legacy message, of its
    /// first inner message).
    pub(crate) base_offset: i64,
    /// Offset of the batch's last record (base + last_offset_delta): the position moves
    /// past it even when all its records are dropped (control batches, aborted,
    /// compacted away).
    pub(crate) last_offset: i64,
    /// The producer id, for matching aborted transactions; -1 when the producer had
    /// none (and for legacy messages).
    pub(crate) producer_id: i64,
    /// Whether the batch belongs to a transaction (its records are dropped if the
    /// transaction aborted).
    pub(crate) is_transactional: bool,
    /// Some(kind) for a control batch; its `records` is empty.
    pub(crate) control: Option<ControlKind>,
    /// Data records in offset order (all of them, including those before the fetch
    /// offset; the caller drops those).
    pub(crate) records: Vec<Message>,
}

/// What a control batch marks: the end of a transaction, for the batches of its
/// producer before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlKind {
    /// The transaction aborted: its records are not delivered under `read_committed`.
    Abort,
    /// The transaction committed.
    Commit,
    /// a type this client does not know: skipped like librdkafka and Java
    /// (`Unknown(-1)` when the batch has no readable control key).
    Unknown(i16),
}

/// The batches of one partition's `records` bytes.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Every complete batch, in the order of the response.
    pub(crate) batches: Vec<Batch>,
    /// Whether a partial batch at the end was dropped: the broker cut the response at
    /// the fetch's max bytes, and the next fetch starts with that batch.
    pub(crate) truncated: bool,
}

/// Decodes every complete batch in a Fetch response's `records` bytes for one partition.
/// A trailing partial batch (the broker cuts at max bytes) is not an error: it is dropped
/// and `truncated` is set.
///
/// Any other fault (a checksum mismatch, an unknown codec or magic, records that do not
/// fit their batch) fails the whole call with the batch's base offset: the same bytes
/// come back on every fetch, so it cannot be retried away.
pub(crate) fn decode(
    records: &Bytes,
    topic: &Arc<str>,
    partition: i32,
) -> Result<Decoded, DecodeError> {
    let mut batches = Vec::new();
    let mut rest = Reader::new(records);
    let truncated = loop {
        if rest.is_empty() {
            break false;
        }
        // Read on a copy: when the framing is cut short, nothing is consumed.
        let mut head = rest.clone();
        let (Ok(base_offset), Ok(length)) = (head.i64("base offset"), head.i32("length")) else {
            break true;
        };
        let error = |kind| DecodeError {
            topic: Arc::clone(topic),
            partition,
            offset: base_offset,
            kind,
        };
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l >= MIN_LENGTH)
            .ok_or_else(|| {
                error(DecodeErrorKind::malformed(format!(
                    "batch length {length}, below the smallest message ({MIN_LENGTH} bytes)"
                )))
            })?;
        if rest.remaining() < MAGIC_AT + 1 {
            break true;
        }
        let size = LOG_OVERHEAD.saturating_add(length);
        if rest.remaining() < size {
            break true;
        }
        let Ok(bytes) = rest.split(size, "batch") else {
            break true;
        };
        let mut at_magic = bytes.clone();
        let magic = at_magic
            .slice(MAGIC_AT, "batch header")
            .and_then(|_| at_magic.i8("magic"))
            .map_err(error)?;
        let batch = match magic {
            2 => batch::decode(bytes, topic, partition),
            0 | 1 => legacy::decode(bytes, topic, partition),
            other => Err(DecodeErrorKind::UnsupportedMagic(other)),
        };
        batches.push(batch.map_err(error)?);
    };
    Ok(Decoded { batches, truncated })
}
