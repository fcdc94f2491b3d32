//! Which generation of each partition this consumer owns. A revoke or loss bumps it, so a
//! worker stops a run it took before (no further callbacks, retries or give-ups for a
//! partition that is another member's now), and reports from before are ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::shared::lock;
use crate::TopicPartition;

#[derive(Default)]
pub(crate) struct Ownership {
    /// Bumped on every revoke: workers read the map only when it moved.
    revocations: AtomicU64,
    generations: Mutex<HashMap<TopicPartition, u64>>,
}

impl Ownership {
    /// Gives up `gone`: their work from before is stale from now on.
    pub(crate) fn revoke(&self, gone: &[TopicPartition]) {
        let mut generations = lock(&self.generations);
        for tp in gone {
            *generations.entry(tp.clone()).or_insert(0) += 1;
        }
        drop(generations);
        self.revocations.fetch_add(1, Ordering::Release);
    }

    /// The current generation of `tp` (0 until it is first revoked).
    pub(crate) fn generation(&self, tp: &TopicPartition) -> u64 {
        lock(&self.generations).get(tp).copied().unwrap_or(0)
    }

    /// A cheap token that changes whenever any partition is revoked.
    pub(crate) fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Acquire)
    }
}

/// A worker's view of whether its current run is still this consumer's.
pub(crate) struct RunOwner<'a> {
    ownership: &'a Ownership,
    tp: TopicPartition,
    generation: u64,
    seen: std::cell::Cell<u64>,
    /// Once stale, always: the partition is another member's.
    stale: std::cell::Cell<bool>,
}

impl<'a> RunOwner<'a> {
    pub(crate) fn new(ownership: &'a Ownership, tp: TopicPartition, generation: u64) -> Self {
        let seen = std::cell::Cell::new(ownership.revocations());
        Self {
            ownership,
            tp,
            generation,
            seen,
            stale: std::cell::Cell::new(false),
        }
    }

    pub(crate) fn tp(&self) -> &TopicPartition {
        &self.tp
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the partition was revoked since the run was queued: one atomic load while
    /// nothing was revoked.
    pub(crate) fn is_stale(&self) -> bool {
        let now = self.ownership.revocations();
        if self.stale.get() || now == self.seen.get() {
            return self.stale.get();
        }
        self.seen.set(now);
        self.stale
            .set(self.ownership.generation(&self.tp) != self.generation);
        self.stale.get()
    }
}
