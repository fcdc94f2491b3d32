//! Kafka requests spoken by hand, for what no client library lets a test do: a
//! Produce (v3) of a record batch built here, with attributes a producer never sets
//! itself (a LogAppendTime batch, as a broker serves it after stamping it), and a
//! read_committed Fetch (v4) that shows what the broker itself says about a partition:
//! its high watermark, its last stable offset, its list of aborted transactions and
//! its batches' attributes; and ApiVersions, to learn what the broker offers.
//! Only the fields these tests need are decoded; layouts are Kafka's (non-flexible
//! versions, request header v1, response header v0).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A record of a hand-built batch.
#[derive(Clone, Debug)]
pub struct RawRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The record's own (producer) timestamp.
    pub timestamp: i64,
}

/// A v2 record batch of `records` at base offset 0 (the broker assigns the real one),
/// without producer id. With `log_append_time`, the batch says LogAppendTime and carries
/// that time as its max timestamp, as a broker stamps a batch for a topic with
/// `message.timestamp.type=LogAppendTime` (the records keep their own timestamps, which
/// readers must then ignore).
pub fn record_batch(records: &[RawRecord], log_append_time: Option<i64>) -> Vec<u8> {
    let first_timestamp = records.first().map_or(0, |r| r.timestamp);
    let mut body = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0); // attributes
        varint(&mut rec, r.timestamp - first_timestamp);
        varint(&mut rec, i64::try_from(i).unwrap());
        nullable_varint_bytes(&mut rec, r.key.as_deref());
        nullable_varint_bytes(&mut rec, r.value.as_deref());
        varint(&mut rec, i64::try_from(r.headers.len()).unwrap());
        for (k, v) in &r.headers {
            nullable_varint_bytes(&mut rec, Some(k.as_bytes()));
            nullable_varint_bytes(&mut rec, v.as_deref());
        }
        varint(&mut body, i64::try_from(rec.len()).unwrap());
        body.extend_from_slice(&rec);
    }
    let max_timestamp =
        log_append_time.unwrap_or_else(|| records.iter().map(|r| r.timestamp).max().unwrap_or(0));
    // Bit 3: the timestamp type (1 = LogAppendTime); no compression.
    let attributes: i16 = if log_append_time.is_some() { 0x08 } else { 0 };

    // From the attributes on: the part the CRC covers.
    let mut tail = Vec::new();
    tail.extend_from_slice(&attributes.to_be_bytes());
    let last_offset_delta = i32::try_from(records.len()).unwrap() - 1;
    tail.extend_from_slice(&last_offset_delta.to_be_bytes());
    tail.extend_from_slice(&first_timestamp.to_be_bytes());
    tail.extend_from_slice(&max_timestamp.to_be_bytes());
    tail.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    tail.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    tail.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    tail.extend_from_slice(&i32::try_from(records.len()).unwrap().to_be_bytes());
    tail.extend_from_slice(&body);

    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
                                                  // Batch length: everything after this field (epoch 4, magic 1, crc 4, tail).
    batch.extend_from_slice(&i32::try_from(4 + 1 + 4 + tail.len()).unwrap().to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&tail).to_be_bytes());
    batch.extend_from_slice(&tail);
    batch
}

/// Produces `batch` to `topic[partition]` at the broker `addr` (its leader), acks=all;
/// the base offset the broker gave it.
pub fn produce(addr: &str, topic: &str, partition: i32, batch: &[u8]) -> i64 {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&i32::try_from(batch.len()).unwrap().to_be_bytes());
    body.extend_from_slice(batch);

    let response = call(addr, 0, 3, &body);
    let mut r = Reader(&response);
    assert_eq!(r.i32(), 1, "one topic in the produce response");
    let name = r.string();
    assert_eq!(name, topic);
    assert_eq!(r.i32(), 1, "one partition in the produce response");
    assert_eq!(r.i32(), partition);
    let error = r.i16();
    assert_eq!(
        error, 0,
        "the broker refused the hand-built batch: error code {error}"
    );
    r.i64()
}

/// What a read_committed Fetch (v4) says about a partition.
#[derive(Debug)]
pub struct FetchAnswer {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// (producer id, first offset) of each aborted transaction in the fetched range.
    pub aborted: Vec<(i64, i64)>,
    /// The headers of the whole record batches the answer holds, in log order.
    pub batches: Vec<BatchHeader>,
}

/// The fixed part of a v2 record batch, as the broker stores it.
#[derive(Clone, Copy, Debug)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    /// Bits 0-2: the codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd); bit 3:
    /// LogAppendTime; bit 4: transactional; bit 5: control batch.
    pub attributes: i16,
    pub record_count: i32,
}

impl BatchHeader {
    /// The offset after the batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta) + 1
    }

    /// The codec's name, as librdkafka's `compression.codec` spells it.
    pub fn codec(&self) -> &'static str {
        match self.attributes & 0x07 {
            0 => "none",
            1 => "gzip",
            2 => "snappy",
            3 => "lz4",
            4 => "zstd",
            _ => "unknown",
        }
    }
}

/// Fetches `topic[partition]` from `offset` at the broker `addr` (its leader), with
/// isolation read_committed and no wait.
pub fn fetch_committed(addr: &str, topic: &str, partition: i32, offset: i64) -> FetchAnswer {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    body.extend_from_slice(&0i32.to_be_bytes()); // max wait
    body.extend_from_slice(&0i32.to_be_bytes()); // min bytes
    body.extend_from_slice(&(16i32 << 20).to_be_bytes()); // max bytes
    body.push(1); // isolation: read_committed
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes()); // fetch offset
    body.extend_from_slice(&(16i32 << 20).to_be_bytes()); // partition max bytes

    let response = call(addr, 1, 4, &body);
    let mut r = Reader(&response);
    let _throttle = r.i32();
    assert_eq!(r.i32(), 1, "one topic in the fetch response");
    assert_eq!(r.string(), topic);
    assert_eq!(r.i32(), 1, "one partition in the fetch response");
    assert_eq!(r.i32(), partition);
    let error = r.i16();
    assert_eq!(error, 0, "fetch error code {error}");
    let high_watermark = r.i64();
    let last_stable_offset = r.i64();
    let count = r.i32();
    let aborted = (0..count.max(0)).map(|_| (r.i64(), r.i64())).collect();
    let size = r.i32();
    let mut batches = Vec::new();
    if size > 0 {
        let (mut records, _) = r.0.split_at(usize::try_from(size).unwrap());
        // Whole batches only: the last one may be cut off at the size limit.
        while records.len() >= 61 {
            let mut b = Reader(records);
            let base_offset = b.i64();
            let length = usize::try_from(b.i32()).unwrap();
            if records.len() < 12 + length {
                break;
            }
            let _leader_epoch = b.i32();
            let _magic: [u8; 1] = b.take();
            let _crc = b.i32();
            let attributes = b.i16();
            let last_offset_delta = b.i32();
            let _first_timestamp = b.i64();
            let _max_timestamp = b.i64();
            let _producer: [u8; 14] = b.take();
            let record_count = b.i32();
            batches.push(BatchHeader {
                base_offset,
                last_offset_delta,
                attributes,
                record_count,
            });
            records = &records[12 + length..];
        }
    }
    FetchAnswer {
        high_watermark,
        last_stable_offset,
        aborted,
        batches,
    }
}

/// Every batch of `topic[partition]` up to its high watermark, read with
/// [`fetch_committed`] from the start (librdkafka's mock cluster answers one batch per
/// Fetch, so this asks again after the last batch it got).
pub fn log_batches(addr: &str, topic: &str, partition: i32) -> Vec<BatchHeader> {
    let mut batches: Vec<BatchHeader> = Vec::new();
    let mut offset = 0;
    loop {
        let answer = fetch_committed(addr, topic, partition, offset);
        let before = batches.len();
        batches.extend(answer.batches.iter().filter(|b| b.next_offset() > offset));
        match batches.last() {
            Some(last) if batches.len() > before => offset = last.next_offset(),
            _ => return batches,
        }
        if offset >= answer.last_stable_offset {
            return batches;
        }
    }
}

/// The API keys the broker offers (ApiVersions v0).
pub fn api_keys(addr: &str) -> Vec<i16> {
    let response = call(addr, 18, 0, &[]);
    let mut r = Reader(&response);
    let error = r.i16();
    assert_eq!(error, 0, "ApiVersions error code {error}");
    let count = r.i32();
    (0..count.max(0))
        .map(|_| {
            let key = r.i16();
            let (_min, _max) = (r.i16(), r.i16());
            key
        })
        .collect()
}

/// Sends one request (header v1) and returns the response after its correlation id.
fn call(addr: &str, api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut request = Vec::new();
    request.extend_from_slice(&api_key.to_be_bytes());
    request.extend_from_slice(&version.to_be_bytes());
    request.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    string(&mut request, "ktm-proof-wire");
    request.extend_from_slice(body);
    let mut frame = i32::try_from(request.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&request);
    stream.write_all(&frame).expect("send the request");

    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .expect("read the response size");
    let mut response = vec![0u8; usize::try_from(i32::from_be_bytes(size)).unwrap()];
    stream.read_exact(&mut response).expect("read the response");
    assert_eq!(&response[..4], &7i32.to_be_bytes(), "correlation id");
    response.split_off(4)
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&i16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A zigzag varint, as record fields are written.
fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)).cast_unsigned();
    loop {
        let byte = u8::try_from(z & 0x7f).unwrap();
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn nullable_varint_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => varint(out, -1),
        Some(b) => {
            varint(out, i64::try_from(b.len()).unwrap());
            out.extend_from_slice(b);
        }
    }
}

/// CRC-32C (Castagnoli), the record batch checksum.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().unwrap()
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
    fn string(&mut self) -> String {
        let len = usize::try_from(self.i16()).unwrap();
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).unwrap()
    }
}
