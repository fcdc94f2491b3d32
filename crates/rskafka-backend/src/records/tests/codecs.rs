//! Every codec decodes to the same records as the uncompressed batch; corrupt data and
//! decompression bombs are typed errors.

use super::encode::{self, TestBatch, TestRecord};
use super::{decode_err, single};
use crate::records::codec::{decompress_capped, Codec, Lz4Header};
use crate::records::DecodeErrorKind;

fn records() -> Vec<TestRecord> {
    (0..50)
        .map(|i| {
            let value = format!("value {i} ").repeat(i as usize % 7);
            TestRecord::new(
                i,
                Some(format!("key {i}").as_bytes()),
                Some(value.as_bytes()),
            )
            .header("dup", Some(b"1"))
            .header("dup", None)
        })
        .collect()
}

/// The batch of [`records`] with codec `bits`, compressed by `compress`.
fn compressed(bits: i16, compress: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut batch = TestBatch::new(1000, records());
    batch.attributes = bits;
    batch.encode_with(compress)
}

fn assert_same_as_uncompressed(bits: i16, compress: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let expected = single(TestBatch::new(1000, records()).encode());
    let b = single(compressed(bits, compress));
    assert_eq!(b.records, expected.records);
    assert_eq!(b.last_offset, 1049);
}

#[test]
fn gzip() {
    assert_same_as_uncompressed(1, encode::gzip);
}

#[test]
fn gzip_with_several_members() {
    assert_same_as_uncompressed(1, |body| {
        let (a, b) = body.split_at(body.len() / 2);
        let mut out = encode::gzip(a.to_vec());
        out.extend(encode::gzip(b.to_vec()));
        out
    });
}

#[test]
fn raw_snappy() {
    assert_same_as_uncompressed(2, encode::snappy_raw);
}

#[test]
fn xerial_framed_snappy_as_the_java_producer_writes_it() {
    assert_same_as_uncompressed(2, |body| encode::snappy_xerial(body, 100));
}

#[test]
fn lz4_frames() {
    assert_same_as_uncompressed(3, encode::lz4_frame);
}

#[test]
fn zstd_frames_concatenated_with_a_skippable_frame_between() {
    assert_same_as_uncompressed(4, |body| {
        let (a, b) = body.split_at(body.len() / 3);
        let mut out = encode::zstd_frame(a);
        // A skippable frame: magic 0x184D2A50..5F, a length, that many bytes.
        out.extend_from_slice(&0x184D_2A53u32.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(b"abc");
        out.extend(encode::zstd_frame(b));
        out
    });
}

#[test]
fn corrupt_compressed_data_names_its_codec() {
    for (bits, name) in [(1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")] {
        let e = decode_err(compressed(bits, |_| b"not compressed at all".to_vec()));
        assert!(
            matches!(&e.kind, DecodeErrorKind::Decompress { codec, .. } if *codec == name),
            "{e}"
        );
        assert_eq!(e.offset, 1000);
    }
}

#[test]
fn a_corrupt_xerial_block_length_is_an_error() {
    let mut data = encode::snappy_xerial(b"hello".to_vec(), 100);
    data[16..20].copy_from_slice(&1000u32.to_be_bytes());
    let e = decompress_capped(Codec::Snappy, &data, Lz4Header::Standard, 1 << 20).unwrap_err();
    assert!(e.to_string().contains("xerial block of 1000 bytes"), "{e}");
}

#[test]
fn every_codec_stops_at_the_cap() {
    let zeros = vec![0u8; 1001];
    let cases: [(Codec, Vec<u8>); 5] = [
        (Codec::Gzip, encode::gzip(zeros.clone())),
        (Codec::Snappy, encode::snappy_raw(zeros.clone())),
        (Codec::Snappy, encode::snappy_xerial(zeros.clone(), 300)),
        (Codec::Lz4, encode::lz4_frame(zeros.clone())),
        (Codec::Zstd, encode::zstd_frame(&zeros)),
    ];
    for (codec, data) in cases {
        let fits = decompress_capped(codec, &data, Lz4Header::Standard, 1001).unwrap();
        assert_eq!(fits.len(), 1001, "{codec:?}");
        let e = decompress_capped(codec, &data, Lz4Header::Standard, 1000).unwrap_err();
        assert!(
            matches!(e, DecodeErrorKind::TooLarge { limit: 1000, .. }),
            "{codec:?}: {e}"
        );
    }
}

#[test]
fn a_snappy_block_claiming_more_than_the_real_cap_allocates_nothing() {
    // Raw snappy starts with the uncompressed length: 300 MiB, with nothing after it.
    let mut data = Vec::new();
    let mut len = 300u32 << 20;
    while len >= 0x80 {
        data.push(len as u8 | 0x80);
        len >>= 7;
    }
    data.push(len as u8);
    let e = decode_err(compressed(2, |_| data));
    assert!(
        matches!(
            e.kind,
            DecodeErrorKind::TooLarge {
                codec: "snappy",
                ..
            }
        ),
        "{e}"
    );
}
