//! Tests of the consumer protocol: round trips, and the bytes librdkafka and the Java
//! client put on the wire, built by hand after their sources.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::protocol::*;

/// A hand-built consumer-protocol buffer, laid out as the Kafka protocol's non-flexible
/// types: big-endian integers, `i16`-length strings, `i32`-length bytes and arrays.
#[derive(Default)]
struct Wire(BytesMut);

impl Wire {
    fn i16(mut self, v: i16) -> Self {
        self.0.put_i16(v);
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.put_i32(v);
        self
    }
    fn str(mut self, s: &str) -> Self {
        self.0.put_i16(i16::try_from(s.len()).unwrap());
        self.0.put_slice(s.as_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.put_i32(i32::try_from(b.len()).unwrap());
        self.0.put_slice(b);
        self
    }
    /// `[topic:string [partition:i32]]`, the owned-partitions field and the sticky
    /// user data's previous assignment.
    fn partitions(mut self, parts: &[(&str, &[i32])]) -> Self {
        self = self.i32(i32::try_from(parts.len()).unwrap());
        for (topic, ps) in parts {
            self = self.str(topic).i32(i32::try_from(ps.len()).unwrap());
            for p in *ps {
                self = self.i32(*p);
            }
        }
        self
    }
    fn done(self) -> Bytes {
        self.0.freeze()
    }
}

fn owned(spec: &[(&str, i32)]) -> Vec<(String, i32)> {
    spec.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

#[test]
fn subscription_and_assignment_round_trip() {
    let topics = vec!["a".to_string(), "b".to_string()];
    let bytes = encode_member_metadata(&topics, &[], -1).unwrap();
    assert_eq!(decode_member_metadata(bytes).unwrap().topics, topics);
    let mut a = BTreeMap::new();
    a.insert("a".to_string(), vec![0, 2]);
    a.insert("b".to_string(), vec![1]);
    let bytes = encode_assignment(&a).unwrap();
    assert_eq!(
        decode_assignment(bytes).unwrap(),
        vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]
    );
    assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
    assert!(decode_member_metadata(Bytes::from_static(b"\x00")).is_err());
}

#[test]
fn member_metadata_round_trips() {
    let topics = vec!["z".to_string(), "a".to_string()];
    let bytes =
        encode_member_metadata(&topics, &owned(&[("z", 2), ("a", 1), ("z", 0)]), 7).unwrap();
    let m = decode_member_metadata(bytes).unwrap();
    assert_eq!(m.topics, topics);
    assert_eq!(m.owned, owned(&[("a", 1), ("z", 0), ("z", 2)]));
    assert_eq!(m.generation, Some(7));
    let m = decode_member_metadata(encode_member_metadata(&topics, &[], -1).unwrap()).unwrap();
    assert_eq!((m.owned.len(), m.generation), (0, None));
}

/// What we write, byte for byte: v3 as `rd_kafka_consumer_protocol_member_metadata_new`
/// (librdkafka `src/rdkafka_assignor.c`) writes it, with Java's cooperative user data
/// (`CooperativeStickyAssignor.subscriptionUserData`: one `i32` generation).
#[test]
fn we_write_v3_with_java_cooperative_user_data() {
    let bytes =
        encode_member_metadata(&["t".to_string()], &owned(&[("t", 1), ("t", 0)]), 5).unwrap();
    let expected = Wire::default()
        .i16(3)
        .i32(1)
        .str("t")
        .bytes(&5_i32.to_be_bytes())
        .partitions(&[("t", &[0, 1])])
        .i32(5)
        .i16(-1) // null rack id
        .done();
    assert_eq!(bytes, expected);
}

/// librdkafka 2.12's cooperative-sticky member after an assignment:
/// `rd_kafka_sticky_assignor_get_metadata` writes user data `[previous_assignment]
/// generation`, and `rd_kafka_consumer_protocol_member_metadata_new` v3 (topics, user
/// data, owned partitions, generation, rack id).
#[test]
fn decodes_librdkafka_member_with_state() {
    let user_data = Wire::default().partitions(&[("t", &[0, 1])]).i32(12).done();
    let bytes = Wire::default()
        .i16(3)
        .i32(2)
        .str("t")
        .str("u")
        .bytes(&user_data)
        .partitions(&[("t", &[0, 1])])
        .i32(12)
        .str("rack-a")
        .done();
    let m = decode_member_metadata(bytes).unwrap();
    assert_eq!(m.topics, vec!["t".to_string(), "u".to_string()]);
    assert_eq!(m.owned, owned(&[("t", 0), ("t", 1)]));
    assert_eq!(m.generation, Some(12));
}

/// librdkafka's first join: no assignor state, so empty user data (`""`, not null: "Kafka
/// 0.9.0.0 can't parse NULL bytes"), no owned partitions and generation -1.
#[test]
fn decodes_librdkafka_first_join() {
    let bytes = Wire::default()
        .i16(3)
        .i32(1)
        .str("t")
        .bytes(b"")
        .i32(0)
        .i32(-1)
        .i16(-1)
        .done();
    let m = decode_member_metadata(bytes).unwrap();
    assert_eq!(m.topics, vec!["t".to_string()]);
    assert!(m.owned.is_empty());
    assert_eq!(m.generation, None);
}

/// Java 3.x (`ConsumerProtocol.serializeSubscription`, v3): sorted topics, the
/// cooperative user data (the generation), owned partitions, the generation, a rack id.
#[test]
fn decodes_java_member() {
    let bytes = Wire::default()
        .i16(3)
        .i32(1)
        .str("t")
        .bytes(&9_i32.to_be_bytes())
        .partitions(&[("t", &[2]), ("u", &[0, 3])])
        .i32(9)
        .str("rack-b")
        .done();
    let m = decode_member_metadata(bytes).unwrap();
    assert_eq!(m.owned, owned(&[("t", 2), ("u", 0), ("u", 3)]));
    assert_eq!(m.generation, Some(9));
}

/// A negative v2 generation field is absent (`Subscription` maps it to empty), and
/// `CooperativeStickyAssignor.memberData` then reads the user data's `i32`; a Java client
/// older than v2 (v1: owned partitions, no generation field) is read the same way.
#[test]
fn generation_falls_back_to_java_user_data() {
    let v2 = Wire::default()
        .i16(2)
        .i32(1)
        .str("t")
        .bytes(&4_i32.to_be_bytes())
        .partitions(&[("t", &[0])])
        .i32(-1)
        .done();
    assert_eq!(decode_member_metadata(v2).unwrap().generation, Some(4));
    let v1 = Wire::default()
        .i16(1)
        .i32(1)
        .str("t")
        .bytes(&3_i32.to_be_bytes())
        .partitions(&[("t", &[1])])
        .done();
    let m = decode_member_metadata(v1).unwrap();
    assert_eq!((m.owned, m.generation), (owned(&[("t", 1)]), Some(3)));
}

/// A v0 subscription has no owned field: sticky user data (librdkafka's layout, Java's
/// `StickyAssignor` v1) gives the previous assignment and generation.
#[test]
fn v0_takes_owned_partitions_from_sticky_user_data() {
    let user_data = Wire::default()
        .partitions(&[("t", &[3]), ("u", &[1])])
        .i32(6)
        .done();
    let bytes = Wire::default()
        .i16(0)
        .i32(1)
        .str("t")
        .bytes(&user_data)
        .done();
    let m = decode_member_metadata(bytes).unwrap();
    assert_eq!(m.owned, owned(&[("t", 3), ("u", 1)]));
    assert_eq!(m.generation, Some(6));
}

#[test]
fn tolerates_null_short_or_foreign_user_data_and_newer_versions() {
    // Null user data (length -1), v1: no generation.
    let null = Wire::default().i16(1).i32(1).str("t").i32(-1).i32(0).done();
    assert_eq!(decode_member_metadata(null).unwrap().generation, None);
    // Two bytes of user data: Java's read fails, default generation.
    let short = Wire::default()
        .i16(1)
        .i32(1)
        .str("t")
        .bytes(b"xy")
        .i32(0)
        .done();
    assert_eq!(decode_member_metadata(short).unwrap().generation, None);
    // Foreign user data of 4+ bytes: its first i32, as a Java leader reads it.
    let foreign = Wire::default()
        .i16(1)
        .i32(1)
        .str("t")
        .bytes(&[0, 0, 0, 2, 0xff])
        .i32(0)
        .done();
    assert_eq!(decode_member_metadata(foreign).unwrap().generation, Some(2));
    // A future v5 that appends fields after the rack id reads as v3.
    let newer = Wire::default()
        .i16(5)
        .i32(1)
        .str("t")
        .bytes(b"")
        .partitions(&[("t", &[0])])
        .i32(8)
        .i16(-1)
        .i32(1234)
        .str("future")
        .done();
    let m = decode_member_metadata(newer).unwrap();
    assert_eq!((m.owned, m.generation), (owned(&[("t", 0)]), Some(8)));
    // Truncated owned partitions are an error, as for both real clients.
    let cut = Wire::default()
        .i16(1)
        .i32(1)
        .str("t")
        .bytes(b"")
        .i32(3)
        .done();
    assert!(decode_member_metadata(cut).is_err());
}
