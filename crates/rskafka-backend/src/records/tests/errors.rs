//! Faults: checksum, codec, magic, truncation at the end (not an error) and inside a
//! batch (an error naming the batch).

use super::encode::{write_varint, TestBatch, TestRecord};
use super::{decode_err, malformed, try_decode, PARTITION};
use crate::records::DecodeErrorKind;

fn three_records(base_offset: i64) -> TestBatch {
    TestBatch::new(
        base_offset,
        (0..3)
            .map(|i| TestRecord::new(i, Some(b"key"), Some(b"value")).header("h", Some(b"x")))
            .collect(),
    )
}

#[test]
fn a_checksum_mismatch_names_the_batch() {
    let mut wire = three_records(100).encode();
    let last = wire.len() - 1;
    wire[last] ^= 0x01;
    let e = decode_err(wire);
    assert!(matches!(e.kind, DecodeErrorKind::Crc { expected, computed } if expected != computed));
    assert_eq!((&*e.topic, e.partition, e.offset), ("t", PARTITION, 100));
    let text = e.to_string();
    assert!(
        text.starts_with("undecodable record batch in t [3] at offset 100: checksum mismatch"),
        "{text}"
    );
}

#[test]
fn an_unknown_codec_is_an_error() {
    for bits in 5..=7 {
        let mut batch = three_records(0);
        batch.attributes = bits;
        let e = decode_err(batch.encode());
        assert!(matches!(e.kind, DecodeErrorKind::UnknownCodec(c) if i16::from(c) == bits));
    }
}

#[test]
fn an_unknown_magic_is_an_error() {
    let mut wire = three_records(9).encode();
    wire[16] = 3;
    let e = decode_err(wire);
    assert!(matches!(e.kind, DecodeErrorKind::UnsupportedMagic(3)));
    assert_eq!(e.offset, 9);
}

#[test]
fn a_partial_batch_at_the_end_is_dropped_and_reported_truncated() {
    let first = three_records(0).encode();
    let second = three_records(3).encode();
    // Cut inside the offset, inside the length, before the magic, and one byte short.
    for keep in [5, 10, 14, second.len() - 1] {
        let mut wire = first.clone();
        wire.extend_from_slice(&second[..keep]);
        let decoded = try_decode(wire).expect("a cut batch is not an error");
        assert!(decoded.truncated, "cut at {keep}");
        assert_eq!(decoded.batches.len(), 1, "cut at {keep}");
        assert_eq!(decoded.batches[0].last_offset, 2);
    }
}

#[test]
fn fewer_records_than_the_count_is_an_error_naming_the_record() {
    let mut batch = three_records(20);
    batch.count = Some(4);
    let e = decode_err(batch.encode());
    assert_eq!(e.offset, 20);
    assert!(malformed(&e).starts_with("record 3 of 4: "), "{e}");
}

#[test]
fn bytes_after_the_counted_records_are_an_error() {
    let mut batch = three_records(0);
    batch.count = Some(2);
    let e = decode_err(batch.encode());
    assert!(
        malformed(&e).contains("left after the batch's 2 records"),
        "{e}"
    );
}

#[test]
fn a_negative_record_count_is_an_error() {
    let mut batch = three_records(0);
    batch.count = Some(-1);
    assert!(malformed(&decode_err(batch.encode())).contains("negative record count"));
}

#[test]
fn a_record_longer_than_its_batch_is_an_error() {
    let batch = TestBatch::new(0, vec![TestRecord::new(0, None, Some(b"v"))]);
    let wire = batch.encode_with(|mut body| {
        // The record length (a one-byte varint) says 60 bytes.
        body[0] = 120;
        body
    });
    let e = decode_err(wire);
    assert!(malformed(&e).contains("record needs 60 bytes"), "{e}");
}

#[test]
fn bytes_left_inside_a_record_after_its_headers_are_an_error() {
    let batch = TestBatch::new(0, vec![TestRecord::new(0, None, Some(b"v"))]);
    let wire = batch.encode_with(|mut body| {
        // One byte more in the length (zigzag: +2), and that byte after the headers.
        body[0] += 2;
        body.push(0);
        body
    });
    let e = decode_err(wire);
    assert!(malformed(&e).contains("1 bytes left in the record"), "{e}");
}

#[test]
fn a_negative_header_count_or_key_length_is_an_error() {
    let batch = TestBatch::new(0, vec![TestRecord::new(0, None, None)]);
    let wire = batch.encode_with(|mut body| {
        // length, attributes, timestamp delta, offset delta, key, value, header count.
        assert_eq!(body.len(), 7);
        body.pop();
        write_varint(&mut body, -2);
        body
    });
    assert!(malformed(&decode_err(wire)).contains("negative header count -2"));

    let record = TestRecord::new(0, None, None).header("k", None);
    let wire = TestBatch::new(0, vec![record]).encode_with(|mut body| {
        // The header key length follows the header count, at byte 7.
        body[7] = 3; // zigzag -2
        body
    });
    assert!(malformed(&decode_err(wire)).contains("negative header key length"));
}

#[test]
fn a_length_below_any_format_is_an_error_not_a_truncation() {
    let mut wire = three_records(5).encode();
    wire[8..12].copy_from_slice(&13i32.to_be_bytes());
    let e = decode_err(wire);
    assert_eq!(e.offset, 5);
    assert!(malformed(&e).contains("batch length 13"), "{e}");
}

#[test]
fn a_v2_batch_shorter_than_its_header_is_an_error() {
    let mut wire = three_records(0).encode();
    wire.truncate(40);
    wire[8..12].copy_from_slice(&28i32.to_be_bytes());
    assert!(malformed(&decode_err(wire)).contains("shorter than the 61-byte v2 header"));
}

#[test]
fn a_negative_last_offset_delta_is_an_error() {
    let mut batch = three_records(0);
    batch.last_offset_delta = -1;
    assert!(malformed(&decode_err(batch.encode())).contains("negative last offset delta"));
}
