//! Conversions between rdkafka's types and the core's: records and partition lists
//! (errors: [`crate::error`]).

use std::sync::Arc;

use bytes::Bytes;
use ktm_core::{Header, Message as CoreMessage, Offsets, Subscription, Timestamp, TopicPartition};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message as _, Offset, TopicPartitionList};

/// Converts records, sharing one `Arc<str>` per topic instead of allocating per record.
#[derive(Debug)]
pub(crate) struct MessageConverter {
    topics: Vec<Arc<str>>,
    /// The only topic the consumer can receive, when the subscription names exactly one:
    /// then a record's topic name is not read at all (librdkafka measures and checks it
    /// as UTF-8 on every read).
    only_topic: Option<Arc<str>>,
    read_headers: bool,
}

impl MessageConverter {
    /// A converter for records of this subscription.
    pub(crate) fn new(subscription: &Subscription, read_headers: bool) -> Self {
        let mut names = subscription_topics(subscription);
        names.dedup();
        let only_topic = match names.as_slice() {
            // A name starting with `^` is a pattern, which may match several topics.
            [name] if !name.starts_with('^') => Some(Arc::from(*name)),
            _ => None,
        };
        Self {
            topics: Vec::new(),
            only_topic,
            read_headers,
        }
    }

    /// Whether records' headers are read.
    pub(crate) fn read_headers(&self) -> bool {
        self.read_headers
    }

    /// The shared name of a record's topic; `name` is only read when the subscription
    /// holds more than one topic.
    pub(crate) fn topic_with<'a>(&mut self, name: impl FnOnce() -> &'a str) -> Arc<str> {
        if let Some(t) = &self.only_topic {
            return Arc::clone(t);
        }
        let name = name();
        if let Some(t) = self.topics.iter().find(|t| &***t == name) {
            return Arc::clone(t);
        }
        let t: Arc<str> = Arc::from(name);
        self.topics.push(Arc::clone(&t));
        t
    }

    /// Copies a record out of librdkafka's buffer.
    pub(crate) fn convert(&mut self, m: &BorrowedMessage<'_>) -> CoreMessage {
        let mut builder =
            CoreMessage::builder(self.topic_with(|| m.topic()), m.partition(), m.offset())
                .maybe_key(m.key().map(Bytes::copy_from_slice))
                .maybe_payload(m.payload().map(Bytes::copy_from_slice));
        match m.timestamp() {
            rdkafka::Timestamp::CreateTime(ms) => {
                builder = builder.timestamp(Timestamp::CreateTime(ms))
            }
            rdkafka::Timestamp::LogAppendTime(ms) => {
                builder = builder.timestamp(Timestamp::LogAppendTime(ms));
            }
            rdkafka::Timestamp::NotAvailable => {}
        }
        if !self.read_headers {
            return builder.build();
        }
        if let Some(headers) = m.headers() {
            builder = builder.headers(headers.iter().map(|h| Header {
                key: h.key.to_owned(),
                value: h.value.map(Bytes::copy_from_slice),
            }));
        }
        builder.build()
    }
}

/// The topic names a subscription holds, sorted.
fn subscription_topics(subscription: &Subscription) -> Vec<&str> {
    let mut names: Vec<&str> = match subscription {
        Subscription::Topics(topics) => topics.iter().map(String::as_str).collect(),
        Subscription::Partitions(partitions) => {
            partitions.iter().map(TopicPartition::topic).collect()
        }
        _ => Vec::new(),
    };
    names.sort_unstable();
    names
}

/// The partitions of a list.
pub(crate) fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// A list of these partitions, without offsets.
pub(crate) fn partition_list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        tpl.add_partition(tp.topic(), tp.partition());
    }
    tpl
}

/// A list carrying these positions (the next offset to read).
pub(crate) fn to_tpl(offsets: &Offsets) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, position) in offsets.iter() {
        tpl.add_partition_offset(tp.topic(), tp.partition(), Offset::Offset(position))?;
    }
    Ok(tpl)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positions_become_a_partition_list() {
        let offsets: Offsets = [
            (TopicPartition::new("t", 0), 5),
            (TopicPartition::new("t", 2), 9),
        ]
        .into_iter()
        .collect();
        let tpl = to_tpl(&offsets).unwrap();
        assert_eq!(tpl.count(), 2);
        let e = tpl.find_partition("t", 2).unwrap();
        assert_eq!(e.offset(), Offset::Offset(9));
        assert_eq!(
            partitions(&tpl),
            vec![TopicPartition::new("t", 0), TopicPartition::new("t", 2)]
        );
    }
}
