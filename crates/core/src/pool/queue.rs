//! One worker's bounded queue. The consumer thread never blocks on it: a message that
//! does not fit is handed back, and the dispatcher holds its partition (paused) instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::manager::lock;
use crate::{Message, TopicPartition};

pub(crate) struct WorkQueue {
    items: Mutex<VecDeque<Message>>,
    /// Signalled when a message arrives in an empty queue, and on halt.
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

    /// Queues `message`, or hands it back when the queue is full.
    #[allow(clippy::result_large_err)] // handed back like std's `TrySendError`: no box per message
    pub(crate) fn try_push(&self, message: Message) -> Result<(), Message> {
        let mut items = lock(&self.items);
        if items.len() >= self.capacity {
            return Err(message);
        }
        let was_empty = items.is_empty();
        items.push_back(message);
        drop(items);
        // A worker only waits on an empty queue: waking it for every message would cost
        // a futex call per message.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Waits for work and moves a run into `run`: the front message and those right
    /// behind it of the same partition, at most `max`. `false` once halted.
    pub(crate) fn take_run(&self, max: usize, run: &mut Vec<Message>) -> bool {
        run.clear();
        let mut items = lock(&self.items);
        loop {
            if self.is_halted() {
                return false;
            }
            if let Some(first) = items.pop_front() {
                let (topic, partition) = (first.topic_arc().clone(), first.partition());
                run.push(first);
                while run.len() < max {
                    match items.front() {
                        Some(m) if m.partition() == partition && *m.topic_arc() == topic => {
                            run.extend(items.pop_front());
                        }
                        _ => break,
                    }
                }
                return true;
            }
            items = self
                .ready
                .wait(items)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Sleeps up to `delay` (a retry's backoff); `false` if halted meanwhile.
    pub(crate) fn sleep_unless_halted(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        let mut items = lock(&self.items);
        loop {
            if self.is_halted() {
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

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
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

    /// Drops the queued messages of partitions this consumer no longer owns: the new
    /// owner reads them from the committed offset.
    pub(crate) fn purge(&self, gone: &[TopicPartition]) {
        lock(&self.items).retain(|m| {
            !gone
                .iter()
                .any(|tp| tp.partition() == m.partition() && tp.topic() == m.topic())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(p: i32, o: i64) -> Message {
        Message::builder("t", p, o).build()
    }

    #[test]
    fn a_full_queue_hands_the_message_back() {
        let q = WorkQueue::new(2);
        assert!(q.try_push(msg(0, 0)).is_ok());
        assert!(q.try_push(msg(0, 1)).is_ok());
        let back = q.try_push(msg(0, 2)).expect_err("full");
        assert_eq!(back.offset(), 2);
    }

    #[test]
    fn a_run_is_one_partition_in_order_and_at_most_max() {
        let q = WorkQueue::new(10);
        for m in [msg(0, 0), msg(0, 1), msg(0, 2), msg(1, 0), msg(0, 3)] {
            q.try_push(m).expect("room");
        }
        let mut run = Vec::new();
        assert!(q.take_run(2, &mut run));
        assert_eq!(run.iter().map(Message::offset).collect::<Vec<_>>(), [0, 1]);
        assert!(q.take_run(10, &mut run));
        assert_eq!(run.len(), 1, "stops at the next partition");
        assert!(q.take_run(10, &mut run));
        assert_eq!((run[0].partition(), run[0].offset()), (1, 0));
        q.purge(&[TopicPartition::new("t", 0)]);
        q.halt();
        assert!(
            !q.take_run(10, &mut run),
            "halted, and the purged message is gone"
        );
    }

    #[test]
    fn halt_wakes_a_waiting_worker_and_a_sleeping_retry() {
        let q = std::sync::Arc::new(WorkQueue::new(1));
        let waiter = std::sync::Arc::clone(&q);
        let t = std::thread::spawn(move || {
            let mut run = Vec::new();
            waiter.take_run(1, &mut run)
        });
        std::thread::sleep(Duration::from_millis(20));
        q.halt();
        assert!(!t.join().expect("joined"));
        assert!(!q.sleep_unless_halted(Duration::from_secs(3600)));
    }
}
