//! The consumer thread's side of the pool: routes messages to workers, holds back the
//! partitions whose worker is full (the runner pauses them at the source), and settles
//! what the workers report into commit positions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::in_flight::InFlight;
use super::queue::WorkQueue;
use super::ProcessingOrder;
use crate::{CallbackFailure, Message, TopicPartition};

/// What a worker tells the consumer thread.
pub(crate) enum Report {
    /// These messages were handled, in order; one callback duration sampled.
    Handled {
        messages: Vec<Message>,
        sample: Option<Duration>,
    },
    /// An attempt failed and will be retried after a backoff.
    Retrying { failure: Box<CallbackFailure> },
    /// The retry policy gave up on these messages (one, or a whole batch); the failure
    /// policy decides what becomes of them.
    GaveUp {
        messages: Vec<Message>,
        failure: Box<CallbackFailure>,
        attempts: u32,
    },
}

/// What settling a message did to its partition's commit position.
pub(crate) enum Settled {
    /// The partition is not ours any more (revoked or lost meanwhile): ignore it.
    NotInFlight,
    /// An earlier message of the partition is still unsettled.
    Waiting,
    /// The position moved here.
    Position(i64),
}

pub(crate) struct Dispatcher {
    queues: Vec<Arc<WorkQueue>>,
    threads: Vec<JoinHandle<()>>,
    reports: UnboundedReceiver<Report>,
    order: ProcessingOrder,
    /// Partition -> worker, for partition order (and keyless messages under key order).
    routes: HashMap<TopicPartition, usize>,
    /// Partitions routed to each worker, to give a new partition to the least loaded.
    routed: Vec<usize>,
    /// Messages that did not fit, per partition, in offset order. While a partition has
    /// some, its later messages queue here too, so its order is kept.
    held: HashMap<TopicPartition, VecDeque<Message>>,
    /// Partitions this dispatcher asked the source to pause.
    paused: HashSet<TopicPartition>,
    in_flight: InFlight,
    /// The most messages of one partition in flight (queued or running) at once: the
    /// bound that also holds when a settled prefix waits for one slow dead letter.
    in_flight_limit: usize,
}

impl Dispatcher {
    pub(crate) fn new(
        queues: Vec<Arc<WorkQueue>>,
        threads: Vec<JoinHandle<()>>,
        reports: UnboundedReceiver<Report>,
        order: ProcessingOrder,
    ) -> Self {
        let capacity: usize = queues.iter().map(|q| q.capacity()).sum();
        Self {
            routed: vec![0; queues.len()],
            queues,
            threads,
            reports,
            order,
            routes: HashMap::new(),
            held: HashMap::new(),
            paused: HashSet::new(),
            in_flight: InFlight::default(),
            // All workers' queues plus what they are running (at most a queue each).
            in_flight_limit: capacity.saturating_mul(2),
        }
    }

    /// Hands a polled message to its worker, or holds it when that worker is full.
    pub(crate) fn offer(&mut self, message: Message) {
        let tp = message.topic_partition();
        if let Some(held) = self.held.get_mut(&tp) {
            held.push_back(message);
            return;
        }
        if let Err(message) = self.try_dispatch(&tp, message) {
            self.held.insert(tp, VecDeque::from([message]));
        }
    }

    #[allow(clippy::result_large_err)] // handed back like std's `TrySendError`: no box per message
    fn try_dispatch(&mut self, tp: &TopicPartition, message: Message) -> Result<(), Message> {
        if self.in_flight.len_of(tp) >= self.in_flight_limit {
            return Err(message);
        }
        let worker = self.route(tp, &message);
        let offset = message.offset();
        self.queues[worker].try_push(message)?;
        // Registered after the push: the worker's report is read on this thread, later.
        self.in_flight.dispatched(tp, offset);
        Ok(())
    }

    fn route(&mut self, tp: &TopicPartition, message: &Message) -> usize {
        let workers = self.queues.len();
        if workers == 1 {
            return 0;
        }
        if self.order == ProcessingOrder::Key {
            if let Some(key) = message.key() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                return (h.finish() % workers as u64) as usize;
            }
        }
        if let Some(&w) = self.routes.get(tp) {
            return w;
        }
        let w = (0..workers).min_by_key(|&w| self.routed[w]).unwrap_or(0);
        self.routed[w] += 1;
        self.routes.insert(tp.clone(), w);
        w
    }

    /// Moves held messages into queues that have room again, in order.
    pub(crate) fn refill(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let mut held = std::mem::take(&mut self.held);
        held.retain(|tp, messages| {
            while let Some(message) = messages.pop_front() {
                if let Err(message) = self.try_dispatch(tp, message) {
                    messages.push_front(message);
                    return true;
                }
            }
            false
        });
        self.held = held;
    }

    /// Held partitions not yet paused at the source.
    pub(crate) fn to_pause(&self) -> Vec<TopicPartition> {
        self.held
            .keys()
            .filter(|tp| !self.paused.contains(*tp))
            .cloned()
            .collect()
    }

    /// Paused partitions with nothing held any more.
    pub(crate) fn to_resume(&self) -> Vec<TopicPartition> {
        self.paused
            .iter()
            .filter(|tp| !self.held.contains_key(*tp))
            .cloned()
            .collect()
    }

    pub(crate) fn mark_paused(&mut self, tps: &[TopicPartition]) {
        self.paused.extend(tps.iter().cloned());
    }

    pub(crate) fn mark_resumed(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.paused.remove(tp);
        }
    }

    /// A message is settled (handled, skipped or dead-lettered).
    pub(crate) fn settle(&mut self, message: &Message) -> Settled {
        let tp = message.topic_partition();
        if self.in_flight.len_of(&tp) == 0 {
            return Settled::NotInFlight;
        }
        match self.in_flight.settle(&tp, message.offset()) {
            Some(position) => Settled::Position(position),
            None => Settled::Waiting,
        }
    }

    /// Messages dispatched and not yet settled, and messages held back.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let held = self.held.values().map(VecDeque::len).sum();
        (self.in_flight.len(), held)
    }

    /// Forgets partitions this consumer no longer owns (their pause too, as the source
    /// does): queued and held messages are dropped for the new owner to read.
    pub(crate) fn forget(&mut self, gone: &[TopicPartition]) {
        for tp in gone {
            if let Some(w) = self.routes.remove(tp) {
                self.routed[w] -= 1;
            }
            self.held.remove(tp);
            self.paused.remove(tp);
        }
        self.in_flight.forget(gone);
        for q in &self.queues {
            q.purge(gone);
        }
    }

    /// Waits for the next report; never completes once every worker is gone.
    pub(crate) async fn next_report(&mut self) -> Report {
        match self.reports.recv().await {
            Some(report) => report,
            None => std::future::pending().await,
        }
    }

    pub(crate) fn try_report(&mut self) -> Option<Report> {
        self.reports.try_recv().ok()
    }

    /// Lets every worker finish its current callback, then joins them.
    pub(crate) fn halt_and_join(&mut self) {
        for q in &self.queues {
            q.halt();
        }
        for thread in self.threads.drain(..) {
            // Callback panics are caught inside the worker; a join error has no news.
            let _ = thread.join();
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // Normally already halted and joined; after a panic of the consumer thread the
        // workers must not go on alone.
        for q in &self.queues {
            q.halt();
        }
    }
}
