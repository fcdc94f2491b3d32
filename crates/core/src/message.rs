//! The record type handed to callbacks, and the topic-partition key.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// A topic and partition: the unit of assignment, ordering and commit in Kafka.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    topic: Arc<str>,
    partition: i32,
}

impl TopicPartition {
    /// A topic-partition key.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// The topic name.
    #[inline]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic name as a shared string (cloning it does not allocate).
    #[inline]
    pub fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The partition number.
    #[inline]
    pub fn partition(&self) -> i32 {
        self.partition
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// When a record was created or appended, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timestamp {
    /// Set by the producer.
    CreateTime(i64),
    /// Set by the broker when it appended the record.
    LogAppendTime(i64),
}

impl Timestamp {
    /// Milliseconds since the Unix epoch, whichever kind this is.
    pub fn millis(self) -> i64 {
        match self {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
        }
    }
}

/// One record header. Kafka allows a header without a value, which is not the same as an
/// empty value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub key: String,
    /// The header value; `None` is Kafka's null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header; `None` is a null value.
    pub fn new(key: impl Into<String>, value: Option<impl Into<Bytes>>) -> Self {
        Self {
            key: key.into(),
            value: value.map(Into::into),
        }
    }
}

/// A consumed Kafka record.
///
/// Owned and cheap to clone: the topic is shared, key and payload are reference-counted
/// [`Bytes`], headers are shared. A null payload (`payload() == None`, a tombstone) is
/// distinct from an empty one (`Some(b"")`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<Bytes>,
    payload: Option<Bytes>,
    timestamp: Option<Timestamp>,
    headers: Option<Arc<[Header]>>,
}

impl Message {
    /// Starts a message at `topic[partition]@offset`; key, payload, timestamp and headers
    /// default to absent.
    ///
    /// ```
    /// use ktm_core::Message;
    /// let m = Message::builder("orders", 2, 41).key("k").payload("v").header("h", Some("x")).build();
    /// assert_eq!(m.offset(), 41);
    /// assert_eq!(m.payload(), Some(&b"v"[..]));
    /// assert_eq!(m.headers()[0].key, "h");
    /// ```
    pub fn builder(topic: impl Into<Arc<str>>, partition: i32, offset: i64) -> MessageBuilder {
        MessageBuilder {
            message: Message {
                topic: topic.into(),
                partition,
                offset,
                key: None,
                payload: None,
                timestamp: None,
                headers: None,
            },
            headers: Vec::new(),
        }
    }

    /// The topic this record was read from.
    #[inline]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition this record was read from.
    #[inline]
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset within its partition.
    #[inline]
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The key, if the record has one.
    #[inline]
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The payload; `None` for a null payload (a tombstone).
    #[inline]
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// The key as shared bytes (cloning does not copy).
    #[inline]
    pub fn key_bytes(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// The payload as shared bytes (cloning does not copy).
    #[inline]
    pub fn payload_bytes(&self) -> Option<&Bytes> {
        self.payload.as_ref()
    }

    /// The record's timestamp, if the broker reported one.
    #[inline]
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The record's headers, in the order they were produced.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        self.headers.as_deref().unwrap_or(&[])
    }

    /// The topic-partition this record belongs to.
    #[inline]
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: Arc::clone(&self.topic),
            partition: self.partition,
        }
    }

    #[inline]
    pub(crate) fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }
}

/// Builds a [`Message`]; backends use it to convert their records.
#[derive(Debug)]
#[must_use]
pub struct MessageBuilder {
    message: Message,
    headers: Vec<Header>,
}

impl MessageBuilder {
    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.message.key = Some(key.into());
        self
    }

    /// Sets or clears the key.
    #[inline]
    pub fn maybe_key(mut self, key: Option<Bytes>) -> Self {
        self.message.key = key;
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.message.payload = Some(payload.into());
        self
    }

    /// Sets or clears the payload (`None` is a null payload).
    #[inline]
    pub fn maybe_payload(mut self, payload: Option<Bytes>) -> Self {
        self.message.payload = payload;
        self
    }

    /// Sets the timestamp.
    #[inline]
    pub fn timestamp(mut self, timestamp: Timestamp) -> Self {
        self.message.timestamp = Some(timestamp);
        self
    }

    /// Appends a header; `None` is a header with a null value.
    pub fn header(mut self, key: impl Into<String>, value: Option<impl Into<Bytes>>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Appends headers.
    pub fn headers(mut self, headers: impl IntoIterator<Item = Header>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Finishes the message.
    #[inline]
    pub fn build(mut self) -> Message {
        if !self.headers.is_empty() {
            self.message.headers = Some(self.headers.into());
        }
        self.message
    }
}
