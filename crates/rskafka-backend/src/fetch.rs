//! One task per assigned partition, fetching ahead of the consumer into a shared
//! channel; a semaphore per partition bounds how many batches wait there. A paused
//! partition's task stops fetching (its batches already fetched wait in the source).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ktm_core::{Message, OffsetReset, SourceError, TopicPartition};
use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::convert::to_messages;
use crate::reset::{reset_to, resolve_start, ResetCause, Start};
use crate::BACKEND;

/// What a partition task sends to the source.
#[derive(Debug)]
pub(crate) enum FetchItem {
    /// Records in offset order, starting at the task's position. The permit returns
    /// the batch's prefetch slot when the item is dropped.
    Records {
        epoch: u64,
        messages: Vec<Message>,
        /// The partition's high watermark in the response these records came with.
        high_watermark: i64,
        _permit: OwnedSemaphorePermit,
    },
    /// A fetch that returned no record saw a new high watermark (the log grew, or was
    /// truncated); sent only when it changed, so an idle partition sends nothing.
    HighWatermark { epoch: u64, high_watermark: i64 },
    /// A failed request (the task retries transient ones by itself).
    Failed { epoch: u64, error: SourceError },
}

impl FetchItem {
    pub(crate) fn epoch(&self) -> u64 {
        match self {
            FetchItem::Records { epoch, .. }
            | FetchItem::HighWatermark { epoch, .. }
            | FetchItem::Failed { epoch, .. } => *epoch,
        }
    }
}

/// The fetch settings every partition task shares.
#[derive(Clone, Debug)]
pub(crate) struct FetchSettings {
    pub(crate) min_bytes: i32,
    pub(crate) max_bytes: i32,
    pub(crate) max_wait_ms: i32,
    pub(crate) reset: OffsetReset,
    pub(crate) prefetch_batches: usize,
}

/// A running partition task, and what the source keeps of its partition.
pub(crate) struct Fetcher {
    pub(crate) epoch: u64,
    task: JoinHandle<()>,
    /// Tells the task whether to fetch: `true` while the partition is paused.
    paused: watch::Sender<bool>,
    /// Batches received while paused (or behind such batches), returned in order after
    /// the resume. They keep their prefetch permits, so the task cannot fetch past
    /// `prefetch_batches` of them even if a fetch was under way when the pause came.
    held: Vec<FetchItem>,
    /// The last high watermark received, and whether the manager has not been told yet.
    high_watermark: Option<(i64, bool)>,
}

impl Fetcher {
    /// Starts fetching `tp` from its committed offset (`None`: no commit, reset policy),
    /// on the I/O thread's runtime `io`.
    pub(crate) fn spawn(
        io: &tokio::runtime::Handle,
        client: Arc<Client>,
        tp: TopicPartition,
        committed: Option<i64>,
        epoch: u64,
        settings: Arc<FetchSettings>,
        tx: mpsc::UnboundedSender<FetchItem>,
    ) -> Self {
        let (paused, paused_rx) = watch::channel(false);
        let task = PartitionTask {
            client,
            tp,
            epoch,
            settings,
            tx,
            paused: paused_rx,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        };
        Self {
            epoch,
            task: io.spawn(task.run(committed)),
            paused,
            held: Vec::new(),
            high_watermark: None,
        }
    }

    /// Stops (`true`) or restarts the partition's fetching.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused.send_replace(paused);
    }

    pub(crate) fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Whether a record batch must wait in [`held`](Self::hold) rather than go to the
    /// manager: while paused, and while older batches still wait (order).
    pub(crate) fn must_hold(&self) -> bool {
        self.is_paused() || !self.held.is_empty()
    }

    pub(crate) fn hold(&mut self, item: FetchItem) {
        self.held.push(item);
    }

    /// The held batches, once the partition is resumed.
    pub(crate) fn take_held(&mut self) -> Option<Vec<FetchItem>> {
        if self.is_paused() || self.held.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.held))
    }

    /// Notes a high watermark received from the broker.
    pub(crate) fn note_high_watermark(&mut self, high_watermark: i64) {
        if high_watermark >= 0 {
            self.high_watermark = Some((high_watermark, true));
        }
    }

    /// The high watermark not yet reported, if any; it counts as reported afterwards.
    pub(crate) fn take_high_watermark(&mut self) -> Option<i64> {
        match &mut self.high_watermark {
            Some((hw, unreported @ true)) => {
                *unreported = false;
                Some(*hw)
            }
            _ => None,
        }
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct PartitionTask {
    client: Arc<Client>,
    tp: TopicPartition,
    epoch: u64,
    settings: Arc<FetchSettings>,
    tx: mpsc::UnboundedSender<FetchItem>,
    paused: watch::Receiver<bool>,
    backoff: Backoff,
}

/// Whether an empty fetch at `offset` is past the end of the log. Real Kafka answers
/// such a fetch with OFFSET_OUT_OF_RANGE; Tansu 0.6 answers nothing, for ever (a topic
/// recreated shorter than the position reached), but its high watermark tells.
fn past_log_end(offset: i64, high_watermark: i64) -> bool {
    high_watermark >= 0 && offset > high_watermark
}

/// Whether retrying can fix an rskafka error.
pub(crate) fn to_source_error(context: &str, e: RsError) -> SourceError {
    let fatal = matches!(
        &e,
        RsError::ServerError {
            protocol_error: ProtocolError::TopicAuthorizationFailed
                | ProtocolError::ClusterAuthorizationFailed
                | ProtocolError::GroupAuthorizationFailed
                | ProtocolError::SaslAuthenticationFailed
                | ProtocolError::UnsupportedSaslMechanism,
            ..
        }
    );
    with_kind(fatal, context, e)
}

/// An rskafka error as a [`SourceError`] of the given kind, with `context` in front.
pub(crate) fn with_kind(fatal: bool, context: &str, e: RsError) -> SourceError {
    let message = format!("{context}: {e}");
    let err = if fatal {
        SourceError::fatal(BACKEND, message)
    } else {
        SourceError::transient(BACKEND, message)
    };
    err.with_source(e)
}

impl PartitionTask {
    async fn run(mut self, committed: Option<i64>) {
        let Some(pc) = self.partition_client().await else {
            return;
        };
        let Some(mut offset) = self.start(&pc, committed).await else {
            return;
        };
        info!(partition = %self.tp, offset, "fetching");
        let s = Arc::clone(&self.settings);
        let bytes = s.min_bytes..s.max_bytes.max(s.min_bytes.saturating_add(1));
        let slots = Arc::new(Semaphore::new(s.prefetch_batches));
        let topic = Arc::clone(self.tp.topic_arc());
        let mut reported_high_watermark = -1;
        loop {
            // A paused partition is not fetched at all: what was fetched before waits in
            // the source, and nothing more is read until the resume.
            if self.paused.wait_for(|paused| !paused).await.is_err() {
                return;
            }
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            // The pause may have come while waiting for a free slot.
            if *self.paused.borrow() {
                continue;
            }
            let began = Instant::now();
            match pc.fetch_records(offset, bytes.clone(), s.max_wait_ms).await {
                Ok((records, high_watermark)) => {
                    self.backoff.reset();
                    let messages = to_messages(&topic, self.tp.partition(), offset, records);
                    if messages.is_empty() && past_log_end(offset, high_watermark) {
                        let Some(o) = self.past_end(&pc, offset).await else {
                            return;
                        };
                        offset = o;
                    }
                    let Some(last) = messages.last() else {
                        if high_watermark >= 0 && high_watermark != reported_high_watermark {
                            reported_high_watermark = high_watermark;
                            let item = FetchItem::HighWatermark {
                                epoch: self.epoch,
                                high_watermark,
                            };
                            if self.tx.send(item).is_err() {
                                return;
                            }
                        }
                        // Nothing new; a broker that answers at once must not make us spin.
                        if began.elapsed() < Duration::from_millis(5) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        continue;
                    };
                    offset = last.offset() + 1;
                    reported_high_watermark = high_watermark;
                    let item = FetchItem::Records {
                        epoch: self.epoch,
                        messages,
                        high_watermark,
                        _permit: permit,
                    };
                    if self.tx.send(item).is_err() {
                        return;
                    }
                }
                Err(RsError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    ..
                }) => match self.out_of_range(&pc, offset).await {
                    Some(o) => offset = o,
                    None => return,
                },
                Err(e) => {
                    let e = to_source_error(&format!("fetching {}", self.tp), e);
                    if !self.report(e).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sends a failure to the source; then sleeps before a retry (`true`) or, when it is
    /// fatal or nobody listens, tells the task to end (`false`).
    async fn report(&mut self, error: SourceError) -> bool {
        let transient = error.is_transient();
        warn!(partition = %self.tp, %error, "fetch task error");
        let item = FetchItem::Failed {
            epoch: self.epoch,
            error,
        };
        if self.tx.send(item).is_err() || !transient {
            return false;
        }
        tokio::time::sleep(self.backoff.next_delay()).await;
        true
    }

    async fn partition_client(&mut self) -> Option<PartitionClient> {
        loop {
            let r = self
                .client
                .partition_client(
                    self.tp.topic(),
                    self.tp.partition(),
                    UnknownTopicHandling::Retry,
                )
                .await;
            match r {
                Ok(pc) => return Some(pc),
                Err(e) => {
                    let e = to_source_error(&format!("connecting to the leader of {}", self.tp), e);
                    if !self.report(e).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn range(&mut self, pc: &PartitionClient) -> Option<(i64, i64)> {
        loop {
            let r = async {
                let earliest = pc.get_offset(OffsetAt::Earliest).await?;
                let latest = pc.get_offset(OffsetAt::Latest).await?;
                Ok::<_, RsError>((earliest, latest))
            }
            .await;
            match r {
                Ok(range) => return Some(range),
                Err(e) => {
                    let e = to_source_error(&format!("listing offsets of {}", self.tp), e);
                    if !self.report(e).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn start(&mut self, pc: &PartitionClient, committed: Option<i64>) -> Option<i64> {
        let (earliest, mut latest) = self.range(pc).await?;
        if committed.is_some() {
            // Only the lower bound is checked here: some brokers (Tansu 0.6) answer
            // ListOffsets(latest) with less than the high watermark, and a committed
            // offset past the log end makes a real broker answer OffsetOutOfRange to
            // the fetch, which is handled there.
            latest = i64::MAX;
        }
        let resolved = resolve_start(committed, earliest, latest, self.settings.reset);
        self.apply(resolved)
    }

    async fn out_of_range(&mut self, pc: &PartitionClient, offset: i64) -> Option<i64> {
        let (earliest, latest) = self.range(pc).await?;
        let cause = ResetCause::OutOfRange {
            offset,
            earliest,
            latest,
        };
        self.apply(reset_to(cause, earliest, latest, self.settings.reset))
    }

    /// An empty fetch past the high watermark: out of range (the reset policy applies)
    /// unless the log end still reaches `offset` (a high watermark that lags, as after a
    /// leader change).
    async fn past_end(&mut self, pc: &PartitionClient, offset: i64) -> Option<i64> {
        let (earliest, latest) = self.range(pc).await?;
        if (earliest..=latest).contains(&offset) {
            return Some(offset);
        }
        let cause = ResetCause::OutOfRange {
            offset,
            earliest,
            latest,
        };
        self.apply(reset_to(cause, earliest, latest, self.settings.reset))
    }

    fn apply(&mut self, resolved: Result<Start, crate::reset::NoResetPolicy>) -> Option<i64> {
        match resolved {
            Ok(Start {
                offset,
                reset: None,
            }) => Some(offset),
            Ok(Start {
                offset,
                reset: Some(ResetCause::NoCommit),
            }) => {
                debug!(partition = %self.tp, offset, policy = ?self.settings.reset, "no committed offset; starting by the reset policy");
                Some(offset)
            }
            Ok(Start {
                offset,
                reset: Some(cause),
            }) => {
                warn!(partition = %self.tp, ?cause, new_offset = offset, policy = ?self.settings.reset, "offset out of range; applying the reset policy");
                Some(offset)
            }
            Err(e) => {
                let error = SourceError::fatal(BACKEND, format!("{}: {e}", self.tp));
                // Fatal: report returns false and the task ends.
                let _ = self.tx.send(FetchItem::Failed {
                    epoch: self.epoch,
                    error,
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::past_log_end;

    #[test]
    fn a_position_past_the_high_watermark_is_out_of_range() {
        assert!(past_log_end(40, 10), "log recreated shorter");
        assert!(past_log_end(1, 0), "log recreated empty");
        assert!(!past_log_end(10, 10), "caught up: wait for more");
        assert!(!past_log_end(3, 10), "inside the log");
        assert!(!past_log_end(5, -1), "no high watermark reported");
    }
}
