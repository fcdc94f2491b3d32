//! Dead-letter topics: where a message goes when its callback keeps failing and the
//! failure policy is [`FailurePolicy::DeadLetter`](crate::FailurePolicy::DeadLetter).

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    check_topic_name, BuildError, Header, Message, SourceError, Timestamp, TopicPartition,
};

/// Header naming the topic the dead letter was consumed from.
pub const HEADER_SOURCE_TOPIC: &str = "ktm.dlq.source.topic";
/// Header naming the partition the dead letter was consumed from (decimal text).
pub const HEADER_SOURCE_PARTITION: &str = "ktm.dlq.source.partition";
/// Header naming the offset the dead letter had in its source partition (decimal text).
pub const HEADER_SOURCE_OFFSET: &str = "ktm.dlq.source.offset";
/// Header counting the callback attempts made before dead-lettering (decimal text).
pub const HEADER_ATTEMPTS: &str = "ktm.dlq.attempts";
/// Header holding the last error's text (or the panic's message).
pub const HEADER_ERROR: &str = "ktm.dlq.error";
/// Header saying what kind of failure it was: `retryable` (retries ran out),
/// `permanent`, `panic`, or `undecodable` (the payload did not decode; the handler never
/// saw it).
pub const HEADER_FAILURE_KIND: &str = "ktm.dlq.failure.kind";

/// The last error is cut to this many bytes in its header: a runaway error text must not
/// make the dead letter too large for the broker, which would block the partition.
const MAX_ERROR_HEADER_BYTES: usize = 4096;

/// A record to produce to a dead-letter topic: the original key, payload, timestamp and
/// headers, plus the `ktm.dlq.*` headers that say where it came from and why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterRecord {
    /// The dead-letter topic to produce to.
    pub topic: String,
    /// Where the message was consumed from. Producers use its partition number (modulo
    /// the dead-letter topic's partition count) so one source partition's dead letters
    /// stay in order.
    pub source: TopicPartition,
    /// The message's offset in its source partition.
    pub offset: i64,
    /// The original key.
    pub key: Option<Bytes>,
    /// The original payload (`None` stays a null payload).
    pub payload: Option<Bytes>,
    /// The original timestamp.
    pub timestamp: Option<Timestamp>,
    /// The original headers (with the `opentelemetry` feature, the trace context
    /// replaced by the current one), then the `ktm.dlq.*` headers.
    pub headers: Vec<Header>,
    /// Callback attempts made.
    pub attempts: u32,
    /// The last error's text, or the panic's message.
    pub error: String,
}

impl DeadLetterRecord {
    /// The dead letter of `message`, bound for `topic`.
    ///
    /// With the `opentelemetry` feature, the current span's trace context is written
    /// into the copied headers by the global propagator (`traceparent`/`tracestate` with
    /// W3C Trace Context), replacing the record's own; where there is no current span
    /// (or no propagator is registered) they are copied unchanged. The manager builds
    /// dead letters in a `dead_letter` span whose parent is the record's trace context
    /// (see `trace_context`).
    pub fn new(topic: impl Into<String>, message: &Message, attempts: u32, error: &str) -> Self {
        let mut headers = Vec::with_capacity(message.headers().len() + 5);
        headers.extend_from_slice(message.headers());
        #[cfg(feature = "opentelemetry")]
        crate::trace_context::inject_current(&mut headers);
        let text = |s: String| Some(Bytes::from(s));
        headers.push(Header::new(
            HEADER_SOURCE_TOPIC,
            text(message.topic().to_owned()),
        ));
        headers.push(Header::new(
            HEADER_SOURCE_PARTITION,
            text(message.partition().to_string()),
        ));
        headers.push(Header::new(
            HEADER_SOURCE_OFFSET,
            text(message.offset().to_string()),
        ));
        headers.push(Header::new(HEADER_ATTEMPTS, text(attempts.to_string())));
        headers.push(Header::new(
            HEADER_ERROR,
            text(truncate(error, MAX_ERROR_HEADER_BYTES).to_owned()),
        ));
        Self {
            topic: topic.into(),
            source: message.topic_partition(),
            offset: message.offset(),
            key: message.key_bytes().cloned(),
            payload: message.payload_bytes().cloned(),
            timestamp: message.timestamp(),
            headers,
            attempts,
            error: error.to_owned(),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Produces dead letters. Each backend has one (`ktm-rskafka`, `ktm-rdkafka`,
/// `ktm-mock`); it runs on the consumer thread's runtime.
#[async_trait]
pub trait DeadLetterProducer: Send + 'static {
    /// A short name for logs and errors, such as `"rskafka"`.
    fn backend(&self) -> &'static str;

    /// Produces `record` and returns once the broker has acknowledged it: the manager
    /// commits the source offset only after that. A transient error is retried with
    /// backoff (the source offset stays uncommitted meanwhile); a fatal one stops the
    /// manager.
    async fn send(&mut self, record: &DeadLetterRecord) -> Result<(), SourceError>;

    /// Flushes and releases connections; called once when the manager stops.
    async fn close(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// The partition count of `topic` (`None`: the broker does not know it), asked by
    /// [`ThreadManager::preflight`](crate::ThreadManager::preflight) for each
    /// dead-letter topic. As [`MessageSource::describe`](crate::MessageSource::describe),
    /// it runs on a short-lived runtime of its own: connections it opens must not be
    /// kept for `send`. The default returns a
    /// [`SourceErrorKind::Unsupported`](crate::SourceErrorKind::Unsupported) error.
    async fn partition_count(&mut self, topic: &str) -> Result<Option<i32>, SourceError> {
        let _ = topic;
        Err(SourceError::unsupported(self.backend(), "partition_count"))
    }
}

#[async_trait]
impl<P: DeadLetterProducer + ?Sized> DeadLetterProducer for Box<P> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    async fn send(&mut self, record: &DeadLetterRecord) -> Result<(), SourceError> {
        (**self).send(record).await
    }
    async fn close(&mut self) -> Result<(), SourceError> {
        (**self).close().await
    }
    async fn partition_count(&mut self, topic: &str) -> Result<Option<i32>, SourceError> {
        (**self).partition_count(topic).await
    }
}

/// Which topic a dead letter goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Destination {
    /// Always this topic.
    Fixed(String),
    /// The source topic's name followed by this suffix.
    Suffix(String),
}

/// The dead-letter part of [`FailurePolicy::DeadLetter`](crate::FailurePolicy::DeadLetter):
/// a producer and the topic to produce to (by default the source topic's name followed
/// by `.dlq`).
///
/// ```
/// use ktm_core::{async_trait, DeadLetter, DeadLetterProducer, DeadLetterRecord, SourceError};
///
/// struct Discard;
/// #[async_trait]
/// impl DeadLetterProducer for Discard {
///     fn backend(&self) -> &'static str { "discard" }
///     async fn send(&mut self, _: &DeadLetterRecord) -> Result<(), SourceError> { Ok(()) }
/// }
///
/// let dlq = DeadLetter::new(Discard).topic("orders.failed");
/// assert_eq!(dlq.destination("orders"), "orders.failed");
/// assert_eq!(DeadLetter::new(Discard).destination("orders"), "orders.dlq");
/// ```
pub struct DeadLetter {
    pub(crate) producer: Box<dyn DeadLetterProducer>,
    destination: Destination,
}

impl DeadLetter {
    /// Dead letters go through `producer` to `<source topic>.dlq`.
    pub fn new(producer: impl DeadLetterProducer) -> Self {
        Self {
            producer: Box::new(producer),
            destination: Destination::Suffix(".dlq".to_owned()),
        }
    }

    /// Every dead letter goes to this one topic.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.destination = Destination::Fixed(topic.into());
        self
    }

    /// Dead letters go to the source topic's name followed by `suffix`.
    #[must_use]
    pub fn topic_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.destination = Destination::Suffix(suffix.into());
        self
    }

    /// The dead-letter topic for a message of `source_topic`.
    pub fn destination(&self, source_topic: &str) -> String {
        match &self.destination {
            Destination::Fixed(topic) => topic.clone(),
            Destination::Suffix(suffix) => format!("{source_topic}{suffix}"),
        }
    }

    /// Checks the topic (or suffix) against Kafka's naming rules.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let (name, checked) = match &self.destination {
            Destination::Fixed(topic) => (topic, check_topic_name(topic)),
            // Checked as a name of its own: the source topic is a valid name already, so
            // the result is valid unless it gets too long, which the producer reports.
            Destination::Suffix(suffix) => (suffix, check_topic_name(&format!("x{suffix}"))),
        };
        checked.map_err(|e| BuildError::InvalidDeadLetterTopic {
            topic: name.clone(),
            reason: e.to_string(),
        })?;
        if matches!(&self.destination, Destination::Suffix(s) if s.is_empty()) {
            return Err(BuildError::InvalidDeadLetterTopic {
                topic: String::new(),
                reason: "an empty suffix would dead-letter into the source topic".to_owned(),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("backend", &self.producer.backend())
            .field("destination", &self.destination)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keeps_the_original_and_says_where_it_came_from() {
        let m = Message::builder("orders", 3, 42)
            .key("k")
            .header("trace", Some("t1"))
            .build();
        let r = DeadLetterRecord::new("orders.dlq", &m, 3, "boom");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.payload, None, "a null payload stays null");
        let keys: Vec<_> = r.headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "trace",
                HEADER_SOURCE_TOPIC,
                HEADER_SOURCE_PARTITION,
                HEADER_SOURCE_OFFSET,
                HEADER_ATTEMPTS,
                HEADER_ERROR
            ]
        );
        let value = |k: &str| {
            r.headers
                .iter()
                .find(|h| h.key == k)
                .and_then(|h| h.value.clone())
        };
        assert_eq!(value(HEADER_SOURCE_OFFSET).as_deref(), Some(&b"42"[..]));
        assert_eq!(value(HEADER_ATTEMPTS).as_deref(), Some(&b"3"[..]));
    }

    #[test]
    fn a_long_error_is_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_HEADER_BYTES);
        let cut = truncate(&long, MAX_ERROR_HEADER_BYTES);
        assert!(cut.len() <= MAX_ERROR_HEADER_BYTES && cut.len() >= MAX_ERROR_HEADER_BYTES - 1);
    }
}
