//! The consumer side of a backend: what the managed thread polls and commits through.

use std::time::Duration;

use async_trait::async_trait;

use crate::{Message, Offsets, SourceDescription, SourceError, TopicPartition};

/// A change in which partitions this consumer owns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceEvent {
    /// These partitions are now this consumer's; messages from them follow.
    Assigned(Vec<TopicPartition>),
    /// These partitions were given up in an orderly rebalance. The source committed the
    /// [stored](MessageSource::store) positions of each before giving it up.
    Revoked(Vec<TopicPartition>),
    /// These partitions were taken away without a chance to commit (the session expired
    /// or the member was fenced); their uncommitted messages will be redelivered to the
    /// new owner.
    Lost(Vec<TopicPartition>),
}

/// What one [`MessageSource::poll`] returned: messages in partition order, and the
/// assignment changes that happened before them. Reused across polls, so a steady
/// stream allocates nothing per batch.
#[derive(Debug, Default)]
pub struct PollBatch {
    messages: Vec<Message>,
    events: Vec<SourceEvent>,
    high_watermarks: Vec<(TopicPartition, i64)>,
    passed: Vec<Passed>,
}

/// Records a source passed over without delivering them (see [`PollBatch::pass`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Passed {
    pub(crate) tp: TopicPartition,
    pub(crate) after: Option<i64>,
    pub(crate) to: i64,
}

impl PollBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a message. Messages of one partition must be pushed in offset order.
    #[inline]
    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    /// Adds an assignment change; the manager handles events before messages.
    pub fn push_event(&mut self, event: SourceEvent) {
        self.events.push(event);
    }

    /// Reports a partition's high watermark (the offset the next produced record will
    /// get), as the broker last told it; the manager derives lag from it. Optional.
    pub fn set_high_watermark(&mut self, tp: TopicPartition, high_watermark: i64) {
        self.high_watermarks.push((tp, high_watermark));
    }

    /// Reports that `tp`'s offsets before `to` that were not pushed will never be
    /// delivered: transaction markers, records of aborted transactions. `after` is the
    /// offset following the last message pushed for the partition since it was
    /// assigned (`None`: none was). Once every message before `after` is settled, the
    /// manager moves the partition's position to `to`, so that its commit and lag pass
    /// those offsets, as Kafka clients' positions do; without it an idle transactional
    /// partition would show a lag of one marker for ever.
    ///
    /// ```
    /// use ktm_core::{PollBatch, TopicPartition};
    /// let mut batch = PollBatch::new();
    /// // Records 7 and 8 were pushed; 9 is a commit marker.
    /// batch.pass(TopicPartition::new("t", 0), Some(9), 10);
    /// ```
    pub fn pass(&mut self, tp: TopicPartition, after: Option<i64>, to: i64) {
        self.passed.push(Passed { tp, after, to });
    }

    /// Keeps only the messages `keep` accepts, in order: for a source that learns, after
    /// pushing them, that some must not be delivered (say, their partition was revoked).
    ///
    /// ```
    /// use ktm_core::{Message, PollBatch};
    /// let mut batch = PollBatch::new();
    /// batch.push(Message::builder("t", 0, 7).build());
    /// batch.push(Message::builder("t", 1, 3).build());
    /// batch.retain(|m| m.partition() != 0);
    /// assert_eq!(batch.messages()[0].offset(), 3);
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn retain(&mut self, keep: impl FnMut(&Message) -> bool) {
        self.messages.retain(keep);
    }

    /// The high watermarks reported with this batch.
    pub fn high_watermarks(&self) -> &[(TopicPartition, i64)] {
        &self.high_watermarks
    }

    /// The messages, in the order they are to be handled.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The assignment changes.
    pub fn events(&self) -> &[SourceEvent] {
        &self.events
    }

    /// Number of messages.
    #[inline]
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there is neither a message nor an event.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.events.is_empty()
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.messages.clear();
        self.events.clear();
        self.high_watermarks.clear();
        self.passed.clear();
    }

    pub(crate) fn take_passed(&mut self) -> Vec<Passed> {
        std::mem::take(&mut self.passed)
    }

    pub(crate) fn take_events(&mut self) -> Vec<SourceEvent> {
        std::mem::take(&mut self.events)
    }

    pub(crate) fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }

    /// Gives the (handled) messages' buffer back, so its capacity is reused.
    pub(crate) fn restore_messages(&mut self, mut messages: Vec<Message>) {
        messages.clear();
        self.messages = messages;
    }
}

/// A Kafka consumer, as the managed thread sees it.
///
/// Backends implement this; the [`ThreadManager`](crate::ThreadManager) drives it on its own
/// thread, on a single-threaded tokio runtime (with I/O and timers enabled), which is
/// where the source must create its connections: connect lazily in the first `poll`.
///
/// # Contract
/// - **`poll` is cancel-safe.** The manager drops a pending `poll` future when it is told
///   to stop or its lifetime ends; this is how `stop()` avoids waiting out the poll
///   timeout. A dropped `poll` must lose nothing: records it had fetched are returned by
///   a later call (or re-fetched after a restart from the committed offsets).
/// - **Order.** Within a partition, records arrive in offset order, without gaps other
///   than those of the log itself (compaction, transactions).
/// - **Store before poll.** Before each `poll`, the manager calls [`store`](Self::store)
///   with the positions it has handled since the previous call. When the group takes
///   partitions away in an orderly rebalance, the source commits their stored positions
///   *before* giving them up, then reports [`SourceEvent::Revoked`]. Nothing else may be
///   committed on the source's own initiative: at-least-once rests on it.
/// - **Errors.** A [`SourceErrorKind::Transient`](crate::SourceErrorKind::Transient)
///   error from `poll` is retried by the manager with backoff; a fatal one stops it. A
///   failed `commit` leaves the positions uncommitted; the manager retries later.
#[async_trait]
pub trait MessageSource: Send + 'static {
    /// A short name for logs and errors, such as `"rskafka"`.
    fn backend(&self) -> &'static str;

    /// Waits up to `timeout` for records and appends them, and any assignment changes,
    /// to `batch` (which the manager empties first). Returning with nothing is a timeout.
    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError>;

    /// Records positions the manager has handled (Kafka's offset store). Cheap and local:
    /// nothing is sent to the broker here.
    fn store(&mut self, positions: &Offsets);

    /// Commits these positions to the group, and returns once the broker accepted them.
    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError>;

    /// Leaves the group and releases connections. Called once, after the last commit.
    async fn close(&mut self) -> Result<(), SourceError>;

    /// The consumer group this source commits for, if any; a label on metrics.
    fn group_id(&self) -> Option<&str> {
        None
    }

    /// Stops returning records of these partitions until they are [resumed](Self::resume),
    /// without leaving the group (the manager keeps polling). Records already returned
    /// are the manager's; after `resume` the partition continues right after the last
    /// record returned for it. A partition that is revoked or lost forgets its pause.
    /// Local and cheap, like `store`.
    ///
    /// The manager pauses a partition while a message of it waits for a retry. The
    /// default does nothing: records of the partition keep arriving and the manager
    /// holds them in memory until the partition moves again, so order and delivery are
    /// kept but memory is not bounded. Every bundled backend pauses for real.
    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        let _ = partitions;
        Ok(())
    }

    /// Returns records of these partitions again; see [`pause`](Self::pause).
    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        let _ = partitions;
        Ok(())
    }

    /// Asks the broker about the subscription without joining the group or fetching:
    /// each subscribed (or pattern-matched) topic with its partition count or missing,
    /// and whether the group coordinator accepts the group id. Used by
    /// [`ThreadManager::preflight`](crate::ThreadManager::preflight), before `start()`.
    ///
    /// It runs on a short-lived runtime of its own, not the consumer thread's: whatever
    /// it connects must be closed before it returns, and must not be kept for `poll`
    /// (its I/O driver is gone afterwards). A transient error is retried until the
    /// preflight times out. The default returns a
    /// [`SourceErrorKind::Unsupported`](crate::SourceErrorKind::Unsupported) error.
    async fn describe(&mut self) -> Result<SourceDescription, SourceError> {
        Err(SourceError::unsupported(self.backend(), "describe"))
    }
}

#[async_trait]
impl<S: MessageSource + ?Sized> MessageSource for Box<S> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError> {
        (**self).poll(timeout, batch).await
    }
    fn store(&mut self, positions: &Offsets) {
        (**self).store(positions)
    }
    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError> {
        (**self).commit(positions).await
    }
    async fn close(&mut self) -> Result<(), SourceError> {
        (**self).close().await
    }
    fn group_id(&self) -> Option<&str> {
        (**self).group_id()
    }
    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        (**self).pause(partitions)
    }
    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        (**self).resume(partitions)
    }
    async fn describe(&mut self) -> Result<SourceDescription, SourceError> {
        (**self).describe().await
    }
}
