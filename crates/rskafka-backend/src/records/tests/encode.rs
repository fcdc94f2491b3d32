//! A test-only encoder, for what kafka-protocol's `RecordBatchEncoder` cannot write:
//! headers in order with duplicates and null values (it keeps them in a map), control
//! batches with any key, raw snappy, several zstd frames, and legacy message sets.

use std::io::Write;

/// A record of a [`TestBatch`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TestRecord {
    pub(crate) offset_delta: i32,
    pub(crate) timestamp_delta: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl TestRecord {
    pub(crate) fn new(offset_delta: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        Self {
            offset_delta,
            timestamp_delta: i64::from(offset_delta),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, key: &str, value: Option<&[u8]>) -> Self {
        self.headers
            .push((key.as_bytes().to_vec(), value.map(<[u8]>::to_vec)));
        self
    }
}

/// A v2 record batch; `attributes` carries the codec bits, which `compress` must match.
#[derive(Debug, Clone)]
pub(crate) struct TestBatch {
    pub(crate) base_offset: i64,
    pub(crate) attributes: i16,
    pub(crate) last_offset_delta: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    /// Written as the record count; `None` writes the number of records.
    pub(crate) count: Option<i32>,
    pub(crate) records: Vec<TestRecord>,
}

impl TestBatch {
    pub(crate) fn new(base_offset: i64, records: Vec<TestRecord>) -> Self {
        Self {
            base_offset,
            attributes: 0,
            last_offset_delta: records.iter().map(|r| r.offset_delta).max().unwrap_or(0),
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_999,
            producer_id: -1,
            count: None,
            records,
        }
    }

    /// The batch on the wire, its records passed through `compress`.
    pub(crate) fn encode_with(&self, compress: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
        let mut body = Vec::new();
        for record in &self.records {
            write_record(&mut body, record);
        }
        let body = compress(body);
        let mut after_crc = Vec::new();
        after_crc.extend_from_slice(&self.attributes.to_be_bytes());
        after_crc.extend_from_slice(&self.last_offset_delta.to_be_bytes());
        after_crc.extend_from_slice(&self.base_timestamp.to_be_bytes());
        after_crc.extend_from_slice(&self.max_timestamp.to_be_bytes());
        after_crc.extend_from_slice(&self.producer_id.to_be_bytes());
        after_crc.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        after_crc.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        let count = self.count.unwrap_or(self.records.len() as i32);
        after_crc.extend_from_slice(&count.to_be_bytes());
        after_crc.extend_from_slice(&body);

        let mut out = Vec::new();
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        let length = 4 + 1 + 4 + after_crc.len();
        out.extend_from_slice(&(length as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.push(2);
        out.extend_from_slice(&crc32c::crc32c(&after_crc).to_be_bytes());
        out.extend_from_slice(&after_crc);
        out
    }

    /// The batch on the wire, uncompressed.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_with(|body| body)
    }
}

fn write_record(out: &mut Vec<u8>, r: &TestRecord) {
    let mut body = vec![0u8]; // attributes
    write_varlong(&mut body, r.timestamp_delta);
    write_varint(&mut body, r.offset_delta);
    write_nullable(&mut body, r.key.as_deref());
    write_nullable(&mut body, r.value.as_deref());
    write_varint(&mut body, r.headers.len() as i32);
    for (key, value) in &r.headers {
        write_nullable(&mut body, Some(key));
        write_nullable(&mut body, value.as_deref());
    }
    write_varint(out, body.len() as i32);
    out.extend_from_slice(&body);
}

fn write_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            write_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
        None => write_varint(out, -1),
    }
}

pub(crate) fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_unsigned(out, ((value << 1) ^ (value >> 31)) as u32 as u64);
}

pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    write_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn write_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A legacy message (magic 0 or 1) with its CRC-32.
pub(crate) fn legacy_message(
    offset: i64,
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut after_crc = vec![magic as u8, attributes as u8];
    if magic == 1 {
        after_crc.extend_from_slice(&timestamp.to_be_bytes());
    }
    for field in [key, value] {
        match field {
            Some(bytes) => {
                after_crc.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                after_crc.extend_from_slice(bytes);
            }
            None => after_crc.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&((4 + after_crc.len()) as i32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&after_crc).to_be_bytes());
    out.extend_from_slice(&after_crc);
    out
}

pub(crate) fn gzip(data: Vec<u8>) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&data).unwrap();
    encoder.finish().unwrap()
}

pub(crate) fn snappy_raw(data: Vec<u8>) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&data).unwrap()
}

/// The xerial snappy-java framing, in blocks of `block` bytes.
pub(crate) fn snappy_xerial(data: Vec<u8>, block: usize) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\x00".to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for chunk in data.chunks(block.max(1)) {
        let compressed = snappy_raw(chunk.to_vec());
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    out
}

pub(crate) fn lz4_frame(data: Vec<u8>) -> Vec<u8> {
    let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
    encoder.write_all(&data).unwrap();
    encoder.finish().unwrap()
}

/// An LZ4 frame with the header checksum Kafka's magic-0 producers wrote (KAFKA-3160):
/// xxHash32 from the frame's magic number rather than from its descriptor.
pub(crate) fn lz4_frame_kafka_legacy(data: Vec<u8>) -> Vec<u8> {
    let mut frame = lz4_frame(data);
    let flg = frame[4];
    let checksum_at =
        4 + 2 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
    frame[checksum_at] = (twox_hash::XxHash32::oneshot(0, &frame[..checksum_at]) >> 8) as u8;
    frame
}

pub(crate) fn zstd_frame(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}
