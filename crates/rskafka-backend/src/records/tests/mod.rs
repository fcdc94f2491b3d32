//! The decoder's tests: per feature (`v2`, `control`, `codecs`, `legacy`, `errors`) and
//! properties (`props`), over batches written by kafka-protocol's encoder and by the
//! test-only `encode`.

mod codecs;
mod control;
pub(crate) mod encode;
mod errors;
mod legacy;
mod props;
mod v2;

use std::sync::Arc;

use bytes::Bytes;

use super::{decode, Batch, DecodeError, DecodeErrorKind, Decoded};

/// The partition every test decodes for.
const PARTITION: i32 = 3;

fn topic() -> Arc<str> {
    Arc::from("t")
}

fn try_decode(bytes: impl Into<Bytes>) -> Result<Decoded, DecodeError> {
    decode(&bytes.into(), &topic(), PARTITION)
}

/// Decodes bytes that must decode, with no partial batch at the end.
fn decode_ok(bytes: impl Into<Bytes>) -> Vec<Batch> {
    let decoded = try_decode(bytes).expect("decodes");
    assert!(!decoded.truncated, "nothing truncated");
    decoded.batches
}

/// The one batch the bytes hold.
fn single(bytes: impl Into<Bytes>) -> Batch {
    let mut batches = decode_ok(bytes);
    assert_eq!(batches.len(), 1, "one batch");
    batches.remove(0)
}

/// The error for bytes that must not decode.
fn decode_err(bytes: impl Into<Bytes>) -> DecodeError {
    match try_decode(bytes) {
        Ok(decoded) => panic!("decoded: {decoded:?}"),
        Err(e) => e,
    }
}

/// The message of a [`DecodeErrorKind::Malformed`].
fn malformed(error: &DecodeError) -> &str {
    match &error.kind {
        DecodeErrorKind::Malformed(m) => m,
        other => panic!("not malformed: {other:?}"),
    }
}
