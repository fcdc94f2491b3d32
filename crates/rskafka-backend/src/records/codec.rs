//! Decompression of compressed record batches, in pure Rust (the default build needs no
//! C compiler): gzip (flate2 on miniz_oxide), snappy (snap), LZ4 frames (lz4_flex) and
//! zstd (ruzstd).

use std::io::Read;
use std::panic::{self, AssertUnwindSafe};

use bytes::Bytes;

use super::DecodeErrorKind;

/// The most bytes one batch may decompress to.
///
/// A few kilobytes of compressed zeros can claim gigabytes; decoding stops at this cap
/// with [`DecodeErrorKind::TooLarge`] instead of exhausting memory. Brokers refuse
/// batches past `message.max.bytes` (1 MiB by default, rarely raised past a few tens of
/// MiB) — checked on the compressed size, but a real batch does not compress 256 to 1
/// over a tens-of-MiB limit — so this leaves room for any batch a producer sends.
pub(super) const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

/// A compression codec, from attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec named by the low three attribute bits (the same bits in record batches
    /// v2 and legacy messages).
    pub(super) fn from_attributes(attributes: i16) -> Result<Self, DecodeErrorKind> {
        match attributes & 0x07 {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            // Masked to three bits: the cast cannot truncate.
            other => Err(DecodeErrorKind::UnknownCodec(other as u8)),
        }
    }

    /// The name in error messages (Kafka's `compression.type` value).
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Which LZ4 frame header checksum a payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lz4Header {
    /// The standard frame header checksum (record batches v2, legacy magic 1).
    Standard,
    /// Magic-0 producers computed the LZ4 frame header checksum over the frame's magic
    /// number too (KAFKA-3160); it is recomputed before decoding, as librdkafka does
    /// (Java skips the check for magic 0).
    KafkaLegacy,
}

/// Decompresses `input` into one buffer that the records then slice.
pub(super) fn decompress(
    codec: Codec,
    input: &[u8],
    lz4_header: Lz4Header,
) -> Result<Bytes, DecodeErrorKind> {
    decompress_capped(codec, input, lz4_header, MAX_DECOMPRESSED)
}

/// [`decompress`] with the cap as a parameter, so tests can reach it cheaply.
pub(super) fn decompress_capped(
    codec: Codec,
    input: &[u8],
    lz4_header: Lz4Header,
    limit: usize,
) -> Result<Bytes, DecodeErrorKind> {
    let cap = Cap { codec, limit };
    // The decompressors are other crates' code fed bytes from the network: should one
    // panic on input it did not foresee, that is a corrupt batch to report, not a
    // reason to take the fetching thread down.
    let out = panic::catch_unwind(AssertUnwindSafe(|| match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => cap.read(flate2::read::MultiGzDecoder::new(input), input.len()),
        Codec::Snappy => snappy(input, cap),
        Codec::Lz4 => lz4(input, lz4_header, cap),
        Codec::Zstd => zstd(input, cap),
    }))
    .unwrap_or_else(|_| Err(failed(codec, "the decompressor panicked")))?;
    Ok(Bytes::from(out))
}

/// The error for a decompressor's failure.
fn failed(codec: Codec, message: impl ToString) -> DecodeErrorKind {
    DecodeErrorKind::Decompress {
        codec: codec.name(),
        message: message.to_string(),
    }
}

/// The most bytes one codec's output may reach.
#[derive(Debug, Clone, Copy)]
struct Cap {
    codec: Codec,
    limit: usize,
}

impl Cap {
    fn exceeded(self) -> DecodeErrorKind {
        DecodeErrorKind::TooLarge {
            codec: self.codec.name(),
            limit: self.limit,
        }
    }

    /// A first capacity for the output: most batches compress 2-5 to 1, so four times
    /// the input saves a few regrowths.
    fn guess(self, compressed_len: usize) -> Vec<u8> {
        Vec::with_capacity(compressed_len.saturating_mul(4).min(self.limit))
    }

    /// Appends what `reader` decompresses to `out`, failing once `out` is past the cap.
    fn read_into(self, reader: impl Read, out: &mut Vec<u8>) -> Result<(), DecodeErrorKind> {
        // One byte past the cap tells "exactly at the cap" from "over it".
        let room = self.limit.saturating_sub(out.len()) as u64 + 1;
        reader
            .take(room)
            .read_to_end(out)
            .map_err(|e| failed(self.codec, e))?;
        if out.len() > self.limit {
            return Err(self.exceeded());
        }
        Ok(())
    }

    /// Reads a decompressing reader to its end.
    fn read(self, reader: impl Read, compressed_len: usize) -> Result<Vec<u8>, DecodeErrorKind> {
        let mut out = self.guess(compressed_len);
        self.read_into(reader, &mut out)?;
        Ok(out)
    }
}

/// The xerial snappy-java stream header: magic `0x82 "SNAPPY" 0`, then a version and a
/// minimum compatible version (`i32` each).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Snappy: raw snappy (librdkafka, Go clients) or the xerial framing of snappy-java,
/// which the Java producer writes: after the header, `[i32 length][raw snappy block]*`.
/// Detected by its magic, as librdkafka does; raw snappy cannot begin with it (after the
/// length varint `0x82 0x53`, the first tag `N` would be a copy, with nothing decoded
/// yet to copy from).
fn snappy(input: &[u8], cap: Cap) -> Result<Vec<u8>, DecodeErrorKind> {
    let codec = Codec::Snappy;
    let blocks = match input.strip_prefix(XERIAL_MAGIC) {
        Some(_) if input.len() >= XERIAL_HEADER_LEN => xerial_blocks(&input[XERIAL_HEADER_LEN..])?,
        _ => vec![input],
    };
    // Sizes first (each raw block states its own), so the output is allocated once, to
    // the byte, and the cap is checked before anything is decompressed.
    let mut total: usize = 0;
    for block in &blocks {
        let len = snap::raw::decompress_len(block).map_err(|e| failed(codec, e))?;
        total = total
            .checked_add(len)
            .filter(|&t| t <= cap.limit)
            .ok_or_else(|| cap.exceeded())?;
    }
    let mut out = vec![0; total];
    let mut decoder = snap::raw::Decoder::new();
    let mut at = 0;
    for block in blocks {
        let target = out.get_mut(at..).unwrap_or_default();
        at += decoder
            .decompress(block, target)
            .map_err(|e| failed(codec, e))?;
    }
    // Each block wrote exactly the length it stated (snap checks it), so `at == total`.
    out.truncate(at);
    Ok(out)
}

/// The raw snappy blocks of a xerial stream, after its header.
fn xerial_blocks(mut input: &[u8]) -> Result<Vec<&[u8]>, DecodeErrorKind> {
    let mut blocks = Vec::new();
    while !input.is_empty() {
        let (len, rest) = input
            .split_first_chunk::<4>()
            .ok_or_else(|| failed(Codec::Snappy, "xerial block length cut short"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > rest.len() {
            return Err(failed(
                Codec::Snappy,
                format!("xerial block of {len} bytes, {} left", rest.len()),
            ));
        }
        let (block, rest) = rest.split_at(len);
        blocks.push(block);
        input = rest;
    }
    Ok(blocks)
}

/// LZ4: the standard frame format (one or more frames), decoded by lz4_flex.
fn lz4(input: &[u8], header: Lz4Header, cap: Cap) -> Result<Vec<u8>, DecodeErrorKind> {
    match header {
        Lz4Header::Standard => cap.read(lz4_flex::frame::FrameDecoder::new(input), input.len()),
        Lz4Header::KafkaLegacy => {
            let fixed = fix_lz4_header_checksum(input)?;
            cap.read(
                lz4_flex::frame::FrameDecoder::new(fixed.as_slice()),
                input.len(),
            )
        }
    }
}

/// A copy of a magic-0 LZ4 frame with its header checksum computed as the LZ4 frame
/// format defines it: the second byte of xxHash32 over the frame descriptor (from the
/// FLG byte to before the checksum), where KAFKA-3160 producers hashed from the magic
/// number.
fn fix_lz4_header_checksum(input: &[u8]) -> Result<Vec<u8>, DecodeErrorKind> {
    const MAGIC_LEN: usize = 4;
    let flg = *input
        .get(MAGIC_LEN)
        .ok_or_else(|| failed(Codec::Lz4, "frame header cut short"))?;
    // FLG, BD, then the optional content size (FLG bit 3) and dictionary id (bit 0).
    let descriptor_len =
        2 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 };
    let checksum_at = MAGIC_LEN + descriptor_len;
    let descriptor = input
        .get(MAGIC_LEN..checksum_at)
        .filter(|_| checksum_at < input.len())
        .ok_or_else(|| failed(Codec::Lz4, "frame header cut short"))?;
    let checksum = (twox_hash::XxHash32::oneshot(0, descriptor) >> 8) as u8;
    let mut fixed = input.to_vec();
    if let Some(byte) = fixed.get_mut(checksum_at) {
        *byte = checksum;
    }
    Ok(fixed)
}

/// Zstandard: every frame in turn (a producer may write several back to back, and the
/// format allows skippable frames between them), each checked against its content
/// checksum when it has one.
fn zstd(mut input: &[u8], cap: Cap) -> Result<Vec<u8>, DecodeErrorKind> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};

    let codec = Codec::Zstd;
    let mut out = cap.guess(input.len());
    while !input.is_empty() {
        let mut frame = match ruzstd::decoding::StreamingDecoder::new(&mut input) {
            Ok(frame) => frame,
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                // The frame's magic and length have been read; its content follows.
                input = input
                    .get(length as usize..)
                    .ok_or_else(|| failed(codec, "skippable frame cut short"))?;
                continue;
            }
            Err(e) => return Err(failed(codec, e)),
        };
        cap.read_into(&mut frame, &mut out)?;
        let decoder = &frame.decoder;
        if let (Some(expected), Some(computed)) = (
            decoder.get_checksum_from_data(),
            decoder.get_calculated_checksum(),
        ) {
            if expected != computed {
                return Err(failed(
                    codec,
                    format!("content checksum {expected:#010x}, computed {computed:#010x}"),
                ));
            }
        }
    }
    Ok(out)
}
