//! Record batches v2 (magic 2, Kafka 0.11 and later): the header, its CRC-32C, and the
//! records, decompressed once when the batch is compressed.

use std::sync::Arc;

use ktm_core::{Header, Message, Timestamp};

use super::codec::{self, Codec, Lz4Header};
use super::reader::Reader;
use super::{Batch, ControlKind, DecodeErrorKind};

/// Bytes from the base offset to the first record.
pub(super) const HEADER_LEN: usize = 61;

/// Attribute bit 3: the broker set the timestamps (LogAppendTime).
const LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit 4: the batch belongs to a transaction.
const TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: a control batch (transaction markers), never shown to the user.
const CONTROL: i16 = 0x20;

/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;

/// The control record types of Kafka's `ControlRecordType`.
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// What every record of a batch takes from the batch header.
struct Context<'a> {
    topic: &'a Arc<str>,
    partition: i32,
    base_offset: i64,
    timestamps: Timestamps,
}

#[derive(Clone, Copy)]
enum Timestamps {
    /// Each record's timestamp is this base plus its delta.
    CreateTime(i64),
    /// Every record's timestamp is the batch's max timestamp: the broker rewrites only
    /// that field when it stamps a batch, as Java and librdkafka read it.
    LogAppendTime(i64),
}

/// Decodes the batch `r` holds, from its base offset to its end (the caller has
/// checked that the bytes are all there and the magic byte is 2).
pub(super) fn decode(
    mut r: Reader<'_>,
    topic: &Arc<str>,
    partition: i32,
) -> Result<Batch, DecodeErrorKind> {
    if r.remaining() < HEADER_LEN {
        return Err(DecodeErrorKind::malformed(format!(
            "batch of {} bytes, shorter than the {HEADER_LEN}-byte v2 header",
            r.remaining()
        )));
    }
    let base_offset = r.i64("base offset")?;
    // The caller sized `r` by the batch length; the leader epoch and magic are not needed.
    r.i32("batch length")?;
    r.i32("partition leader epoch")?;
    r.i8("magic")?;
    let expected = r.u32("crc")?;
    // The CRC covers everything after it: attributes to the end of the records.
    let computed = crc32c::crc32c(r.rest());
    if expected != computed {
        return Err(DecodeErrorKind::Crc { expected, computed });
    }
    let attributes = r.i16("attributes")?;
    let last_offset_delta = r.i32("last offset delta")?;
    let base_timestamp = r.i64("base timestamp")?;
    let max_timestamp = r.i64("max timestamp")?;
    let producer_id = r.i64("producer id")?;
    r.i16("producer epoch")?;
    r.i32("base sequence")?;
    let count = r.i32("record count")?;

    let count = usize::try_from(count)
        .map_err(|_| DecodeErrorKind::malformed(format!("negative record count {count}")))?;
    // Java does not check this, but a position that moved backwards would fetch the
    // same batch forever.
    if last_offset_delta < 0 {
        return Err(DecodeErrorKind::malformed(format!(
            "negative last offset delta {last_offset_delta}"
        )));
    }
    let last_offset = base_offset
        .checked_add(i64::from(last_offset_delta))
        .ok_or_else(|| DecodeErrorKind::malformed("last offset overflows"))?;
    let codec = Codec::from_attributes(attributes)?;
    let context = Context {
        topic,
        partition,
        base_offset,
        timestamps: if attributes & LOG_APPEND_TIME != 0 {
            Timestamps::LogAppendTime(max_timestamp)
        } else {
            Timestamps::CreateTime(base_timestamp)
        },
    };

    let records = if codec == Codec::None {
        // Uncompressed: keys, values and header values slice the response itself.
        read_records(r, count, &context)?
    } else {
        let data = codec::decompress(codec, r.rest(), Lz4Header::Standard)?;
        read_records(Reader::new(&data), count, &context)?
    };
    let (control, records) = if attributes & CONTROL != 0 {
        (Some(control_kind(records.first())), Vec::new())
    } else {
        (None, records)
    };
    Ok(Batch {
        base_offset,
        last_offset,
        producer_id,
        is_transactional: attributes & TRANSACTIONAL != 0,
        control,
        records,
    })
}

/// Reads exactly `count` records: as Java does, records that end early or bytes left
/// after them make the batch malformed.
fn read_records(
    mut r: Reader<'_>,
    count: usize,
    context: &Context<'_>,
) -> Result<Vec<Message>, DecodeErrorKind> {
    // Bounded by what the bytes can hold, so a corrupt count reserves nothing absurd.
    let mut records = Vec::with_capacity(count.min(r.remaining() / MIN_RECORD_LEN));
    for index in 0..count {
        let record = read_record(&mut r, context).map_err(|kind| match kind {
            DecodeErrorKind::Malformed(m) => {
                DecodeErrorKind::Malformed(format!("record {index} of {count}: {m}"))
            }
            other => other,
        })?;
        records.push(record);
    }
    if !r.is_empty() {
        return Err(DecodeErrorKind::malformed(format!(
            "{} bytes left after the batch's {count} records",
            r.remaining()
        )));
    }
    Ok(records)
}

fn read_record(r: &mut Reader<'_>, context: &Context<'_>) -> Result<Message, DecodeErrorKind> {
    let len = r.varint("record length")?;
    let len = usize::try_from(len)
        .map_err(|_| DecodeErrorKind::malformed(format!("negative record length {len}")))?;
    let mut body = r.split(len, "record")?;
    // No record attribute is defined: the batch's attributes apply.
    body.i8("record attributes")?;
    let timestamp_delta = body.varlong("timestamp delta")?;
    let offset_delta = body.varint("offset delta")?;
    let key = body.varint_bytes("key")?;
    let value = body.varint_bytes("value")?;
    let header_count = body.varint("header count")?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| DecodeErrorKind::malformed(format!("negative header count {header_count}")))?;
    // A header takes at least two bytes (its two lengths).
    let mut headers = Vec::with_capacity(header_count.min(body.remaining() / 2));
    for _ in 0..header_count {
        let key_len = body.varint("header key length")?;
        let key_len = usize::try_from(key_len).map_err(|_| {
            DecodeErrorKind::malformed(format!("negative header key length {key_len}"))
        })?;
        // Invalid UTF-8 becomes U+FFFD, as Java's `new String(bytes, UTF_8)` reads it.
        let key = String::from_utf8_lossy(body.slice(key_len, "header key")?).into_owned();
        // In order, duplicates kept, and a null value (negative length) is not empty.
        let value = body.varint_bytes("header value")?;
        headers.push(Header { key, value });
    }
    if !body.is_empty() {
        return Err(DecodeErrorKind::malformed(format!(
            "{} bytes left in the record after its headers",
            body.remaining()
        )));
    }
    let offset = context
        .base_offset
        .checked_add(i64::from(offset_delta))
        .ok_or_else(|| DecodeErrorKind::malformed("record offset overflows"))?;
    let timestamp = match context.timestamps {
        // Wrapping, as Java's long arithmetic: a timestamp is data, not a length.
        Timestamps::CreateTime(base) => Timestamp::CreateTime(base.wrapping_add(timestamp_delta)),
        Timestamps::LogAppendTime(max) => Timestamp::LogAppendTime(max),
    };
    Ok(
        Message::builder(Arc::clone(context.topic), context.partition, offset)
            .maybe_key(key)
            .maybe_payload(value)
            .timestamp(timestamp)
            .headers(headers)
            .build(),
    )
}

/// The kind of a control batch, from its first record's key `[version i16][type i16]`.
///
/// Never an error: Java reads the type whatever the (non-negative) version, and a
/// marker this client cannot read only has to be skipped, which the batch's last
/// offset already allows. A negative version gives `Unknown(type)`; a missing record
/// or a key shorter than four bytes gives `Unknown(-1)`.
fn control_kind(record: Option<&Message>) -> ControlKind {
    let Some([v0, v1, t0, t1, ..]) = record.and_then(Message::key) else {
        return ControlKind::Unknown(-1);
    };
    let version = i16::from_be_bytes([*v0, *v1]);
    let kind = i16::from_be_bytes([*t0, *t1]);
    match kind {
        _ if version < 0 => ControlKind::Unknown(kind),
        CONTROL_ABORT => ControlKind::Abort,
        CONTROL_COMMIT => ControlKind::Commit,
        other => ControlKind::Unknown(other),
    }
}
