//! Legacy message sets (magic 0 and 1, before Kafka 0.11): still served by brokers for
//! topics written long ago, or with `log.message.format.version` pinned below 0.11.
//!
//! A message is `offset i64, size i32, crc u32 (CRC-32), magic i8, attributes i8,
//! [timestamp i64 (magic 1)], key, value` (`i32` lengths, no headers). A compressed
//! message is a wrapper whose value, decompressed, is an inner message set.

use std::sync::Arc;

use bytes::Bytes;
use ktm_core::{Message, Timestamp};

use super::codec::{self, Codec, Lz4Header};
use super::reader::Reader;
use super::{Batch, DecodeErrorKind, MIN_LENGTH};

/// Attribute bit 3 (magic 1): the broker set the timestamp (LogAppendTime).
const LOG_APPEND_TIME: i8 = 0x08;

/// One message of a message set, with its fields still as written.
struct Entry {
    offset: i64,
    magic: i8,
    attributes: i8,
    /// Magic 1 only.
    timestamp: Option<i64>,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

impl Entry {
    fn codec(&self) -> Result<Codec, DecodeErrorKind> {
        Codec::from_attributes(i16::from(self.attributes))
    }

    /// The timestamp the consumer reports: the wrapper's when the broker stamped the
    /// wrapper (`log_append`), else the message's own; none for magic 0 or when the
    /// producer wrote -1 (no timestamp).
    fn timestamp(&self, log_append: Option<i64>) -> Option<Timestamp> {
        if let Some(time) = log_append {
            return Some(Timestamp::LogAppendTime(time));
        }
        let time = self.timestamp.filter(|&t| t >= 0)?;
        Some(if self.attributes & LOG_APPEND_TIME != 0 {
            Timestamp::LogAppendTime(time)
        } else {
            Timestamp::CreateTime(time)
        })
    }
}

/// Decodes the message `r` holds, from its offset to its end (the caller has checked
/// that the bytes are all there): one batch of one message, or of a wrapper's inner
/// messages.
pub(super) fn decode(
    mut r: Reader<'_>,
    topic: &Arc<str>,
    partition: i32,
) -> Result<Batch, DecodeErrorKind> {
    let wrapper = read_entry(&mut r)?;
    let codec = wrapper.codec()?;
    let batch = |base_offset, records| Batch {
        base_offset,
        last_offset: wrapper.offset,
        producer_id: -1,
        is_transactional: false,
        control: None,
        records,
    };
    if codec == Codec::None {
        let message = to_message(topic, partition, wrapper.offset, &wrapper, None);
        return Ok(batch(wrapper.offset, vec![message]));
    }

    let compressed = wrapper
        .value
        .as_deref()
        .ok_or_else(|| DecodeErrorKind::malformed("compressed message with a null value"))?;
    let lz4_header = if wrapper.magic == 0 {
        Lz4Header::KafkaLegacy
    } else {
        Lz4Header::Standard
    };
    let data = codec::decompress(codec, compressed, lz4_header)?;
    let mut inner_reader = Reader::new(&data);
    let mut inner = Vec::new();
    while !inner_reader.is_empty() {
        let at = inner.len();
        let entry = read_entry(&mut inner_reader).map_err(|kind| match kind {
            DecodeErrorKind::Malformed(m) => {
                DecodeErrorKind::Malformed(format!("inner message {at}: {m}"))
            }
            other => other,
        })?;
        if entry.codec()? != Codec::None {
            return Err(DecodeErrorKind::malformed(format!(
                "inner message {at} is compressed again"
            )));
        }
        inner.push(entry);
    }

    // Magic 1 (KIP-31): inner offsets are relative, and the last one stands for the
    // wrapper's offset. Magic 0: they are absolute already.
    let shift = match inner.last() {
        Some(last) if wrapper.magic >= 1 => wrapper
            .offset
            .checked_sub(last.offset)
            .ok_or_else(|| DecodeErrorKind::malformed("inner offsets overflow"))?,
        _ => 0,
    };
    let log_append = wrapper
        .timestamp
        .filter(|_| wrapper.attributes & LOG_APPEND_TIME != 0);
    let records = inner
        .iter()
        .map(|entry| {
            let offset = entry
                .offset
                .checked_add(shift)
                .ok_or_else(|| DecodeErrorKind::malformed("inner offsets overflow"))?;
            Ok(to_message(topic, partition, offset, entry, log_append))
        })
        .collect::<Result<Vec<_>, DecodeErrorKind>>()?;
    let base_offset = records.first().map_or(wrapper.offset, Message::offset);
    Ok(batch(base_offset, records))
}

/// Reads one message, checking its CRC.
fn read_entry(r: &mut Reader<'_>) -> Result<Entry, DecodeErrorKind> {
    let offset = r.i64("offset")?;
    let size = r.i32("message size")?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s >= MIN_LENGTH)
        .ok_or_else(|| {
            DecodeErrorKind::malformed(format!(
                "message size {size}, below the smallest message ({MIN_LENGTH} bytes)"
            ))
        })?;
    let mut m = r.split(size, "message")?;
    let expected = m.u32("crc")?;
    // CRC-32 (IEEE) from the magic byte to the end of the message.
    let computed = crc32fast::hash(m.rest());
    if expected != computed {
        return Err(DecodeErrorKind::Crc { expected, computed });
    }
    let magic = m.i8("magic")?;
    let attributes = m.i8("attributes")?;
    let timestamp = match magic {
        0 => None,
        1 => Some(m.i64("timestamp")?),
        other => return Err(DecodeErrorKind::UnsupportedMagic(other)),
    };
    let key = m.i32_bytes("key")?;
    let value = m.i32_bytes("value")?;
    // Bytes after the value are ignored, as Java's LegacyRecord ignores them.
    Ok(Entry {
        offset,
        magic,
        attributes,
        timestamp,
        key,
        value,
    })
}

fn to_message(
    topic: &Arc<str>,
    partition: i32,
    offset: i64,
    entry: &Entry,
    log_append: Option<i64>,
) -> Message {
    let builder = Message::builder(Arc::clone(topic), partition, offset)
        .maybe_key(entry.key.clone())
        .maybe_payload(entry.value.clone());
    match entry.timestamp(log_append) {
        Some(timestamp) => builder.timestamp(timestamp),
        None => builder,
    }
    .build()
}
