//! [`RdkafkaSource`]: the [`MessageSource`] over an rdkafka `StreamConsumer`, whose records
//! are read in batches from a queue of their own ([`crate::fetch_queue`]).

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use ktm_core::{
    async_trait, ConfigError, MessageSource, OAuthTokenProvider, Offsets, PollBatch, SourceError,
    SourceEvent, Subscription, TopicPartition,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{debug, warn};

use crate::config::{
    check_subscription, finish_client_config, RdkafkaSourceBuilder, DEFAULT_CLOSE_TIMEOUT,
};
use crate::context::GroupContext;
use crate::convert::{partition_list, to_tpl, MessageConverter};
use crate::describe::DescribeInput;
use crate::error::source_error;
use crate::fetch_queue::FetchQueue;
use crate::passed::PassedOver;
use crate::worker::{Membership, RdConsumer, Worker};
use crate::BACKEND;

/// Records taken per poll at most; librdkafka keeps prefetching behind them.
const MAX_BATCH: usize = 1024;

/// A Kafka consumer on librdkafka, for the [`ThreadManager`](ktm_core::ThreadManager).
///
/// Build it with [`RdkafkaSource::builder`] (the same settings as the other backends) or
/// from a ready rdkafka [`ClientConfig`] with [`RdkafkaSource::from_client_config`]. The
/// consumer is created in the first poll, on the manager's thread.
///
/// - Offsets are stored and committed only as the manager says
///   (`enable.auto.commit=false`, `enable.auto.offset.store=false`).
/// - On a rebalance that revokes partitions, their handled positions are committed
///   before they are given up; when the assignment is lost (the session expired),
///   nothing is committed and [`SourceEvent::Lost`] is reported.
/// - Commits and closing run on a helper thread, so neither blocks a stop: closing waits
///   at most the [close timeout](RdkafkaSourceBuilder::close_timeout), then lets
///   librdkafka finish in the background. Within it, closing returns once the member
///   has left its group (a static assignment has no group to leave: at once).
pub struct RdkafkaSource {
    config: ClientConfig,
    subscription: Subscription,
    close_timeout: Duration,
    running: Option<Running>,
    converter: MessageConverter,
    /// The partitions paused now (also known to the context, which forgets revoked ones
    /// inside the rebalance callback); checked per record only when not empty.
    paused: HashSet<TopicPartition>,
    /// For a paused partition whose record librdkafka returned all the same, the first
    /// such offset: the resume seeks back to it. librdkafka drops what it prefetched on
    /// a pause, so this is a safety net that has never been seen used.
    dropped: HashMap<TopicPartition, i64>,
    /// A consumer error met after a poll had taken records or events: the next poll
    /// returns it (one-shot errors, such as an offset reset refused, are not repeated).
    pending_error: Option<SourceError>,
    /// Offsets librdkafka passed over (transaction markers, aborted records).
    passed: PassedOver,
    /// Where `OAUTHBEARER` tokens come from, for the consumer's context.
    oauth: Option<OAuthTokenProvider>,
}

/// The consumer, once created.
struct Running {
    consumer: Arc<RdConsumer>,
    /// Holds a reference to the consumer: destroyed before the consumer is closed.
    fetch_queue: Arc<FetchQueue>,
    context: Arc<GroupContext>,
    worker: Worker,
}

impl RdkafkaSource {
    /// Starts building a source from the settings shared by every backend.
    pub fn builder() -> RdkafkaSourceBuilder {
        RdkafkaSourceBuilder::new()
    }

    /// A source from a ready rdkafka configuration: every librdkafka property passes
    /// through, except `enable.auto.commit`, `enable.auto.offset.store` and
    /// `enable.partition.eof`, which are set to `false`. `group.id` is required (offsets
    /// are committed under it).
    ///
    /// # Errors
    /// [`ConfigError::EmptyGroupId`], [`ConfigError::NoTopics`], an invalid topic or
    /// partition, or [`ConfigError::Backend`] with librdkafka's message for a property it
    /// rejects.
    pub fn from_client_config(
        config: ClientConfig,
        subscription: Subscription,
    ) -> Result<Self, ConfigError> {
        check_subscription(&subscription)?;
        Self::from_parts(config, subscription, DEFAULT_CLOSE_TIMEOUT, None)
    }

    pub(crate) fn from_parts(
        config: ClientConfig,
        subscription: Subscription,
        close_timeout: Duration,
        oauth: Option<OAuthTokenProvider>,
    ) -> Result<Self, ConfigError> {
        if close_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration {
                which: "close timeout",
            });
        }
        Ok(Self {
            config: finish_client_config(config)?,
            converter: MessageConverter::new(&subscription, true),
            subscription,
            close_timeout,
            running: None,
            paused: HashSet::new(),
            dropped: HashMap::new(),
            pending_error: None,
            passed: PassedOver::default(),
            oauth,
        })
    }

    /// Sets how long closing waits for librdkafka (default 5 s).
    #[must_use]
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        if !timeout.is_zero() {
            self.close_timeout = timeout;
        }
        self
    }

    /// Whether records' headers are read (default: yes). Without them, every message has
    /// no headers, and each record costs less: librdkafka parses a record's header block
    /// on every read, with a heap-allocated reader, even when the block is empty. In
    /// `ktm-bench` (100-byte records, no headers) that was 15-27% of the manager's time
    /// per message.
    #[must_use]
    pub fn with_read_headers(mut self, read: bool) -> Self {
        self.converter = MessageConverter::new(&self.subscription, read);
        self
    }

    /// The librdkafka configuration the consumer is created with.
    pub fn client_config(&self) -> &ClientConfig {
        &self.config
    }

    /// Creates the consumer and subscribes (or assigns), once.
    fn ensure_running(&mut self) -> Result<(), SourceError> {
        if self.running.is_none() {
            self.running = Some(self.connect()?);
        }
        Ok(())
    }

    fn connect(&self) -> Result<Running, SourceError> {
        let consumer: RdConsumer = self
            .config
            .create_with_context(GroupContext::new(
                self.config.get("isolation.level") != Some("read_uncommitted"),
                self.oauth.clone(),
            ))
            .map_err(|e| source_error("creating the consumer", e))?;
        let context = Arc::clone(consumer.context());
        let consumer = Arc::new(consumer);
        let fetch_queue = FetchQueue::new(Arc::clone(&consumer))
            .map(Arc::new)
            .ok_or_else(|| SourceError::fatal(BACKEND, "librdkafka created no queue"))?;
        context.set_fetch_queue(&fetch_queue);
        let membership = match &self.subscription {
            Subscription::Partitions(partitions) => {
                fetch_queue.forward(partitions);
                let mut tpl = TopicPartitionList::with_capacity(partitions.len());
                for tp in partitions {
                    // No offset: start from the committed one, else `auto.offset.reset`.
                    tpl.add_partition(tp.topic(), tp.partition());
                }
                consumer
                    .assign(&tpl)
                    .map_err(|e| source_error("assigning the partitions", e))?;
                context.assigned(partitions);
                context.push_event(SourceEvent::Assigned(partitions.clone()));
                Membership::Static
            }
            Subscription::Topics(topics) => {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer
                    .subscribe(&topics)
                    .map_err(|e| source_error("subscribing", e))?;
                Membership::Group
            }
            other => {
                return Err(SourceError::fatal(
                    BACKEND,
                    format!("unsupported subscription {other:?}"),
                ))
            }
        };
        let worker = Worker::spawn(Arc::clone(&consumer), membership).map_err(|e| {
            SourceError::fatal(BACKEND, format!("cannot spawn the helper thread: {e}"))
        })?;
        debug!("librdkafka consumer created");
        Ok(Running {
            consumer,
            fetch_queue,
            context,
            worker,
        })
    }
}

/// What the wait for the first record ended with.
enum First<'a> {
    Record(Result<BorrowedMessage<'a>, KafkaError>),
    /// Records (or a consumer error) wait in the fetch queue.
    Fetched,
    /// An assignment change came first.
    Event,
    TimedOut,
}

#[async_trait]
impl MessageSource for RdkafkaSource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn describe(&mut self) -> Result<ktm_core::SourceDescription, SourceError> {
        let input = DescribeInput::new(&self.config, &self.subscription, self.oauth.clone())?;
        crate::describe::describe(input).await
    }

    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError> {
        self.ensure_running()?;
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let Some(running) = self.running.as_ref() else {
            return Ok(());
        };
        let pending_error = &mut self.pending_error;
        let context = &running.context;
        if let Some(alert) = context.take_tls_refusal() {
            return Err(SourceError::fatal(
                BACKEND,
                format!("polling: the broker refused this client's TLS certificate: {alert}"),
            ));
        }
        let fetch_queue = &running.fetch_queue;
        let converter = &mut self.converter;
        let mut stream = running.consumer.stream();

        // Wait for records, a record on the consumer queue, or an assignment change
        // (which rebalance callbacks queue while the stream is polled). Cancel-safe:
        // nothing is taken from either queue, nor pushed into `batch`, before it ends.
        let first = if context.has_events() {
            First::Event
        } else if !fetch_queue.is_empty() {
            First::Fetched
        } else {
            let next = poll_fn(|cx| {
                match stream.poll_next_unpin(cx) {
                    Poll::Ready(Some(record)) => return Poll::Ready(First::Record(record)),
                    Poll::Ready(None) => return Poll::Ready(First::TimedOut),
                    Poll::Pending => {}
                }
                if context.has_events() {
                    return Poll::Ready(First::Event);
                }
                // Registered before the check, so records arriving in between wake us.
                fetch_queue.register(cx.waker());
                if fetch_queue.is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready(First::Fetched)
                }
            });
            tokio::time::timeout(timeout, next)
                .await
                .unwrap_or(First::TimedOut)
        };
        match first {
            First::Record(Ok(m)) => batch.push(converter.convert(&m)),
            First::Record(Err(KafkaError::PartitionEOF(_)))
            | First::Event
            | First::Fetched
            | First::TimedOut => {}
            // Queued events stay queued for the next poll.
            First::Record(Err(e)) => return Err(source_error("polling", e)),
        }
        let before = context.take_events();

        // The consumer queue holds records only of partitions assigned before their
        // fetch queue was forwarded (none, in practice): drained first, then the records'
        // own queue, up to the next assignment change.
        let mut consumer_queue_drained = false;
        while batch.len() < MAX_BATCH && !context.has_events() {
            match stream.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(converter.convert(&m)),
                Some(Some(Err(KafkaError::PartitionEOF(_)))) => {}
                Some(Some(Err(e))) => {
                    *pending_error = Some(source_error("polling", e));
                    break;
                }
                Some(None) | None => {
                    consumer_queue_drained = true;
                    break;
                }
            }
        }
        if consumer_queue_drained && !context.has_events() && batch.len() < MAX_BATCH {
            if let Some(e) = fetch_queue.read(MAX_BATCH - batch.len(), converter, batch) {
                pending_error.get_or_insert(e);
            }
        }
        let after = context.take_events();
        drop(stream);

        // Records of partitions revoked or lost after they were fetched are not ours to
        // handle: their next owner reads them from the committed position.
        let gone: HashSet<&TopicPartition> = after
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Revoked(tps) | SourceEvent::Lost(tps) => Some(tps),
                _ => None,
            })
            .flatten()
            .collect();
        for event in before.into_iter().chain(after.iter().cloned()) {
            if let SourceEvent::Revoked(tps) | SourceEvent::Lost(tps) = &event {
                self.passed.forget(tps);
                // The context resumed them in librdkafka already.
                for tp in tps {
                    self.paused.remove(tp);
                    self.dropped.remove(tp);
                }
            }
            batch.push_event(event);
        }
        // After the events: a partition assigned in this poll has an entry already.
        for (tp, high_watermark) in context.take_high_watermarks() {
            batch.set_high_watermark(tp, high_watermark);
        }
        if !gone.is_empty() || !self.paused.is_empty() {
            let (paused, dropped) = (&self.paused, &mut self.dropped);
            batch.retain(|m| {
                let tp = m.topic_partition();
                if gone.contains(&tp) {
                    return false;
                }
                if paused.contains(&tp) {
                    // Not expected (librdkafka drops a paused partition's prefetched
                    // records), but a record the manager never sees must be read again
                    // after the resume.
                    let first = *dropped.entry(tp).or_insert(m.offset());
                    warn!(partition = %m.topic_partition(), offset = m.offset(), resume_at = first, "record of a paused partition dropped");
                    return false;
                }
                true
            });
        }
        self.passed.note_delivered(batch);
        self.passed.report(&running.consumer, batch);
        if batch.is_empty() {
            if let Some(e) = self.pending_error.take() {
                return Err(e);
            }
        } else if let Some(e) = &self.pending_error {
            debug!(error = %e, "consumer error after records; the next poll returns it");
        }
        Ok(())
    }

    fn group_id(&self) -> Option<&str> {
        self.config.get("group.id")
    }

    /// Pauses the partitions with librdkafka's `rd_kafka_pause_partitions`: it stops
    /// fetching them and drops the records it prefetched; the resume fetches from the
    /// last record returned + 1. The group membership goes on. Partitions not assigned
    /// are ignored (librdkafka would keep the pause for a later assignment).
    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        let Some(running) = &self.running else {
            return Ok(());
        };
        let owned = running.context.mark_paused(partitions, true);
        if owned.is_empty() {
            return Ok(());
        }
        self.paused.extend(owned.iter().cloned());
        running
            .consumer
            .pause(&partition_list(&owned))
            .map_err(|e| source_error("pausing partitions", e))?;
        debug!(partitions = ?owned, "paused");
        Ok(())
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        let Some(running) = &self.running else {
            return Ok(());
        };
        let owned = running.context.mark_paused(partitions, false);
        for tp in partitions {
            self.paused.remove(tp);
        }
        if owned.is_empty() {
            return Ok(());
        }
        running
            .consumer
            .resume(&partition_list(&owned))
            .map_err(|e| source_error("resuming partitions", e))?;
        for tp in &owned {
            if let Some(offset) = self.dropped.remove(tp) {
                // Asynchronous (no timeout): queued after the resume, it only moves the
                // fetch position back to the first record dropped.
                running
                    .consumer
                    .seek(
                        tp.topic(),
                        tp.partition(),
                        Offset::Offset(offset),
                        Duration::ZERO,
                    )
                    .map_err(|e| source_error("seeking back after a resume", e))?;
            }
        }
        debug!(partitions = ?owned, "resumed");
        Ok(())
    }

    fn store(&mut self, positions: &Offsets) {
        let Some(running) = &self.running else {
            return;
        };
        running.context.store(positions);
        match to_tpl(positions) {
            Ok(tpl) => {
                if let Err(e) = running.consumer.store_offsets(&tpl) {
                    // Partitions revoked meanwhile; the manager forgets them too.
                    debug!(error = %e, "librdkafka did not store every position");
                }
            }
            Err(e) => debug!(error = %e, "positions not stored in librdkafka"),
        }
    }

    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError> {
        if positions.is_empty() {
            return Ok(());
        }
        let Some(running) = &self.running else {
            return Err(SourceError::transient(
                BACKEND,
                "cannot commit: not connected yet",
            ));
        };
        let tpl = to_tpl(positions).map_err(|e| source_error("committing", e))?;
        match running.worker.commit(tpl).await {
            Ok(()) => {
                running.context.committed(positions);
                debug!(?positions, "committed");
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, ?positions, "commit failed");
                Err(source_error("committing", e))
            }
        }
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        let Some(Running {
            consumer,
            fetch_queue,
            context,
            worker,
        }) = self.running.take()
        else {
            return Ok(());
        };
        drop_fetch_queue(fetch_queue);
        context.set_closing();
        let closed = worker.close(consumer);
        match tokio::time::timeout(self.close_timeout, closed).await {
            Ok(_) => Ok(()),
            Err(_) => {
                warn!(timeout = ?self.close_timeout, "librdkafka did not close in time; it finishes in the background");
                Err(SourceError::transient(
                    BACKEND,
                    format!(
                        "librdkafka did not leave the group within {:?}; it finishes closing in the background",
                        self.close_timeout
                    ),
                ))
            }
        }
    }
}

impl Drop for RdkafkaSource {
    fn drop(&mut self) {
        // Never close here: librdkafka may block for `session.timeout.ms`. Without a
        // close, the revoke that closing triggers still commits the stored positions.
        if let Some(Running {
            consumer,
            fetch_queue,
            worker,
            ..
        }) = self.running.take()
        {
            drop_fetch_queue(fetch_queue);
            drop(worker.close(consumer));
        }
    }
}

/// Destroys the fetch queue, so that its reference to the consumer is gone before the
/// consumer is closed (records still in it were never handed over: nothing of them was
/// stored).
fn drop_fetch_queue(queue: Arc<FetchQueue>) {
    queue.destroy();
    drop(queue);
}

impl std::fmt::Debug for RdkafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdkafkaSource")
            .field("subscription", &self.subscription)
            .field("close_timeout", &self.close_timeout)
            .field("connected", &self.running.is_some())
            .finish_non_exhaustive()
    }
}
