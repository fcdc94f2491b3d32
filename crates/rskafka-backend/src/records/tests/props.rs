//! Properties: round trips against kafka-protocol's encoder (independent of this
//! decoder) and the test encoder, and no panic on any input.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use ktm_core::{Header, Message, Timestamp};
use proptest::collection::vec;
use proptest::prelude::*;

use super::encode::{self, legacy_message, TestBatch, TestRecord};
use super::{topic, try_decode, PARTITION};

fn bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(vec(any::<u8>(), 0..max))
}

/// Key, value, headers (unique keys: kafka-protocol keeps them in a map) and timestamp.
type KpRecord = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
    i64,
);

fn kp_record() -> impl Strategy<Value = KpRecord> {
    (
        bytes(40),
        bytes(200),
        vec(("\\PC{0,8}", bytes(20)), 0..4),
        0i64..1 << 42,
    )
}

const COMPRESSIONS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// A compressor of the test encoder.
type Compress = fn(Vec<u8>) -> Vec<u8>;

/// A pure-Rust compressor of the test encoder and its codec bits.
fn test_codec(which: usize) -> (i16, Compress) {
    match which {
        0 => (0, |b| b),
        1 => (1, encode::gzip),
        2 => (2, encode::snappy_raw),
        3 => (2, |b| encode::snappy_xerial(b, 64)),
        4 => (3, encode::lz4_frame),
        _ => (4, |b| encode::zstd_frame(&b)),
    }
}

fn test_record() -> impl Strategy<Value = TestRecord> {
    (
        bytes(30),
        bytes(100),
        vec((vec(any::<u8>(), 0..10), bytes(10)), 0..5),
        any::<i64>(),
    )
        .prop_map(|(key, value, headers, timestamp_delta)| TestRecord {
            offset_delta: 0,
            timestamp_delta,
            key,
            value,
            headers,
        })
}

/// A valid batch from the test encoder, compressed or not.
fn valid_batch() -> impl Strategy<Value = Vec<u8>> {
    (vec(test_record(), 0..6), 0..6usize, any::<i64>()).prop_map(|(mut records, which, base)| {
        for (i, r) in records.iter_mut().enumerate() {
            r.offset_delta = i as i32;
        }
        let (bits, compress) = test_codec(which);
        let mut batch = TestBatch::new(base >> 2, records);
        batch.attributes = bits;
        batch.encode_with(compress)
    })
}

/// Recomputes a v2 batch's CRC-32C, so mutations reach the record parser.
fn fix_crc(wire: &mut [u8]) {
    if wire.len() >= 61 && wire[16] == 2 {
        let crc = crc32c::crc32c(&wire[21..]);
        wire[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

proptest! {
    #[test]
    fn round_trip_against_kafka_protocols_encoder(
        base in 0i64..1 << 40,
        compression in 0..COMPRESSIONS.len(),
        records in vec(kp_record(), 1..20),
    ) {
        let records: Vec<Record> = records
            .into_iter()
            .zip(base..)
            .map(|((key, value, headers, timestamp), offset)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                // Constant offset - sequence keeps the records in one batch.
                sequence: offset as i32,
                timestamp,
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (StrBytes::from_string(k), v.map(Bytes::from)))
                    .collect::<IndexMap<_, _>>(),
            })
            .collect();
        let mut wire = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: COMPRESSIONS[compression] };
        RecordBatchEncoder::encode(&mut wire, &records, &options).unwrap();

        let decoded = try_decode(wire.freeze()).unwrap();
        prop_assert!(!decoded.truncated);
        let messages: Vec<Message> =
            decoded.batches.into_iter().flat_map(|b| b.records).collect();
        let expected: Vec<Message> = records
            .iter()
            .map(|r| {
                Message::builder(topic(), PARTITION, r.offset)
                    .maybe_key(r.key.clone())
                    .maybe_payload(r.value.clone())
                    .timestamp(Timestamp::CreateTime(r.timestamp))
                    .headers(r.headers.iter().map(|(k, v)| Header::new(k.as_str(), v.clone())))
                    .build()
            })
            .collect();
        prop_assert_eq!(messages, expected);
    }

    #[test]
    fn round_trip_with_duplicate_and_null_headers_in_any_codec(
        records in vec(test_record(), 0..8),
        which in 0..6usize,
        base in 0i64..1 << 50,
        base_timestamp in any::<i64>(),
    ) {
        let mut batch = TestBatch::new(base, records);
        for (i, r) in batch.records.iter_mut().enumerate() {
            r.offset_delta = 2 * i as i32;
        }
        batch.last_offset_delta = (2 * batch.records.len()) as i32;
        batch.base_timestamp = base_timestamp;
        let (bits, compress) = test_codec(which);
        batch.attributes = bits;
        let decoded = try_decode(batch.encode_with(compress)).unwrap();
        prop_assert!(!decoded.truncated);
        prop_assert_eq!(decoded.batches.len(), 1);
        let b = &decoded.batches[0];
        prop_assert_eq!(b.last_offset, base + batch.last_offset_delta as i64);
        prop_assert_eq!(b.records.len(), batch.records.len());
        for (m, r) in b.records.iter().zip(&batch.records) {
            prop_assert_eq!(m.offset(), base + r.offset_delta as i64);
            prop_assert_eq!(m.key(), r.key.as_deref());
            prop_assert_eq!(m.payload(), r.value.as_deref());
            prop_assert_eq!(
                m.timestamp(),
                Some(Timestamp::CreateTime(base_timestamp.wrapping_add(r.timestamp_delta)))
            );
            let headers: Vec<(String, Option<&[u8]>)> = r
                .headers
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.as_deref()))
                .collect();
            let got: Vec<(String, Option<&[u8]>)> =
                m.headers().iter().map(|h| (h.key.clone(), h.value.as_deref())).collect();
            prop_assert_eq!(got, headers);
        }
    }

    #[test]
    fn a_batch_cut_anywhere_is_truncated_never_an_error(wire in valid_batch(), cut in any::<prop::sample::Index>()) {
        let keep = cut.index(wire.len());
        let decoded = try_decode(wire[..keep].to_vec()).unwrap();
        prop_assert!(decoded.batches.is_empty());
        prop_assert_eq!(decoded.truncated, keep > 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(wire in vec(any::<u8>(), 0..512)) {
        let _ = try_decode(wire);
    }

    #[test]
    fn arbitrary_records_behind_a_valid_header_and_crc_never_panic(
        body in vec(any::<u8>(), 0..256),
        attributes in any::<i16>(),
        count in prop_oneof![0..10i32, any::<i32>()],
    ) {
        let mut batch = TestBatch::new(0, Vec::new());
        batch.attributes = attributes;
        batch.count = Some(count);
        let _ = try_decode(batch.encode_with(|_| body));
    }

    #[test]
    fn mutated_batches_never_panic(
        wire in valid_batch(),
        mutations in vec((any::<prop::sample::Index>(), 1..=255u8), 1..6),
        with_crc in any::<bool>(),
    ) {
        let mut wire = wire;
        for (at, xor) in mutations {
            let at = at.index(wire.len());
            wire[at] ^= xor;
        }
        if with_crc {
            fix_crc(&mut wire);
        }
        let _ = try_decode(wire);
    }

    #[test]
    fn mutated_legacy_message_sets_never_panic(
        values in vec(bytes(30), 1..4),
        magic in 0..=1i8,
        codec in 0..4i8,
        at in any::<prop::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let mut set = Vec::new();
        for (i, value) in values.iter().enumerate() {
            set.extend(legacy_message(i as i64, magic, 0, 0, None, value.as_deref()));
        }
        let mut wire = match codec {
            0 => set,
            1 => legacy_message(9, magic, 1, 0, None, Some(&encode::gzip(set))),
            2 => legacy_message(9, magic, 2, 0, None, Some(&encode::snappy_xerial(set, 32))),
            _ => legacy_message(9, magic, 3, 0, None, Some(&encode::lz4_frame(set))),
        };
        let at = at.index(wire.len());
        wire[at] ^= xor;
        // Fix the (first) message's CRC-32, so the mutation reaches the parser.
        if wire.len() >= 16 {
            let size = i32::from_be_bytes(wire[8..12].try_into().unwrap());
            if let Some(end) = usize::try_from(size).ok().and_then(|s| s.checked_add(12)).filter(|&e| e <= wire.len() && e >= 16) {
                let crc = crc32fast::hash(&wire[16..end]);
                wire[12..16].copy_from_slice(&crc.to_be_bytes());
            }
        }
        let _ = try_decode(wire);
    }
}
