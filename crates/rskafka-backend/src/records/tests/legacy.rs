//! Legacy message sets, magic 0 and 1.

use ktm_core::{Message, Timestamp};

use super::encode::{self, legacy_message, TestBatch, TestRecord};
use super::{decode_err, decode_ok, malformed, single};
use crate::records::DecodeErrorKind;

const CREATE: i8 = 0;
const LOG_APPEND: i8 = 0x08;

#[test]
fn uncompressed_magic_0_messages_are_one_batch_each_without_timestamps() {
    let mut wire = legacy_message(5, 0, 0, 0, Some(b"k"), Some(b"v"));
    wire.extend(legacy_message(6, 0, 0, 0, None, Some(b"")));
    wire.extend(legacy_message(7, 0, 0, 0, Some(b""), None));
    let batches = decode_ok(wire);
    assert_eq!(batches.len(), 3);
    for (b, offset) in batches.iter().zip(5..) {
        assert_eq!((b.base_offset, b.last_offset), (offset, offset));
        assert_eq!(
            (b.producer_id, b.is_transactional, b.control),
            (-1, false, None)
        );
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.records[0].offset(), offset);
        assert_eq!(b.records[0].timestamp(), None);
        assert!(b.records[0].headers().is_empty());
    }
    let m = |i: usize| &batches[i].records[0];
    assert_eq!(
        (m(0).key(), m(0).payload()),
        (Some(&b"k"[..]), Some(&b"v"[..]))
    );
    assert_eq!((m(1).key(), m(1).payload()), (None, Some(&b""[..])));
    assert_eq!((m(2).key(), m(2).payload()), (Some(&b""[..]), None));
}

#[test]
fn magic_1_timestamps_create_log_append_and_none() {
    let mut wire = legacy_message(0, 1, CREATE, 1_500_000_000_000, None, Some(b"a"));
    wire.extend(legacy_message(
        1,
        1,
        LOG_APPEND,
        1_500_000_000_001,
        None,
        Some(b"b"),
    ));
    wire.extend(legacy_message(2, 1, CREATE, -1, None, Some(b"c")));
    let times: Vec<Option<Timestamp>> = decode_ok(wire)
        .iter()
        .map(|b| b.records[0].timestamp())
        .collect();
    assert_eq!(
        times,
        [
            Some(Timestamp::CreateTime(1_500_000_000_000)),
            Some(Timestamp::LogAppendTime(1_500_000_000_001)),
            None
        ]
    );
}

/// An inner message set of three, at these offsets, with create times 100, 101, 102.
fn inner(magic: i8, offsets: [i64; 3]) -> Vec<u8> {
    let mut set = Vec::new();
    for (i, offset) in offsets.into_iter().enumerate() {
        let value = format!("v{i}");
        set.extend(legacy_message(
            offset,
            magic,
            CREATE,
            100 + i as i64,
            None,
            Some(value.as_bytes()),
        ));
    }
    set
}

#[test]
fn a_magic_1_wrapper_has_relative_inner_offsets_ending_at_its_own() {
    let value = encode::gzip(inner(1, [0, 1, 2]));
    let wire = legacy_message(12, 1, 1 | CREATE, 999, None, Some(&value));
    let b = single(wire);
    assert_eq!((b.base_offset, b.last_offset), (10, 12));
    let offsets: Vec<i64> = b.records.iter().map(Message::offset).collect();
    assert_eq!(offsets, [10, 11, 12]);
    assert_eq!(b.records[1].payload(), Some(&b"v1"[..]));
    assert_eq!(b.records[2].timestamp(), Some(Timestamp::CreateTime(102)));
}

#[test]
fn a_log_append_time_wrapper_stamps_every_inner_message() {
    let value = encode::snappy_xerial(inner(1, [0, 1, 2]), 50);
    let b = single(legacy_message(
        2,
        1,
        2 | LOG_APPEND,
        777,
        None,
        Some(&value),
    ));
    assert!(b
        .records
        .iter()
        .all(|m| m.timestamp() == Some(Timestamp::LogAppendTime(777))));
}

#[test]
fn a_magic_0_wrapper_has_absolute_inner_offsets() {
    let value = encode::gzip(inner(0, [20, 21, 22]));
    let b = single(legacy_message(22, 0, 1, 0, None, Some(&value)));
    let offsets: Vec<i64> = b.records.iter().map(Message::offset).collect();
    assert_eq!(offsets, [20, 21, 22]);
    assert_eq!((b.base_offset, b.last_offset), (20, 22));
}

#[test]
fn lz4_in_magic_0_with_kafkas_wrong_header_checksum_and_in_magic_1_with_the_right_one() {
    let v0 = encode::lz4_frame_kafka_legacy(inner(0, [0, 1, 2]));
    assert_eq!(
        single(legacy_message(2, 0, 3, 0, None, Some(&v0)))
            .records
            .len(),
        3
    );
    let v1 = encode::lz4_frame(inner(1, [0, 1, 2]));
    assert_eq!(
        single(legacy_message(2, 1, 3, 0, None, Some(&v1)))
            .records
            .len(),
        3
    );
    // Magic 1 has no excuse for the wrong checksum.
    let e = decode_err(legacy_message(2, 1, 3, 0, None, Some(&v0)));
    assert!(
        matches!(e.kind, DecodeErrorKind::Decompress { codec: "lz4", .. }),
        "{e}"
    );
}

#[test]
fn a_legacy_crc_mismatch_names_the_message() {
    let mut wire = legacy_message(8, 1, CREATE, 0, None, Some(b"value"));
    let last = wire.len() - 1;
    wire[last] ^= 0x20;
    let e = decode_err(wire);
    assert!(matches!(e.kind, DecodeErrorKind::Crc { .. }));
    assert_eq!(e.offset, 8);
}

#[test]
fn inner_messages_compressed_again_or_cut_short_are_errors() {
    let nested = legacy_message(0, 1, 1, 0, None, Some(&encode::gzip(inner(1, [0, 1, 2]))));
    let e = decode_err(legacy_message(
        0,
        1,
        1,
        0,
        None,
        Some(&encode::gzip(nested)),
    ));
    assert!(malformed(&e).contains("compressed again"), "{e}");

    let mut cut = inner(1, [0, 1, 2]);
    cut.truncate(cut.len() - 1);
    let e = decode_err(legacy_message(2, 1, 1, 0, None, Some(&encode::gzip(cut))));
    assert!(malformed(&e).starts_with("inner message 2: "), "{e}");

    let e = decode_err(legacy_message(2, 1, 1, 0, None, None));
    assert!(malformed(&e).contains("null value"), "{e}");
}

#[test]
fn legacy_messages_and_v2_batches_mix_in_one_response() {
    // As after a topic's message format is upgraded.
    let mut wire = legacy_message(0, 1, CREATE, 5, None, Some(b"old"));
    wire.extend(TestBatch::new(1, vec![TestRecord::new(0, None, Some(b"new"))]).encode());
    let batches = decode_ok(wire);
    assert_eq!(batches[0].records[0].payload(), Some(&b"old"[..]));
    assert_eq!(batches[1].records[0].payload(), Some(&b"new"[..]));
}
