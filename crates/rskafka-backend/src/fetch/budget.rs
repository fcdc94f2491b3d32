//! One prefetch budget for the whole consumer, as librdkafka's
//! `queued.max.messages.kbytes`: fetched records count against it from the response
//! until the consumer thread takes them, and no broker sends a Fetch while it is spent.
//!
//! The bound: `queued_max_bytes`, plus at most one response in flight per broker, each
//! asking for no more than the budget left (and never more than `fetch.max.bytes`), so
//! memory does not grow with the number of partitions. The request sizes are wire
//! bytes: a compressed response decodes to more (as in librdkafka, whose bound is also
//! in wire bytes), and it counts against the budget at its decoded size once read.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The shared budget.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: i64,
    used: AtomicI64,
    freed: Notify,
}

impl Budget {
    pub(crate) fn new(limit: i64) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            used: AtomicI64::new(0),
            freed: Notify::new(),
        })
    }

    /// Bytes that may still be fetched; zero or less when spent.
    pub(crate) fn left(&self) -> i64 {
        self.limit - self.used.load(Ordering::Acquire)
    }

    /// Counts `bytes` as fetched until the permit is dropped. Never waits: the response
    /// is already here; a spent budget stops the next request instead.
    pub(crate) fn take(self: &Arc<Self>, bytes: usize) -> BudgetPermit {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.used.fetch_add(bytes, Ordering::AcqRel);
        BudgetPermit {
            budget: Arc::clone(self),
            bytes,
        }
    }

    /// Waits until some of the budget is free again.
    pub(crate) async fn wait_for_room(&self) {
        loop {
            // Registered before the check, so a permit dropped in between wakes us.
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if self.left() > 0 {
                return;
            }
            freed.await;
        }
    }
}

/// A share of the budget, returned when dropped.
#[derive(Debug)]
pub(crate) struct BudgetPermit {
    budget: Arc<Budget>,
    bytes: i64,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spent_budget_waits_until_a_permit_is_dropped() {
        let budget = Budget::new(100);
        let a = budget.take(60);
        let b = budget.take(60);
        assert_eq!(budget.left(), -20, "a response may overdraw it once");
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "spent: the next fetch waits");
        drop(a);
        waiter.await.unwrap();
        assert_eq!(budget.left(), 40);
        drop(b);
        assert_eq!(budget.left(), 100);
    }
}
