//! rskafka records to [`Message`]s.

use std::sync::Arc;

use bytes::Bytes;
use ktm_core::{Message, Timestamp};
use rskafka::record::RecordAndOffset;

/// Drops the records before `from` (a fetch returns whole batches, which may start
/// before the requested offset) and converts the rest, in offset order.
pub(crate) fn to_messages(
    topic: &Arc<str>,
    partition: i32,
    from: i64,
    mut records: Vec<RecordAndOffset>,
) -> Vec<Message> {
    records.retain(|r| r.offset >= from);
    records.sort_by_key(|r| r.offset);
    records
        .into_iter()
        .map(|r| to_message(topic, partition, r))
        .collect()
}

fn to_message(topic: &Arc<str>, partition: i32, r: RecordAndOffset) -> Message {
    let record = r.record;
    let mut builder = Message::builder(Arc::clone(topic), partition, r.offset)
        .maybe_key(record.key.map(Bytes::from))
        .maybe_payload(record.value.map(Bytes::from))
        .timestamp(Timestamp::CreateTime(record.timestamp.timestamp_millis()));
    for (key, value) in record.headers {
        builder = builder.header(key, Some(Bytes::from(value)));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rskafka::chrono::DateTime;
    use rskafka::record::Record;

    use super::*;

    fn rec(offset: i64, value: Option<&[u8]>) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: Some(b"k".to_vec()),
                value: value.map(<[u8]>::to_vec),
                headers: BTreeMap::from([("h".to_string(), b"v".to_vec())]),
                timestamp: DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
            },
            offset,
        }
    }

    #[test]
    fn records_before_the_requested_offset_are_dropped() {
        let topic: Arc<str> = "t".into();
        let records = (10..20).map(|o| rec(o, Some(b"x"))).collect();
        let m = to_messages(&topic, 3, 14, records);
        let offsets: Vec<i64> = m.iter().map(Message::offset).collect();
        assert_eq!(offsets, (14..20).collect::<Vec<_>>());
        assert!(m.iter().all(|m| m.partition() == 3 && m.topic() == "t"));
    }

    #[test]
    fn null_and_empty_payloads_keys_headers_and_timestamps_survive() {
        let topic: Arc<str> = "t".into();
        let m = to_messages(&topic, 0, 0, vec![rec(0, None), rec(1, Some(b""))]);
        assert_eq!(m[0].payload(), None);
        assert_eq!(m[1].payload(), Some(&b""[..]));
        assert_eq!(m[1].key(), Some(&b"k"[..]));
        assert_eq!(m[1].headers()[0].key, "h");
        assert_eq!(m[1].headers()[0].value.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            m[0].timestamp().map(Timestamp::millis),
            Some(1_700_000_000_000)
        );
    }
}
