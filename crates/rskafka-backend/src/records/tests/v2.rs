//! Record batches v2: fields, headers, timestamps, zero-copy.

use bytes::Bytes;
use ktm_core::{Header, Message, Timestamp};

use super::encode::{TestBatch, TestRecord};
use super::{decode_ok, single, PARTITION};

#[test]
fn offsets_keys_values_and_create_times_of_an_uncompressed_batch() {
    let batch = TestBatch::new(
        100,
        vec![
            TestRecord::new(0, Some(b"k0"), Some(b"v0")),
            TestRecord::new(1, None, Some(b"")),
            TestRecord::new(2, Some(b""), None),
        ],
    );
    let b = single(batch.encode());
    assert_eq!((b.base_offset, b.last_offset), (100, 102));
    assert_eq!(
        (b.producer_id, b.is_transactional, b.control),
        (-1, false, None)
    );
    let offsets: Vec<i64> = b.records.iter().map(Message::offset).collect();
    assert_eq!(offsets, [100, 101, 102]);
    assert!(b
        .records
        .iter()
        .all(|m| m.topic() == "t" && m.partition() == PARTITION));
    // Null and empty stay apart, for keys and values.
    let keys: Vec<Option<&[u8]>> = b.records.iter().map(Message::key).collect();
    assert_eq!(keys, [Some(&b"k0"[..]), None, Some(&b""[..])]);
    let values: Vec<Option<&[u8]>> = b.records.iter().map(Message::payload).collect();
    assert_eq!(values, [Some(&b"v0"[..]), Some(&b""[..]), None]);
    let times: Vec<Option<Timestamp>> = b.records.iter().map(Message::timestamp).collect();
    let base = batch.base_timestamp;
    assert_eq!(
        times,
        [0, 1, 2].map(|d| Some(Timestamp::CreateTime(base + d)))
    );
}

#[test]
fn headers_keep_their_order_duplicates_null_values_and_unicode_keys() {
    let record = TestRecord::new(0, Some(b"k"), Some(b"v"))
        .header("ünïcode", Some("välue".as_bytes()))
        .header("empty", Some(b""))
        .header("dup", Some(b"1"))
        .header("null", None)
        .header("dup", Some(b"2"));
    let b = single(TestBatch::new(0, vec![record]).encode());
    let expected = [
        Header::new("ünïcode", Some("välue")),
        Header::new("empty", Some("")),
        Header::new("dup", Some("1")),
        Header::new("null", None::<Bytes>),
        Header::new("dup", Some("2")),
    ];
    assert_eq!(b.records[0].headers(), expected);
}

#[test]
fn header_keys_that_are_not_utf8_are_read_lossily_as_java_does() {
    let mut record = TestRecord::new(0, None, None);
    record
        .headers
        .push((vec![b'a', 0xff, b'b'], Some(b"v".to_vec())));
    let b = single(TestBatch::new(0, vec![record]).encode());
    assert_eq!(b.records[0].headers()[0].key, "a\u{fffd}b");
}

#[test]
fn log_append_time_gives_every_record_the_batch_max_timestamp() {
    let mut batch = TestBatch::new(
        0,
        (0..3)
            .map(|i| TestRecord::new(i, None, Some(b"v")))
            .collect(),
    );
    batch.attributes = 0x08;
    batch.max_timestamp = 1_800_000_000_000;
    let b = single(batch.encode());
    assert!(b
        .records
        .iter()
        .all(|m| m.timestamp() == Some(Timestamp::LogAppendTime(1_800_000_000_000))));
}

#[test]
fn uncompressed_keys_values_and_header_values_slice_the_response() {
    let record = TestRecord::new(0, Some(b"key"), Some(b"value")).header("h", Some(b"hv"));
    let wire = Bytes::from(TestBatch::new(0, vec![record]).encode());
    let b = single(wire.clone());
    let inside = |bytes: &Bytes| wire.as_ptr_range().contains(&bytes.as_ptr());
    let m = &b.records[0];
    assert!(inside(m.key_bytes().unwrap()));
    assert!(inside(m.payload_bytes().unwrap()));
    assert!(inside(m.headers()[0].value.as_ref().unwrap()));
}

#[test]
fn batches_come_in_order_with_their_producer_and_transaction_flag() {
    let mut first = TestBatch::new(10, vec![TestRecord::new(0, None, Some(b"a"))]);
    first.producer_id = 42;
    first.attributes = 0x10;
    let second = TestBatch::new(11, vec![TestRecord::new(0, None, Some(b"b"))]);
    let mut wire = first.encode();
    wire.extend(second.encode());
    let batches = decode_ok(wire);
    assert_eq!(batches.len(), 2);
    assert_eq!(
        (batches[0].producer_id, batches[0].is_transactional),
        (42, true)
    );
    assert_eq!(
        (batches[1].producer_id, batches[1].is_transactional),
        (-1, false)
    );
    assert_eq!(batches[1].records[0].payload(), Some(&b"b"[..]));
}

#[test]
fn a_batch_emptied_by_compaction_still_moves_the_position_to_its_last_offset() {
    let mut batch = TestBatch::new(50, Vec::new());
    batch.last_offset_delta = 4;
    let b = single(batch.encode());
    assert!(b.records.is_empty());
    assert_eq!((b.base_offset, b.last_offset), (50, 54));
}

#[test]
fn offset_gaps_left_by_compaction_are_kept() {
    let batch = TestBatch::new(
        7,
        vec![
            TestRecord::new(0, None, None),
            TestRecord::new(5, None, None),
        ],
    );
    let b = single(batch.encode());
    assert_eq!(b.records[1].offset(), 12);
    assert_eq!(b.last_offset, 12);
}

#[test]
fn an_empty_response_has_no_batches_and_is_not_truncated() {
    assert!(decode_ok(Vec::new()).is_empty());
}
