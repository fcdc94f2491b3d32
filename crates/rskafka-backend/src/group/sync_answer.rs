//! The SyncGroup response, read leniently: a null assignment is an empty one.
//!
//! The schema's assignment is non-nullable bytes, which `kafka-protocol` enforces, but
//! coordinators do send null for a member given nothing (librdkafka's mock cluster
//! does), and the Java and librdkafka clients read that as an empty assignment. So this
//! crate decodes the response itself; it has only these fields.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::SyncGroupResponse;
use kafka_protocol::protocol::buf::ByteBuf;
use kafka_protocol::protocol::{Decodable, HeaderVersion};

/// What this crate reads of a SyncGroup response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncGroupAnswer {
    pub(crate) error_code: i16,
    /// The member's assignment; empty when the coordinator sent none (null or empty).
    pub(crate) assignment: Bytes,
}

impl HeaderVersion for SyncGroupAnswer {
    fn header_version(version: i16) -> i16 {
        SyncGroupResponse::header_version(version)
    }
}

impl Decodable for SyncGroupAnswer {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        if !(0..=5).contains(&version) {
            anyhow::bail!("SyncGroup response v{version} is not known");
        }
        let flexible = version >= 4;
        if version >= 1 {
            need(buf, 4)?;
            let _throttle_time_ms = buf.get_i32();
        }
        need(buf, 2)?;
        let error_code = buf.get_i16();
        if version >= 5 {
            // protocol_type and protocol_name: compact nullable strings.
            for _ in 0..2 {
                if let Some(len) = compact_len(buf)? {
                    need(buf, len)?;
                    buf.advance(len);
                }
            }
        }
        let len = if flexible {
            compact_len(buf)?
        } else {
            need(buf, 4)?;
            usize::try_from(buf.get_i32()).ok()
        };
        let assignment = match len {
            Some(len) => {
                need(buf, len)?;
                buf.copy_to_bytes(len)
            }
            None => Bytes::new(),
        };
        // Tagged fields, if any, follow; nothing of ours is among them.
        Ok(Self {
            error_code,
            assignment,
        })
    }
}

fn need<B: Buf>(buf: &B, n: usize) -> anyhow::Result<()> {
    if buf.remaining() < n {
        anyhow::bail!(
            "SyncGroup response ends early: {n} bytes needed, {} left",
            buf.remaining()
        );
    }
    Ok(())
}

/// A compact length (unsigned varint of length + 1); `None` for null.
fn compact_len<B: Buf>(buf: &mut B) -> anyhow::Result<Option<usize>> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        need(buf, 1)?;
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value.checked_sub(1).map(|n| n as usize));
        }
    }
    anyhow::bail!("SyncGroup response: a varint longer than 5 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    fn encoded(response: &SyncGroupResponse, version: i16) -> Bytes {
        let mut buf = bytes::BytesMut::new();
        response.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn every_version_reads_like_kafka_protocol() {
        let response = SyncGroupResponse::default()
            .with_error_code(27)
            .with_protocol_type(Some("consumer".into()))
            .with_protocol_name(Some("range".into()))
            .with_assignment(Bytes::from_static(b"\x00\x00assigned"));
        for version in 0..=5 {
            let mut bytes = encoded(&response, version);
            let answer = SyncGroupAnswer::decode(&mut bytes, version).unwrap();
            assert_eq!(answer.error_code, 27, "v{version}");
            assert_eq!(&answer.assignment[..], b"\x00\x00assigned", "v{version}");
        }
    }

    #[test]
    fn a_null_assignment_is_empty() {
        // v3: throttle, error, bytes of length -1.
        let mut v3 = Bytes::from_static(b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff");
        assert_eq!(
            SyncGroupAnswer::decode(&mut v3, 3).unwrap(),
            SyncGroupAnswer::default()
        );
        // v4: throttle, error, compact bytes 0 (null), no tagged fields.
        let mut v4 = Bytes::from_static(b"\x00\x00\x00\x00\x00\x00\x00\x00");
        assert_eq!(
            SyncGroupAnswer::decode(&mut v4, 4).unwrap(),
            SyncGroupAnswer::default()
        );
    }

    #[test]
    fn truncated_answers_are_errors_not_panics() {
        let full = encoded(
            &SyncGroupResponse::default().with_assignment(Bytes::from_static(b"abc")),
            5,
        );
        for cut in 0..full.len() - 1 {
            let mut short = full.slice(..cut);
            assert!(
                SyncGroupAnswer::decode(&mut short, 5).is_err(),
                "cut at {cut}"
            );
        }
    }
}
