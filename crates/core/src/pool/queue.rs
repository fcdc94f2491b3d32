//! One worker's bounded queue. The consumer thread never blocks on it: a message that
//! does not fit is handed back, and the dispatcher holds its partition (paused) instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::shared::lock;
use crate::{Message, TopicPartition};

/// A queued message and the generation of its partition when it was dispatched.
#[derive(Debug)]
pub(crate) struct Work {
    pub(crate) message: Message,
    pub(crate) generation: u64,
}

pub(crate) struct WorkQueue {
    items: Mutex<VecDeque<Work>>,
    /// Signalled when work arrives in an empty queue, on a purge, and on halt.
    ready: Condvar,
    capacity: usize,
    /// Read between messages of a run, so it is an atomic rather than under the lock.
    halted: AtomicBool,
}

impl WorkQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            ready: Condvar::new(),
            capacity,
            halted: AtomicBool::new(false),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `work`, or hands it back when the queue is full.
    #[allow(clippy::result_large_err)] // handed back like std's `TrySendError`: no box per message
    pub(crate) fn try_push(&self, work: Work) -> Result<(), Work> {
        let mut items = lock(&self.items);
        if items.len() >= self.capacity {
            return Err(work);
        }
        let was_empty = items.is_empty();
        items.push_back(work);
        drop(items);
        // A worker only waits on an empty queue: waking it for every message would cost
        // a futex call per message.
        if was_empty {
            self.ready.notify_all();
        }
        Ok(())
    }

    /// Waits for work and moves a run into `run`: the front message and those right
    /// behind it of the same partition and generation, at most `max`. Returns the run's
    /// generation; `None` once halted.
    pub(crate) fn take_run(&self, max: usize, run: &mut Vec<Message>) -> Option<u64> {
        run.clear();
        let mut items = lock(&self.items);
        loop {
            if self.is_halted() {
                return None;
            }
            if let Some(first) = items.pop_front() {
                let generation = first.generation;
                let topic = first.message.topic_arc().clone();
                let partition = first.message.partition();
                run.push(first.message);
                while run.len() < max {
                    match items.front() {
                        Some(w)
                            if w.generation == generation
                                && w.message.partition() == partition
                                && *w.message.topic_arc() == topic =>
                        {
                            run.extend(items.pop_front().map(|w| w.message));
                        }
                        _ => break,
                    }
                }
                return Some(generation);
            }
            items = self
                .ready
                .wait(items)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Sleeps up to `delay` (a retry's backoff). `false` if halted meanwhile, or if
    /// `abandon` says so when woken (a purge wakes it).
    pub(crate) fn sleep_unless(&self, delay: Duration, abandon: &dyn Fn() -> bool) -> bool {
        let until = Instant::now() + delay;
        let mut items = lock(&self.items);
        loop {
            if self.is_halted() || abandon() {
                return false;
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return true;
            };
            items = self
                .ready
                .wait_timeout(items, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Tells the worker to finish its current callback and take no more work.
    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::Release);
        // Under the lock, so a worker between its check and its wait cannot miss it.
        let _items = lock(&self.items);
        self.ready.notify_all();
    }

    pub(crate) fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// Drops the queued messages of partitions this consumer no longer owns (the new
    /// owner reads them from the committed offset), and wakes a worker waiting out a
    /// retry's backoff, so it sees that its run is stale.
    pub(crate) fn purge(&self, gone: &[TopicPartition]) {
        let mut items = lock(&self.items);
        items.retain(|w| {
            !gone.iter().any(|tp| {
                tp.partition() == w.message.partition() && tp.topic() == w.message.topic()
            })
        });
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn work(p: i32, o: i64) -> Work {
        Work {
            message: Message::builder("t", p, o).build(),
            generation: 0,
        }
    }

    #[test]
    fn a_full_queue_hands_the_message_back() {
        let q = WorkQueue::new(2);
        assert!(q.try_push(work(0, 0)).is_ok());
        assert!(q.try_push(work(0, 1)).is_ok());
        let back = q.try_push(work(0, 2)).expect_err("full");
        assert_eq!(back.message.offset(), 2);
    }

    #[test]
    fn a_run_is_one_partition_and_generation_in_order_and_at_most_max() {
        let q = WorkQueue::new(10);
        let newer = Work {
            generation: 1,
            ..work(0, 4)
        };
        for w in [
            work(0, 0),
            work(0, 1),
            work(0, 2),
            work(1, 0),
            work(0, 3),
            newer,
        ] {
            q.try_push(w).expect("room");
        }
        let mut run = Vec::new();
        assert_eq!(q.take_run(2, &mut run), Some(0));
        assert_eq!(run.iter().map(Message::offset).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(q.take_run(10, &mut run), Some(0));
        assert_eq!(run.len(), 1, "stops at the next partition");
        assert_eq!(q.take_run(10, &mut run), Some(0));
        assert_eq!((run[0].partition(), run[0].offset()), (1, 0));
        assert_eq!(q.take_run(10, &mut run), Some(0));
        assert_eq!(run.len(), 1, "stops at the next generation");
        q.purge(&[TopicPartition::new("t", 0)]);
        q.halt();
        assert_eq!(
            q.take_run(10, &mut run),
            None,
            "halted; the purged work is gone"
        );
    }

    #[test]
    fn halt_wakes_a_waiting_worker_and_a_sleeping_retry() {
        let q = Arc::new(WorkQueue::new(1));
        let waiter = Arc::clone(&q);
        let t = std::thread::spawn(move || {
            let mut run = Vec::new();
            waiter.take_run(1, &mut run)
        });
        std::thread::sleep(Duration::from_millis(20));
        q.halt();
        assert_eq!(t.join().expect("joined"), None);
        assert!(!q.sleep_unless(Duration::from_secs(3600), &|| false));
    }

    #[test]
    fn a_purge_wakes_a_sleeping_retry_to_abandon_it() {
        let q = Arc::new(WorkQueue::new(1));
        let gone = Arc::new(AtomicBool::new(false));
        let (sleeper, flag) = (Arc::clone(&q), Arc::clone(&gone));
        let t = std::thread::spawn(move || {
            sleeper.sleep_unless(Duration::from_secs(3600), &|| flag.load(Ordering::SeqCst))
        });
        std::thread::sleep(Duration::from_millis(20));
        gone.store(true, Ordering::SeqCst);
        q.purge(&[TopicPartition::new("t", 0)]);
        assert!(!t.join().expect("joined"), "abandoned, not slept out");
    }
}
