//! A bounds-checked reader over a window of a [`Bytes`] buffer.
//!
//! Every read checks the bytes left and fails with a [`DecodeErrorKind::Malformed`]
//! that names the field, so corrupt input can never index out of bounds; byte fields
//! come back as [`Bytes::slice`]s of the buffer, never copies.

use bytes::Bytes;

use super::DecodeErrorKind;

/// Reads big-endian integers, varints and byte fields from `buf[pos..end]`.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    /// Exclusive; never past `buf.len()`.
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    pub(super) fn new(buf: &'a Bytes) -> Self {
        Self {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// Bytes left to read.
    pub(super) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Whether everything has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// The unread bytes, without consuming them.
    pub(super) fn rest(&self) -> &'a [u8] {
        // `pos <= end <= buf.len()` always holds, so this never falls back.
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// A reader over the next `len` bytes, which this one skips.
    pub(super) fn split(&mut self, len: usize, what: &str) -> Result<Reader<'a>, DecodeErrorKind> {
        let start = self.advance(len, what)?;
        Ok(Reader {
            buf: self.buf,
            pos: start,
            end: start + len,
        })
    }

    /// The next `len` bytes as a zero-copy slice of the buffer.
    pub(super) fn bytes(&mut self, len: usize, what: &str) -> Result<Bytes, DecodeErrorKind> {
        let start = self.advance(len, what)?;
        Ok(self.buf.slice(start..start + len))
    }

    /// The next `len` bytes, borrowed (for fields that are copied anyway).
    pub(super) fn slice(&mut self, len: usize, what: &str) -> Result<&'a [u8], DecodeErrorKind> {
        let start = self.advance(len, what)?;
        Ok(&self.buf[start..start + len])
    }

    /// Moves past `len` bytes and returns where they start.
    fn advance(&mut self, len: usize, what: &str) -> Result<usize, DecodeErrorKind> {
        if len > self.remaining() {
            return Err(DecodeErrorKind::malformed(format!(
                "{what} needs {len} bytes, {} left",
                self.remaining()
            )));
        }
        let start = self.pos;
        self.pos += len;
        Ok(start)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeErrorKind> {
        let mut out = [0; N];
        out.copy_from_slice(self.slice(N, what)?);
        Ok(out)
    }

    pub(super) fn i8(&mut self, what: &str) -> Result<i8, DecodeErrorKind> {
        self.array(what).map(i8::from_be_bytes)
    }

    pub(super) fn i16(&mut self, what: &str) -> Result<i16, DecodeErrorKind> {
        self.array(what).map(i16::from_be_bytes)
    }

    pub(super) fn i32(&mut self, what: &str) -> Result<i32, DecodeErrorKind> {
        self.array(what).map(i32::from_be_bytes)
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, DecodeErrorKind> {
        self.array(what).map(u32::from_be_bytes)
    }

    pub(super) fn i64(&mut self, what: &str) -> Result<i64, DecodeErrorKind> {
        self.array(what).map(i64::from_be_bytes)
    }

    /// A zigzag varint of at most 5 bytes (Kafka's `varint`).
    pub(super) fn varint(&mut self, what: &str) -> Result<i32, DecodeErrorKind> {
        // Up to 35 bits are read; the ones past 32 are dropped, as Java drops them.
        let raw = self.unsigned_varint(5, what)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zigzag varint of at most 10 bytes (Kafka's `varlong`).
    pub(super) fn varlong(&mut self, what: &str) -> Result<i64, DecodeErrorKind> {
        let raw = self.unsigned_varint(10, what)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// The little-endian base-128 groups of a varint, at most `max_len` of them.
    fn unsigned_varint(&mut self, max_len: u32, what: &str) -> Result<u64, DecodeErrorKind> {
        let mut value: u64 = 0;
        for i in 0..max_len {
            let [byte] = self.array::<1>(what)?;
            // Bits past 64 (only in a 10th byte) are dropped, as Java drops them.
            value |= u64::from(byte & 0x7f).checked_shl(7 * i).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeErrorKind::malformed(format!(
            "{what}: varint longer than {max_len} bytes"
        )))
    }

    /// A byte field with a varint length; a negative length is null (Java reads every
    /// negative length as null; -1 is the one producers write).
    pub(super) fn varint_bytes(&mut self, what: &str) -> Result<Option<Bytes>, DecodeErrorKind> {
        let len = self.varint(what)?;
        self.nullable(len, what)
    }

    /// A byte field with an `i32` length (legacy messages); negative is null, as above.
    pub(super) fn i32_bytes(&mut self, what: &str) -> Result<Option<Bytes>, DecodeErrorKind> {
        let len = self.i32(what)?;
        self.nullable(len, what)
    }

    fn nullable(&mut self, len: i32, what: &str) -> Result<Option<Bytes>, DecodeErrorKind> {
        match usize::try_from(len) {
            Ok(len) => self.bytes(len, what).map(Some),
            Err(_) => Ok(None),
        }
    }
}
