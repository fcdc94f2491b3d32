//! The consumer context: rebalance callbacks (commit on revoke, nothing on loss), the
//! stored positions they commit, the events they queue for `poll`, and logging.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ktm_core::{Offsets, SourceEvent, TopicPartition};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, error, info, warn};

use crate::convert::{partitions, to_tpl};

/// State shared by the source and the rebalance callbacks, which run inside
/// `recv()` on the consumer thread (or on the closing thread).
#[derive(Default)]
struct Shared {
    /// Handled positions not yet known to be committed.
    stored: HashMap<TopicPartition, i64>,
    /// Assignment changes not yet handed to the manager.
    events: Vec<SourceEvent>,
}

/// The [`ConsumerContext`] of an [`RdkafkaSource`](crate::RdkafkaSource).
#[derive(Default)]
pub(crate) struct GroupContext {
    shared: Mutex<Shared>,
    /// Set once the manager closes the source: its final commit is done, so the revoke
    /// that closing triggers commits nothing more.
    closing: AtomicBool,
    /// Mirrors `!shared.events.is_empty()`, read on every poll without the lock.
    has_events: AtomicBool,
}

impl GroupContext {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Every critical section is a few map operations: a panic cannot leave it torn.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
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

    pub(crate) fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
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

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
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

    fn error(&self, error: KafkaError, reason: &str) {
        // Also returned by `recv()`, where the manager counts and logs it; keep this quiet.
        debug!(target: "librdkafka", %error, reason, "client error");
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
                    self.push_event(SourceEvent::Lost(revoked));
                } else {
                    self.commit_revoked(base, &revoked);
                    self.push_event(SourceEvent::Revoked(revoked));
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.push_event(SourceEvent::Assigned(partitions(tpl)));
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
