//! The consumer protocol embedded in JoinGroup and SyncGroup: subscriptions and
//! assignments, each an `i16` version followed by the struct.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The version we write; readers of newer versions only see appended fields.
const VERSION: i16 = 0;

/// Encodes a subscription to `topics`.
pub(crate) fn encode_subscription(topics: &[String]) -> Result<Bytes, String> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(VERSION);
    sub.encode(&mut buf, VERSION).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// The topics of a member's subscription.
pub(crate) fn decode_subscription(mut bytes: Bytes) -> Result<Vec<String>, String> {
    if bytes.remaining() < 2 {
        return Err("subscription shorter than its version".into());
    }
    let version = bytes
        .get_i16()
        .min(ConsumerProtocolSubscription::VERSIONS.max);
    let sub =
        ConsumerProtocolSubscription::decode(&mut bytes, version).map_err(|e| e.to_string())?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// Encodes an assignment (topic -> partitions).
pub(crate) fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Result<Bytes, String> {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, p)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(p.clone())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(VERSION);
    assignment
        .encode(&mut buf, VERSION)
        .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Decodes an assignment; empty bytes (a member given nothing) are no partitions.
pub(crate) fn decode_assignment(mut bytes: Bytes) -> Result<Vec<(String, i32)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.remaining() < 2 {
        return Err("assignment shorter than its version".into());
    }
    let version = bytes
        .get_i16()
        .min(ConsumerProtocolAssignment::VERSIONS.max);
    let assignment =
        ConsumerProtocolAssignment::decode(&mut bytes, version).map_err(|e| e.to_string())?;
    Ok(assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_and_assignment_round_trip() {
        let topics = vec!["a".to_string(), "b".to_string()];
        let bytes = encode_subscription(&topics).unwrap();
        assert_eq!(decode_subscription(bytes).unwrap(), topics);
        let mut a = BTreeMap::new();
        a.insert("a".to_string(), vec![0, 2]);
        a.insert("b".to_string(), vec![1]);
        let bytes = encode_assignment(&a).unwrap();
        assert_eq!(
            decode_assignment(bytes).unwrap(),
            vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]
        );
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        assert!(decode_subscription(Bytes::from_static(b"\x00")).is_err());
    }
}
