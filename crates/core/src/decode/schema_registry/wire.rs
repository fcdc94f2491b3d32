//! The schema-registry wire format: magic byte 0, the schema id as a big-endian `u32`,
//! then the datum; Protobuf datums are preceded by the message indexes.

use super::super::DecodeError;

/// The format named in [`DecodeError::Malformed`] when the framing itself is wrong.
pub const WIRE_FORMAT: &str = "schema registry wire format";

const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;
/// Confluent's serializers refuse longer index arrays; so do we, so that a corrupt count
/// cannot make us allocate gigabytes.
const MAX_INDEXES: u64 = 100_000;

/// A payload split into its schema id and the bytes after the header.
///
/// ```
/// use ktm_core::decode::schema_registry::Framed;
/// let framed = Framed::parse(&[0, 0, 0, 1, 2, 0xAA])?;
/// assert_eq!((framed.schema_id, framed.body), (258, &[0xAA][..]));
/// # Ok::<(), ktm_core::DecodeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Framed<'a> {
    /// The schema id from the header.
    pub schema_id: u32,
    /// Everything after the 5-byte header: the datum (Avro, JSON), or the message indexes
    /// and the datum (Protobuf).
    pub body: &'a [u8],
}

impl<'a> Framed<'a> {
    /// Splits `payload` into the schema id and the body. A payload shorter than the header
    /// or with a magic byte other than 0 is [`DecodeError::Malformed`] ([`WIRE_FORMAT`]).
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((header, body)) = payload.split_first_chunk::<HEADER_LEN>() else {
            return Err(malformed(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                payload.len()
            )));
        };
        let [magic, id @ ..] = *header;
        if magic != MAGIC {
            return Err(malformed(format!("magic byte {magic}, expected {MAGIC}")));
        }
        Ok(Self {
            schema_id: u32::from_be_bytes(id),
            body,
        })
    }

    /// Splits a Protobuf body into its message indexes (the path of the message type in
    /// the schema: `[0]` is the first top-level message, `[1, 0]` the first message nested
    /// in the second) and the encoded message.
    ///
    /// The indexes are a zigzag-varint count followed by that many zigzag-varint indexes;
    /// a count of 0 (the single byte 0, how serializers write the common `[0]`) means
    /// `[0]`.
    ///
    /// ```
    /// use ktm_core::decode::schema_registry::Framed;
    /// let framed = Framed::parse(&[0, 0, 0, 0, 9, 4, 2, 0, 0x08, 0x01])?;
    /// let (indexes, message) = framed.message_indexes()?;
    /// assert_eq!((indexes, message), (vec![1, 0], &[0x08, 0x01][..]));
    /// # Ok::<(), ktm_core::DecodeError>(())
    /// ```
    pub fn message_indexes(&self) -> Result<(Vec<i64>, &'a [u8]), DecodeError> {
        let mut rest = self.body;
        let count = read_zigzag(&mut rest)?;
        if count == 0 {
            return Ok((vec![0], rest));
        }
        if count < 0 || count.unsigned_abs() > MAX_INDEXES {
            return Err(malformed(format!("message index count {count}")));
        }
        // Each index takes at least one byte: a count past the bytes left is corrupt, and
        // checking first keeps the allocation bounded by the payload.
        if count.unsigned_abs() > rest.len() as u64 {
            return Err(malformed(format!(
                "{count} message indexes in {} bytes",
                rest.len()
            )));
        }
        let mut indexes = Vec::with_capacity(rest.len().min(count.unsigned_abs() as usize));
        for _ in 0..count {
            indexes.push(read_zigzag(&mut rest)?);
        }
        Ok((indexes, rest))
    }
}

/// Reads one zigzag varint (at most 10 bytes, as a 64-bit value) off the front of `bytes`.
fn read_zigzag(bytes: &mut &[u8]) -> Result<i64, DecodeError> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            // Zigzag: 0, -1, 1, -2, ... are written as 0, 1, 2, 3, ...
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(malformed("a message index varint is truncated or too long"))
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::malformed(WIRE_FORMAT, reason.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_wire_malformed(result: Result<impl std::fmt::Debug, DecodeError>) -> bool {
        matches!(
            result,
            Err(DecodeError::Malformed {
                format: WIRE_FORMAT,
                ..
            })
        )
    }

    #[test]
    fn parses_the_magic_byte_and_a_big_endian_id() {
        let framed = Framed::parse(&[0, 0x12, 0x34, 0x56, 0x78, 1, 2]).unwrap();
        assert_eq!(framed.schema_id, 0x1234_5678);
        assert_eq!(framed.body, [1, 2]);
        // An empty datum is a valid frame (an Avro record with no fields).
        assert_eq!(Framed::parse(&[0, 0, 0, 0, 5]).unwrap().body, [0u8; 0]);
    }

    #[test]
    fn refuses_a_wrong_magic_byte_and_short_payloads() {
        assert!(is_wire_malformed(Framed::parse(&[1, 0, 0, 0, 1, 2])));
        assert!(is_wire_malformed(Framed::parse(b"{\"id\": 1}")));
        for len in 0..HEADER_LEN {
            assert!(is_wire_malformed(Framed::parse(&[0; 4][..len.min(4)])));
        }
        let err = Framed::parse(&[7, 0, 0, 0, 1]).unwrap_err();
        assert!(err.to_string().contains("magic byte 7"), "{err}");
    }

    fn indexes(body: &[u8]) -> Result<(Vec<i64>, &[u8]), DecodeError> {
        Framed { schema_id: 1, body }.message_indexes()
    }

    #[test]
    fn the_single_zero_byte_means_the_first_message() {
        assert_eq!(
            indexes(&[0, 0x08, 0x07]).unwrap(),
            (vec![0], &[0x08, 0x07][..])
        );
        // The long form of [0] means the same.
        assert_eq!(indexes(&[2, 0, 0x08]).unwrap(), (vec![0], &[0x08][..]));
    }

    #[test]
    fn several_indexes_are_zigzag_varints() {
        // count 3 (zigzag 6), indexes 1 (2), 0 (0), 70 (140 = 0x8C 0x01).
        assert_eq!(
            indexes(&[6, 2, 0, 0x8C, 0x01, 0xFF]).unwrap(),
            (vec![1, 0, 70], &[0xFF][..])
        );
        // The message itself may be empty (every field at its default).
        assert_eq!(indexes(&[2, 2]).unwrap(), (vec![1], &[][..]));
    }

    #[test]
    fn corrupt_indexes_are_malformed() {
        assert!(is_wire_malformed(indexes(&[])), "no count");
        assert!(is_wire_malformed(indexes(&[4, 2])), "count 2, one index");
        assert!(is_wire_malformed(indexes(&[1, 0])), "negative count");
        assert!(
            is_wire_malformed(indexes(&[0x80, 0x80])),
            "truncated varint"
        );
        assert!(
            is_wire_malformed(indexes(&[0xFF; 11])),
            "varint past 10 bytes"
        );
        // A huge count is refused before anything is allocated for it.
        assert!(is_wire_malformed(indexes(&[0xFE, 0xFF, 0xFF, 0xFF, 0x0F])));
    }
}
