//! rdkafka's errors as the manager's [`SourceError`]s: which ones retrying can fix, and
//! where a consumer error librdkafka reported for one partition happened.

use ktm_core::{SourceError, TopicPartition};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::BACKEND;

/// A consumer error that librdkafka reported for one partition, in the place of a
/// record: the [source](std::error::Error::source) of the [`SourceError`] a poll returns
/// for it, and part of that error's message.
///
/// ```
/// # use ktm_core::SourceError;
/// use ktm_rdkafka::PartitionError;
/// fn failed_at(e: &SourceError) -> Option<(&str, i32, Option<i64>)> {
///     let p = std::error::Error::source(e)?.downcast_ref::<PartitionError>()?;
///     Some((p.topic.as_str(), p.partition, p.offset))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{topic}[{partition}]{}: {detail}", at_offset(.offset))]
#[non_exhaustive]
pub struct PartitionError {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset librdkafka gives with the error: the first offset of the record
    /// batch that failed, or the partition's fetch position for a failed fetch. `None`
    /// when it gives none.
    pub offset: Option<i64>,
    /// librdkafka's error code.
    pub code: RDKafkaErrorCode,
    /// librdkafka's description, such as `Decompression (codec 0x4) of message at 7 of
    /// 120 bytes failed: Local: Not implemented`.
    pub detail: String,
}

impl PartitionError {
    /// The topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.as_str(), self.partition)
    }
}

fn at_offset(offset: &Option<i64>) -> String {
    offset
        .map(|o| format!(" at offset {o}"))
        .unwrap_or_default()
}

/// Error codes that retrying cannot fix, whatever the operation.
fn is_fatal(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::Fatal
            | C::Authentication
            | C::AutoOffsetReset
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState
            | C::FencedInstanceId
            | C::InvalidGroupId
            | C::InvalidSessionTimeout
            | C::InconsistentGroupProtocol
            | C::UnsupportedAssignor
            | C::InvalidConfig
            | C::SSL
    )
}

/// Consumer errors that retrying cannot fix either: what librdkafka reports in place
/// of records it cannot read. Retried, each would come back at every fetch (a batch it
/// cannot decompress is fetched again, as the fetch position stays before it) or, worse,
/// librdkafka would go on past the records (a batch failing its CRC check, a message
/// format it does not know), and the next commit would cover records never handled.
/// Java's consumer throws on each of these too (a corrupt record, or an error code it
/// does not expect from a fetch), and the application has to seek past the record.
fn is_fatal_consume(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        // Local: a codec librdkafka was built without, or a magic byte it does not know.
        C::NotImplemented
            // Local: decompression failed.
            | C::BadCompression
            // Local: a CRC check failed, or a record could not be parsed.
            | C::BadMessage
            | C::UnsupportedFeature
            // The broker's CORRUPT_MESSAGE.
            | C::InvalidMessage
            | C::UnsupportedCompressionType
            | C::UnsupportedForMessageFormat
            | C::UnsupportedVersion
            // A record larger than librdkafka may fetch (`receive.message.max.bytes`).
            | C::MessageSizeTooLarge
    )
}

/// A source error for an rdkafka error met while `doing` something.
pub(crate) fn source_error(doing: &str, e: KafkaError) -> SourceError {
    let fatal = match &e {
        KafkaError::MessageConsumptionFatal(_)
        | KafkaError::ClientConfig(..)
        | KafkaError::ClientCreation(_)
        | KafkaError::Subscription(_) => true,
        KafkaError::MessageConsumption(code) => is_fatal(*code) || is_fatal_consume(*code),
        other => other.rdkafka_error_code().is_some_and(is_fatal),
    };
    let message = match e.rdkafka_error_code() {
        // Worded as every backend words it, with librdkafka's own text kept.
        Some(RDKafkaErrorCode::AutoOffsetReset) => {
            format!("{doing}: no committed offset and offset reset is none ({e})")
        }
        _ => format!("{doing}: {e}"),
    };
    let error = if fatal {
        SourceError::fatal(BACKEND, message)
    } else {
        SourceError::transient(BACKEND, message)
    };
    error.with_source(e)
}

/// A source error for a consumer error librdkafka reported for one partition, met
/// while polling; classified as the same code on the consumer queue would be.
pub(crate) fn partition_error(e: PartitionError) -> SourceError {
    let fatal = is_fatal(e.code) || is_fatal_consume(e.code);
    let message = match e.code {
        RDKafkaErrorCode::AutoOffsetReset => {
            format!("polling: no committed offset and offset reset is none ({e})")
        }
        _ => format!("polling: {e}"),
    };
    let error = if fatal {
        SourceError::fatal(BACKEND, message)
    } else {
        SourceError::transient(BACKEND, message)
    };
    error.with_source(e)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use RDKafkaErrorCode as C;

    #[test]
    fn errors_are_classified() {
        let e = source_error("polling", KafkaError::MessageConsumption(C::AllBrokersDown));
        assert!(e.is_transient());
        let e = source_error("polling", KafkaError::MessageConsumptionFatal(C::Fatal));
        assert!(!e.is_transient());
        let e = source_error(
            "polling",
            KafkaError::MessageConsumption(C::TopicAuthorizationFailed),
        );
        assert!(!e.is_transient());
        let e = source_error(
            "committing",
            KafkaError::ConsumerCommit(C::RebalanceInProgress),
        );
        assert!(e.is_transient());
        assert!(e.to_string().contains("committing"), "{e}");
    }

    /// The codes that come back at every fetch, or that librdkafka skips past.
    const UNREADABLE: [RDKafkaErrorCode; 9] = [
        C::NotImplemented,
        C::BadCompression,
        C::BadMessage,
        C::UnsupportedFeature,
        C::InvalidMessage,
        C::UnsupportedCompressionType,
        C::UnsupportedForMessageFormat,
        C::UnsupportedVersion,
        C::MessageSizeTooLarge,
    ];

    #[test]
    fn consume_errors_retrying_cannot_fix_are_fatal() {
        for code in UNREADABLE {
            let e = source_error("polling", KafkaError::MessageConsumption(code));
            assert!(!e.is_transient(), "{code:?}: {e}");
        }
        for code in [
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::RequestTimedOut,
            C::NotLeaderForPartition,
            C::UnknownTopicOrPartition,
            C::Unknown,
            C::PollExceeded,
        ] {
            let e = source_error("polling", KafkaError::MessageConsumption(code));
            assert!(e.is_transient(), "{code:?}: {e}");
        }
        // Only as consume errors: a commit refused as too large says nothing of the
        // records.
        let e = source_error(
            "committing",
            KafkaError::ConsumerCommit(C::MessageSizeTooLarge),
        );
        assert!(e.is_transient(), "{e}");
    }

    fn at(code: RDKafkaErrorCode, offset: Option<i64>) -> PartitionError {
        PartitionError {
            topic: "orders".into(),
            partition: 3,
            offset,
            code,
            detail: "Decompression (codec 0x4) of message at 42 of 120 bytes failed: \
                     Local: Not implemented"
                .into(),
        }
    }

    #[test]
    fn partition_errors_carry_where_they_happened() {
        let e = partition_error(at(C::NotImplemented, Some(42)));
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "rdkafka: polling: orders[3] at offset 42: Decompression (codec 0x4) of \
             message at 42 of 120 bytes failed: Local: Not implemented"
        );
        let source = std::error::Error::source(&e)
            .unwrap()
            .downcast_ref::<PartitionError>()
            .unwrap();
        assert_eq!(source.topic_partition(), TopicPartition::new("orders", 3));
        assert_eq!(source.offset, Some(42));
        assert_eq!(source.code, C::NotImplemented);
        for code in UNREADABLE {
            assert!(!partition_error(at(code, None)).is_transient(), "{code:?}");
        }
        let e = partition_error(at(C::TopicAuthorizationFailed, None));
        assert!(!e.is_transient());
        assert!(e.to_string().contains("orders[3]: "), "{e}");
        let e = partition_error(at(C::AutoOffsetReset, Some(-1)));
        assert!(!e.is_transient());
        assert!(e.to_string().contains("offset reset is none"), "{e}");
        assert!(partition_error(at(C::Unknown, Some(7))).is_transient());
    }
}
