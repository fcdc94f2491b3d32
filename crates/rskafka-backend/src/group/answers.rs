//! The JoinGroup and SyncGroup responses, read leniently: null where the schema says
//! non-nullable reads as empty.
//!
//! Coordinators do send null there: librdkafka's mock cluster answers a failed
//! JoinGroup with null protocol, leader and member id, and a member given nothing with
//! a null assignment. `kafka-protocol` refuses both, which would hide the error code
//! (a fatal error retried as a decoding failure) or fail a valid join, while the Java
//! and librdkafka clients read them as empty. So this crate decodes these two responses
//! itself, for the versions it sends (JoinGroup up to v5, SyncGroup up to v5).

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::buf::ByteBuf;
use kafka_protocol::protocol::{Decodable, HeaderVersion};

/// One member of a JoinGroup answer (the leader gets them all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) metadata: Bytes,
}

/// What this crate reads of a JoinGroup response (v0-v5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct JoinGroupAnswer {
    pub(crate) error_code: i16,
    pub(crate) generation_id: i32,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    pub(crate) members: Vec<JoinedMember>,
}

impl HeaderVersion for JoinGroupAnswer {
    fn header_version(version: i16) -> i16 {
        JoinGroupResponse::header_version(version)
    }
}

impl Decodable for JoinGroupAnswer {
    fn decode<B: ByteBuf>(buf: &mut B, version: i16) -> anyhow::Result<Self> {
        if !(0..=5).contains(&version) {
            anyhow::bail!("JoinGroup response v{version} is not read by this crate");
        }
        if version >= 2 {
            need(buf, 4)?;
            let _throttle_time_ms = buf.get_i32();
        }
        need(buf, 2)?;
        let error_code = buf.get_i16();
        need(buf, 4)?;
        let generation_id = buf.get_i32();
        let protocol_name = string(buf)?;
        let leader = string(buf)?.unwrap_or_default();
        let member_id = string(buf)?.unwrap_or_default();
        need(buf, 4)?;
        let count = usize::try_from(buf.get_i32()).unwrap_or(0);
        let mut members = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let member_id = string(buf)?.unwrap_or_default();
            if version >= 5 {
                let _group_instance_id = string(buf)?;
            }
            let metadata = bytes(buf)?;
            members.push(JoinedMember {
                member_id,
                metadata,
            });
        }
        Ok(Self {
            error_code,
            generation_id,
            protocol_name,
            leader,
            member_id,
            members,
        })
    }
}

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
        let assignment = if flexible {
            match compact_len(buf)? {
                Some(len) => {
                    need(buf, len)?;
                    buf.copy_to_bytes(len)
                }
                None => Bytes::new(),
            }
        } else {
            bytes(buf)?
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
            "response ends early: {n} bytes needed, {} left",
            buf.remaining()
        );
    }
    Ok(())
}

/// A (nullable) string: i16 length, -1 for null.
fn string<B: Buf>(buf: &mut B) -> anyhow::Result<Option<String>> {
    need(buf, 2)?;
    let Ok(len) = usize::try_from(buf.get_i16()) else {
        return Ok(None);
    };
    need(buf, len)?;
    let raw = buf.copy_to_bytes(len);
    Ok(Some(String::from_utf8(raw.to_vec())?))
}

/// (Nullable) bytes: i32 length, -1 for null, which reads as empty.
fn bytes<B: Buf>(buf: &mut B) -> anyhow::Result<Bytes> {
    need(buf, 4)?;
    let Ok(len) = usize::try_from(buf.get_i32()) else {
        return Ok(Bytes::new());
    };
    need(buf, len)?;
    Ok(buf.copy_to_bytes(len))
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
    anyhow::bail!("a varint longer than 5 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded<R: Encodable>(response: &R, version: i16) -> Bytes {
        let mut buf = bytes::BytesMut::new();
        response.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn join_answers_read_like_kafka_protocol() {
        let response = JoinGroupResponse::default()
            .with_error_code(0)
            .with_generation_id(7)
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_leader(StrBytes::from_static_str("m-1"))
            .with_member_id(StrBytes::from_static_str("m-2"))
            .with_members(vec![JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_static_str("m-1"))
                .with_group_instance_id(Some(StrBytes::from_static_str("pod-1")))
                .with_metadata(Bytes::from_static(b"meta"))]);
        for version in 0..=5 {
            let mut response = response.clone();
            if version < 5 {
                response.members[0].group_instance_id = None;
            }
            let mut bytes = encoded(&response, version);
            let answer = JoinGroupAnswer::decode(&mut bytes, version).unwrap();
            assert_eq!(answer.generation_id, 7, "v{version}");
            assert_eq!(answer.protocol_name.as_deref(), Some("range"));
            assert_eq!(
                (answer.leader.as_str(), answer.member_id.as_str()),
                ("m-1", "m-2")
            );
            assert_eq!(
                answer.members,
                vec![JoinedMember {
                    member_id: "m-1".into(),
                    metadata: Bytes::from_static(b"meta")
                }],
                "v{version}"
            );
            assert!(bytes.is_empty(), "v{version}: all read");
        }
    }

    #[test]
    fn a_failed_join_with_null_strings_keeps_its_error_code() {
        // v5 as librdkafka's mock cluster answers an injected error: throttle, error
        // 23 (INCONSISTENT_GROUP_PROTOCOL), generation -1, three null strings, no member.
        let mut raw = Bytes::from_static(
            b"\x00\x00\x00\x00\x00\x17\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00",
        );
        let answer = JoinGroupAnswer::decode(&mut raw, 5).unwrap();
        assert_eq!(answer.error_code, 23);
        assert_eq!(answer.protocol_name, None);
        assert!(answer.leader.is_empty() && answer.member_id.is_empty());
    }

    #[test]
    fn truncated_join_answers_are_errors_not_panics() {
        let full = encoded(
            &JoinGroupResponse::default().with_members(vec![
                JoinGroupResponseMember::default().with_metadata(Bytes::from_static(b"m"))
            ]),
            5,
        );
        for cut in 0..full.len() {
            let mut short = full.slice(..cut);
            assert!(
                JoinGroupAnswer::decode(&mut short, 5).is_err(),
                "cut at {cut}"
            );
        }
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
