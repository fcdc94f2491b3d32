//! What the fetch tasks share: every assigned partition's position, leader and pause
//! state, under one lock that is never held across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ktm_core::{SourceError, TopicPartition};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::budget::Budget;
use super::{FetchItem, FetchSettings};
use crate::wire::Leader;

/// Where a partition's fetching stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Position {
    /// Just assigned: starts from its committed offset (`None`: none, the reset policy
    /// applies) once the log's range is known.
    Start(Option<i64>),
    /// `offset` may be outside the log: `confirmed` when the broker said
    /// OFFSET_OUT_OF_RANGE (the reset policy applies), otherwise an empty fetch past
    /// the high watermark that stands if the log's end still reaches it.
    Check { offset: i64, confirmed: bool },
    /// Fetching from this offset.
    At(i64),
    /// A fatal error was reported; nothing more is fetched.
    Failed,
}

/// One assigned partition.
#[derive(Debug)]
pub(super) struct Part {
    /// Which assignment of the partition this is (the source drops items of older ones).
    pub(super) epoch: u64,
    pub(super) position: Position,
    pub(super) paused: bool,
    /// `None` until a Metadata answer names it, and again after a leader error.
    pub(super) leader: Option<Leader>,
    /// `max.partition.fetch.bytes`, doubled while a batch does not fit.
    pub(super) max_bytes: i32,
    /// The last high watermark sent to the source.
    pub(super) reported_high_watermark: i64,
}

/// A broker task.
#[derive(Debug)]
pub(super) struct BrokerSlot {
    pub(super) addr: String,
    pub(super) wake: Arc<Notify>,
    pub(super) task: JoinHandle<()>,
}

impl Drop for BrokerSlot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The partitions and the broker tasks.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) partitions: BTreeMap<TopicPartition, Part>,
    pub(super) brokers: BTreeMap<i32, BrokerSlot>,
}

impl State {
    /// Wakes the task of the broker leading `tp`, if it has one.
    pub(super) fn wake_leader_of(&self, tp: &TopicPartition) {
        let leader = self.partitions.get(tp).and_then(|p| p.leader);
        if let Some(slot) = leader.and_then(|l| self.brokers.get(&l.broker)) {
            slot.wake.notify_one();
        }
    }
}

/// Shared by the engine handle, the leader lookup and the broker tasks.
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) settings: Arc<FetchSettings>,
    pub(super) tx: mpsc::UnboundedSender<FetchItem>,
    pub(super) budget: Arc<Budget>,
    /// Tells the leader lookup that some partition has no known leader.
    pub(super) leaders_wanted: Notify,
}

impl Shared {
    pub(super) fn new(settings: Arc<FetchSettings>, tx: mpsc::UnboundedSender<FetchItem>) -> Self {
        Self {
            budget: Budget::new(settings.queued_max_bytes),
            state: Mutex::new(State::default()),
            settings,
            tx,
            leaders_wanted: Notify::new(),
        }
    }

    /// The state. A panic elsewhere while holding the lock cannot leave it half
    /// updated in a way that matters more than stopping would, so poisoning is ignored.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports `error` for the partition of `epoch`; a fatal one stops its fetching.
    /// Must be called with the state locked (`state`), so the position and the report
    /// agree.
    pub(super) fn report(&self, state: &mut State, tp: &TopicPartition, error: SourceError) {
        let Some(part) = state.partitions.get_mut(tp) else {
            return;
        };
        if !error.is_transient() {
            part.position = Position::Failed;
        }
        let _ = self.tx.send(FetchItem::Failed {
            epoch: part.epoch,
            error,
        });
    }

    /// Reports a fatal `error` once, for the first of `partitions`, and stops fetching
    /// all of them (the source ends with the first fatal error it sees).
    pub(super) fn fail_all<'a>(
        &self,
        state: &mut State,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
        error: SourceError,
    ) {
        let mut error = Some(error);
        for tp in partitions {
            match error.take() {
                Some(e) => self.report(state, tp, e),
                None => {
                    if let Some(part) = state.partitions.get_mut(tp) {
                        part.position = Position::Failed;
                    }
                }
            }
        }
    }

    /// Forgets the leader of `partitions` (a leader error, a lost connection) and asks
    /// the leader lookup to find them again.
    pub(super) fn lose_leaders<'a>(
        &self,
        state: &mut State,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) {
        for tp in partitions {
            if let Some(part) = state.partitions.get_mut(tp) {
                part.leader = None;
            }
        }
        self.leaders_wanted.notify_one();
    }
}
