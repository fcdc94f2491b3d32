//! [`MessageSource::describe`](ktm_core::MessageSource::describe) and the dead-letter
//! producer's partition count, for preflight: librdkafka metadata requests on a
//! short-lived consumer of their own, run on tokio's blocking pool (they block).

use std::time::Duration;

use ktm_core::{
    GroupStatus, OAuthTokenProvider, SourceDescription, SourceError, Subscribed, Subscription,
    TopicDescription,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::context::GroupContext;
use crate::error::source_error;
use crate::BACKEND;

/// Bounds each blocking librdkafka request; the preflight's own timeout bounds the
/// whole (it stops waiting for the blocking pool when it expires). A refused group is
/// known only once the committed-offsets lookup has timed out, so it costs this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What `describe` needs of the source, owned so it can move to the blocking pool.
pub(crate) struct DescribeInput {
    config: ClientConfig,
    subscription: Subscription,
    topics: Vec<String>,
    context: GroupContext,
}

impl DescribeInput {
    /// From the source's settings; the context as the source's own consumer gets it
    /// (OAUTHBEARER tokens come through it).
    pub(crate) fn new(
        config: &ClientConfig,
        subscription: &Subscription,
        oauth: Option<OAuthTokenProvider>,
    ) -> Result<Self, SourceError> {
        let topics = match subscription {
            Subscription::Partitions(p) => {
                let mut t: Vec<String> = p.iter().map(|tp| tp.topic().to_owned()).collect();
                t.sort();
                t.dedup();
                t
            }
            Subscription::Topics(t) => t.clone(),
            other => {
                return Err(SourceError::fatal(
                    BACKEND,
                    format!("unsupported subscription {other:?}"),
                ))
            }
        };
        let read_committed = config.get("isolation.level") != Some("read_uncommitted");
        Ok(Self {
            config: config.clone(),
            subscription: subscription.clone(),
            topics,
            context: GroupContext::new(read_committed, oauth),
        })
    }
}

/// Describes the subscription on a blocking thread.
pub(crate) async fn describe(input: DescribeInput) -> Result<SourceDescription, SourceError> {
    tokio::task::spawn_blocking(move || describe_blocking(input))
        .await
        .map_err(|e| SourceError::transient(BACKEND, format!("describing: {e}")))?
}

fn describe_blocking(input: DescribeInput) -> Result<SourceDescription, SourceError> {
    let consumer: BaseConsumer<GroupContext> = input
        .config
        .create_with_context(input.context)
        .map_err(|e| source_error("creating a consumer to describe the subscription", e))?;
    let mut described = Vec::with_capacity(input.topics.len());
    for topic in &input.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| source_error(&format!("reading the metadata of {topic:?}"), e))?;
        described.push(topic_description(topic, &metadata)?);
    }
    let subscription = match &input.subscription {
        Subscription::Partitions(p) => Subscribed::Partitions(p.clone()),
        _ => Subscribed::Topics(input.topics.clone()),
    };
    let group = input.config.get("group.id").unwrap_or_default().to_owned();
    // The rdkafka crate offers no FindCoordinator. A committed-offsets lookup
    // (OffsetFetch) goes to the group's coordinator, so librdkafka must find one for
    // it, and the coordinator checks the group id and the group ACL; ListGroups would
    // ask every broker and accept any id. Nothing is committed or joined.
    let mut tpl = TopicPartitionList::new();
    if let Some(topic) = input.topics.first() {
        tpl.add_partition(topic, 0);
    }
    let status = match consumer.committed_offsets(tpl, REQUEST_TIMEOUT) {
        Ok(_) => GroupStatus::Accepted {
            coordinator: "found by librdkafka (OffsetFetch answered)".to_owned(),
        },
        Err(e) => match refusal(&e).or_else(|| queued_refusal(&consumer)) {
            Some(code) => GroupStatus::Rejected {
                error: format!("{code:?}"),
            },
            None => return Err(source_error("looking up the group's committed offsets", e)),
        },
    };
    let endpoint = input
        .config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_owned();
    Ok(SourceDescription::new(endpoint, subscription, described).with_group(group, status))
}

/// The error codes that refuse the group id itself.
fn refusal(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code().filter(|code| {
        matches!(
            code,
            RDKafkaErrorCode::InvalidGroupId | RDKafkaErrorCode::GroupAuthorizationFailed
        )
    })
}

/// A refusal librdkafka queued as a consumer error while the lookup waited: it keeps
/// asking a coordinator that refuses the group, and the lookup itself only times out.
fn queued_refusal(consumer: &BaseConsumer<GroupContext>) -> Option<RDKafkaErrorCode> {
    // Nothing was assigned, so only errors and events can come.
    let mut wait = Duration::from_millis(100);
    while let Some(polled) = consumer.poll(wait) {
        wait = Duration::ZERO;
        if let Some(code) = polled.err().as_ref().and_then(refusal) {
            return Some(code);
        }
    }
    None
}

/// `topic` in a metadata answer: its partitions, missing, or an error worth reporting.
pub(crate) fn topic_description(
    topic: &str,
    metadata: &Metadata,
) -> Result<TopicDescription, SourceError> {
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(TopicDescription::missing(topic));
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None => {
            let n = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
            Ok(if n > 0 {
                TopicDescription::found(topic, n)
            } else {
                TopicDescription::missing(topic)
            })
        }
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            Ok(TopicDescription::missing(topic))
        }
        Some(code) => Err(source_error(
            &format!("reading the metadata of {topic:?}"),
            KafkaError::MetadataFetch(code),
        )),
    }
}

/// A dead-letter topic's partition count (`None`: missing) from the metadata `fetch`
/// returns, asked on a blocking thread.
pub(crate) async fn partition_count(
    topic: &str,
    fetch: impl FnOnce(Duration) -> Result<Metadata, KafkaError> + Send + 'static,
) -> Result<Option<i32>, SourceError> {
    let metadata = tokio::task::spawn_blocking(move || fetch(REQUEST_TIMEOUT))
        .await
        .map_err(|e| SourceError::transient(BACKEND, format!("reading the metadata: {e}")))?
        .map_err(|e| source_error(&format!("reading the metadata of {topic:?}"), e))?;
    Ok(topic_description(topic, &metadata)?.partitions)
}
