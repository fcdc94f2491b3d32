//! The consumer context: rebalance callbacks (commit on revoke, nothing on loss), the
//! stored positions they commit, the events they queue for `poll`, and logging.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use ktm_core::{Offsets, SourceEvent, TopicPartition};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::convert::{partition_list, partitions, to_tpl};
use crate::fetch_queue::FetchQueue;

/// How long the close's revoke callback waits for librdkafka to finish closing (see
/// [`GroupContext::wait_until_closed`]). Leaving the group takes one round trip; past
/// this, rust-rdkafka's drop goes on waiting on its own, 100 ms at a time.
const CLOSE_WAIT_LIMIT: Duration = Duration::from_secs(1);

/// The longest pause between two looks at whether the consumer is closed.
const CLOSE_CHECK_MAX_PAUSE: Duration = Duration::from_millis(2);

/// State shared by the source and the rebalance callbacks, which run inside
/// `recv()` on the consumer thread (or on the closing thread).
#[derive(Default)]
struct Shared {
    /// Handled positions not yet known to be committed.
    stored: HashMap<TopicPartition, i64>,
    /// Assignment changes not yet handed to the manager.
    events: Vec<SourceEvent>,
    /// The partitions assigned, as librdkafka last said in a rebalance callback.
    assigned: HashSet<TopicPartition>,
    /// The partitions the manager paused. librdkafka keeps an application pause on a
    /// partition across an unassign, so a revoked partition is resumed here to forget it.
    paused: HashSet<TopicPartition>,
    /// High watermarks from librdkafka's statistics not yet handed to the manager.
    high_watermarks: HashMap<TopicPartition, i64>,
}

/// The [`ConsumerContext`] of an [`RdkafkaSource`](crate::RdkafkaSource).
#[derive(Default)]
pub(crate) struct GroupContext {
    shared: Mutex<Shared>,
    /// Lag is measured to the last stable offset under `isolation.level=read_committed`
    /// (what such a consumer can reach), as librdkafka's own `consumer_lag`.
    read_committed: bool,
    /// Set once the manager closes the source: its final commit is done, so the revoke
    /// that closing triggers commits nothing more.
    closing: AtomicBool,
    /// Set once the last reference to the consumer is being dropped: rebalance callbacks
    /// from then on run inside rust-rdkafka's drop, which is closing the consumer.
    terminating: AtomicBool,
    /// Mirrors `!shared.events.is_empty()`, read on every poll without the lock.
    has_events: AtomicBool,
    /// Mirrors `!shared.high_watermarks.is_empty()`, likewise.
    has_high_watermarks: AtomicBool,
    /// Where assigned partitions' records go (weak: the queue holds the consumer).
    fetch_queue: OnceLock<Weak<FetchQueue>>,
    /// Where `OAUTHBEARER` tokens come from, when that is the SASL mechanism.
    oauth: Option<ktm_core::OAuthTokenProvider>,
    /// A broker's TLS alert refusing this client (see [`tls_refusal`]), not yet
    /// reported by a poll.
    tls_refusal: Mutex<Option<String>>,
    /// Mirrors `tls_refusal.is_some()`, read on every poll without the lock.
    has_tls_refusal: AtomicBool,
}

impl GroupContext {
    /// A context for a consumer reading at `isolation.level=read_committed` or not.
    pub(crate) fn new(read_committed: bool, oauth: Option<ktm_core::OAuthTokenProvider>) -> Self {
        Self {
            read_committed,
            oauth,
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Every critical section is a few map operations: a panic cannot leave it torn.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the queue assigned partitions' records are forwarded to, once.
    pub(crate) fn set_fetch_queue(&self, queue: &Arc<FetchQueue>) {
        let _ = self.fetch_queue.set(Arc::downgrade(queue));
    }

    /// Records handled positions.
    pub(crate) fn store(&self, positions: &Offsets) {
        let mut shared = self.lock();
        for (tp, position) in positions.iter() {
            shared.stored.insert(tp.clone(), position);
        }
    }

    /// Forgets stored positions that these committed positions cover.
    pub(crate) fn committed(&self, positions: &Offsets) {
        let mut shared = self.lock();
        for (tp, position) in positions.iter() {
            if shared
                .stored
                .get(tp)
                .is_some_and(|&stored| stored <= position)
            {
                shared.stored.remove(tp);
            }
        }
    }

    pub(crate) fn push_event(&self, event: SourceEvent) {
        self.lock().events.push(event);
        self.has_events.store(true, Ordering::Release);
    }

    pub(crate) fn has_events(&self) -> bool {
        self.has_events.load(Ordering::Acquire)
    }

    /// Takes the queued assignment changes, oldest first.
    pub(crate) fn take_events(&self) -> Vec<SourceEvent> {
        if !self.has_events() {
            return Vec::new();
        }
        let mut shared = self.lock();
        self.has_events.store(false, Ordering::Release);
        std::mem::take(&mut shared.events)
    }

    /// Notes partitions assigned outside a rebalance (a static assignment).
    pub(crate) fn assigned(&self, partitions: &[TopicPartition]) {
        self.lock().assigned.extend(partitions.iter().cloned());
    }

    /// Of `partitions`, those assigned now; they are marked paused (`true`) or not.
    pub(crate) fn mark_paused(
        &self,
        partitions: &[TopicPartition],
        paused: bool,
    ) -> Vec<TopicPartition> {
        let mut shared = self.lock();
        let owned: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| shared.assigned.contains(*tp))
            .cloned()
            .collect();
        for tp in &owned {
            if paused {
                shared.paused.insert(tp.clone());
            } else {
                shared.paused.remove(tp);
            }
        }
        owned
    }

    /// Forgets the revoked (or lost) partitions' assignment and pauses, resuming in
    /// librdkafka those that were paused: a partition assigned again must flow.
    fn forget(&self, base: &BaseConsumer<Self>, revoked: &[TopicPartition]) {
        let unpause: Vec<TopicPartition> = {
            let mut shared = self.lock();
            for tp in revoked {
                shared.assigned.remove(tp);
                shared.high_watermarks.remove(tp);
            }
            revoked
                .iter()
                .filter(|tp| shared.paused.remove(*tp))
                .cloned()
                .collect()
        };
        if unpause.is_empty() {
            return;
        }
        match base.resume(&partition_list(&unpause)) {
            Ok(()) => debug!(partitions = ?unpause, "revoked partitions' pauses forgotten"),
            Err(e) => {
                warn!(error = %e, partitions = ?unpause, "cannot resume revoked partitions; if assigned again they stay paused")
            }
        }
    }

    /// Takes the high watermarks received since the last call (one per partition).
    pub(crate) fn take_high_watermarks(&self) -> Vec<(TopicPartition, i64)> {
        if !self.has_high_watermarks.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut shared = self.lock();
        self.has_high_watermarks.store(false, Ordering::Release);
        shared.high_watermarks.drain().collect()
    }

    pub(crate) fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Called just before the last reference to the consumer is dropped.
    pub(crate) fn set_terminating(&self) {
        self.terminating.store(true, Ordering::Release);
    }

    /// Waits, inside the revoke callback of the close, until librdkafka has closed the
    /// consumer: the group left (the LeaveGroup answered) and the group handler gone.
    ///
    /// Why here: rust-rdkafka's (0.39) `BaseConsumer::drop` starts the close, then runs
    /// `while !closed() { poll(100 ms) }`. The close ends with a TERMINATE op on the
    /// consumer queue that librdkafka serves as a mere wake-up (`rd_kafka_poll_cb` in
    /// librdkafka's src/rdkafka.c: `RD_KAFKA_OP_TERMINATE` yields), so
    /// `rd_kafka_queue_poll` returns nothing, which rust-rdkafka's `poll_queue` takes for
    /// "no event yet" and waits out the rest of the 100 ms: every close took 100 ms for
    /// about 1 ms of work. Returning
    /// from this callback only once `closed()` holds lets the drop's loop find the
    /// consumer closed and skip that poll. The callback is the only place that can
    /// tell: `StreamConsumer` exposes neither `close_queue` nor `closed`. Nothing the
    /// close still does needs this thread to serve the queue (librdkafka's own thread
    /// handles the unassign, the partitions' stop and the LeaveGroup response), and the
    /// wait is bounded anyway.
    fn wait_until_closed(&self, base: &BaseConsumer<Self>) {
        let start = Instant::now();
        // The close is a round trip or two: check often at first, then back off.
        let mut pause = Duration::from_micros(50);
        while !base.closed() {
            if start.elapsed() >= CLOSE_WAIT_LIMIT {
                debug!(waited = ?start.elapsed(), "librdkafka is still closing the consumer; its drop waits for the rest");
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(CLOSE_CHECK_MAX_PAUSE);
        }
        debug!(waited = ?start.elapsed(), "librdkafka closed the consumer: the group is left");
    }

    /// Commits the stored positions of the revoked partitions, before librdkafka gives
    /// them up. Synchronous on purpose: the next owner must start after them.
    fn commit_revoked(&self, base: &BaseConsumer<Self>, revoked: &[TopicPartition]) {
        let offsets: Offsets = {
            let mut shared = self.lock();
            revoked
                .iter()
                .filter_map(|tp| shared.stored.remove(tp).map(|p| (tp.clone(), p)))
                .collect()
        };
        if offsets.is_empty() || self.closing.load(Ordering::Acquire) {
            return;
        }
        let tpl = match to_tpl(&offsets) {
            Ok(tpl) => tpl,
            Err(e) => {
                error!(error = %e, "cannot commit revoked partitions: their messages will be redelivered");
                return;
            }
        };
        match base.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                info!(positions = ?offsets, "committed handled positions of revoked partitions")
            }
            Err(e) => warn!(
                error = %e, positions = ?offsets,
                "commit on revoke failed: messages handled since the last commit will be redelivered"
            ),
        }
    }
}

/// A librdkafka log line, as a `tracing` event of the matching level.
pub(crate) fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => error!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Warning => warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            info!(target: "librdkafka", fac, "{message}");
        }
        RDKafkaLogLevel::Debug => debug!(target: "librdkafka", fac, "{message}"),
    }
}

impl GroupContext {
    /// The broker's TLS refusal, once: a fatal error for the next poll.
    pub(crate) fn take_tls_refusal(&self) -> Option<String> {
        if !self.has_tls_refusal.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.tls_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Whether a transport error is the broker refusing this client's TLS certificate
/// (or the lack of one) with an alert. Under TLS 1.3 the broker checks the client's
/// certificate after the client finished its handshake, so librdkafka reports the
/// alert as a broken connection (`__TRANSPORT`) and reconnects forever; Java's
/// consumer throws `SslAuthenticationException`. The same certificate is refused
/// again on every attempt: fatal.
fn tls_refusal(error: &KafkaError, reason: &str) -> bool {
    const REFUSALS: [&str; 6] = [
        "alert certificate required",
        "alert bad certificate",
        "alert unknown ca",
        "alert certificate unknown",
        "alert access denied",
        "alert certificate revoked",
    ];
    error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure)
        && REFUSALS.iter().any(|alert| reason.contains(alert))
}

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        crate::security::oauth_token(self.oauth.as_ref())
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    /// librdkafka's statistics (every `statistics.interval.ms`, delivered inside the
    /// consumer's poll): each assigned partition's high watermark, as of its last fetch
    /// response. No request of its own, unlike `fetch_watermarks`.
    fn stats(&self, statistics: Statistics) {
        let mut shared = self.lock();
        for (name, topic) in &statistics.topics {
            for (&partition, p) in &topic.partitions {
                // Partition -1 is librdkafka's internal "unassigned" partition; -1001
                // (invalid) means no fetch response yet.
                let reachable = if self.read_committed && p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                if partition < 0 || reachable < 0 {
                    continue;
                }
                let tp = TopicPartition::new(name.as_str(), partition);
                if shared.assigned.contains(&tp) {
                    shared.high_watermarks.insert(tp, reachable);
                }
            }
        }
        if !shared.high_watermarks.is_empty() {
            self.has_high_watermarks.store(true, Ordering::Release);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Also returned by `recv()`, where the manager counts and logs it; keep this quiet.
        debug!(target: "librdkafka", %error, reason, "client error");
        if tls_refusal(&error, reason) {
            *self
                .tls_refusal
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_owned());
            self.has_tls_refusal.store(true, Ordering::Release);
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = partitions(tpl);
                // Must be read before librdkafka unassigns: that resets the flag.
                if base.assignment_lost() {
                    let mut shared = self.lock();
                    for tp in &revoked {
                        shared.stored.remove(tp);
                    }
                    drop(shared);
                    warn!(partitions = ?revoked, "assignment lost (session expired or fenced): nothing committed");
                    self.forget(base, &revoked);
                    self.push_event(SourceEvent::Lost(revoked));
                } else {
                    self.commit_revoked(base, &revoked);
                    self.forget(base, &revoked);
                    self.push_event(SourceEvent::Revoked(revoked));
                }
            }
            Rebalance::Assign(tpl) => {
                // Before librdkafka starts fetching them: none of their records may
                // reach the consumer queue after one reached the fetch queue.
                if let Some(queue) = self.fetch_queue.get().and_then(Weak::upgrade) {
                    queue.forward(&partitions(tpl));
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                self.assigned(&assigned);
                self.push_event(SourceEvent::Assigned(assigned));
            }
            // Only the close's revoke of everything: after a partial (cooperative) one,
            // the close still has to hand this thread the revoke of the rest.
            Rebalance::Revoke(_)
                if self.terminating.load(Ordering::Acquire) && self.lock().assigned.is_empty() =>
            {
                self.wait_until_closed(base);
            }
            Rebalance::Revoke(_) | Rebalance::Error(_) => {}
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            debug!(error = %e, partitions = offsets.count(), "commit callback reported an error");
        }
    }
}
