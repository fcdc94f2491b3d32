//! Why a record batch could not be decoded.

use std::sync::Arc;

/// A fetched record batch that cannot be decoded.
///
/// Not transient: fetching the same offset again returns the same bytes, so `poll`
/// reports a fatal error with this as its [`source`](std::error::Error::source). It
/// names the partition and the batch's base offset, so the batch can be inspected
/// (`kafka-dump-log.sh`) or skipped by committing an offset past it.
///
/// `kind` is part of the message rather than the [`source`](std::error::Error::source):
/// an error chain printed link by link would otherwise say it twice.
#[derive(Debug, thiserror::Error)]
#[error("undecodable record batch in {topic} [{partition}] at offset {offset}: {kind}")]
#[non_exhaustive]
pub struct DecodeError {
    /// The topic fetched.
    pub topic: Arc<str>,
    /// The partition fetched.
    pub partition: i32,
    /// The base offset of the batch (for a legacy message set, the offset of the
    /// message) that failed.
    pub offset: i64,
    /// What is wrong with it.
    pub kind: DecodeErrorKind,
}

/// What is wrong with an undecodable record batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The checksum in the batch does not match its bytes: corrupted on disk or on the
    /// wire (CRC-32C for record batches v2, CRC-32 for legacy messages).
    #[error("checksum mismatch: the batch says {expected:#010x}, its bytes give {computed:#010x}")]
    Crc {
        /// The checksum written in the batch.
        expected: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// The attributes name a compression codec that Kafka does not define.
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    /// The compressed records do not decompress.
    #[error("{codec} decompression failed: {message}")]
    Decompress {
        /// The codec: `gzip`, `snappy`, `lz4` or `zstd`.
        codec: &'static str,
        /// What the decompressor reported.
        message: String,
    },
    /// The records decompress to more than the decoder accepts (see `limit`): a batch
    /// that large is far past any broker's `message.max.bytes`, so it is taken for a
    /// decompression bomb rather than buffered.
    #[error("{codec} records decompress to more than {limit} bytes")]
    TooLarge {
        /// The codec.
        codec: &'static str,
        /// The most bytes a batch may decompress to.
        limit: usize,
    },
    /// A magic byte (record format version) other than 0, 1 and 2.
    #[error("unsupported record format (magic byte {0})")]
    UnsupportedMagic(i8),
    /// The bytes do not follow the record format: a length or count that does not fit,
    /// records that end early, or bytes left over.
    #[error("malformed: {0}")]
    Malformed(String),
}

impl DecodeErrorKind {
    /// A [`Malformed`](Self::Malformed) error.
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::Malformed(message.into())
    }
}
