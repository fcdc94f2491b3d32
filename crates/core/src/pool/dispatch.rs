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
use super::ownership::Ownership;
use super::queue::{Work, WorkQueue};
use super::{ProcessingOrder, WorkerPool};
use crate::{CallbackFailure, Message, TopicPartition};

/// What a worker tells the consumer thread about a run of one partition, in the
/// generation of that partition the run was dispatched in.
pub(crate) struct Report {
    pub(crate) tp: TopicPartition,
    pub(crate) generation: u64,
    pub(crate) event: WorkEvent,
}

pub(crate) enum WorkEvent {
    /// These messages were handled, in order; one callback duration sampled.
    Handled {
        messages: Vec<Message>,
        sample: Option<Duration>,
    },
    /// An attempt failed; it is retried after a backoff.
    AttemptFailed { failure: Box<CallbackFailure> },
    /// The retry after a backoff starts now.
    Retrying,
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
    /// An earlier message of the partition is still unsettled.
    Waiting,
    /// The position moved here.
    Position(i64),
}

/// The worker a partition is routed to. Kept after a revoke, so a partition assigned
/// again queues behind whatever its old run still does on the same worker.
struct Route {
    worker: usize,
    owned: bool,
}

pub(crate) struct Dispatcher {
    queues: Vec<Arc<WorkQueue>>,
    threads: Vec<JoinHandle<()>>,
    reports: UnboundedReceiver<Report>,
    ownership: Arc<Ownership>,
    order: ProcessingOrder,
    /// Partition -> worker, for partition order (and keyless messages under key order).
    routes: HashMap<TopicPartition, Route>,
    /// Owned partitions routed to each worker, to give a new one to the least loaded.
    routed: Vec<usize>,
    /// The current generation of partitions revoked at least once (the rest are at 0);
    /// this thread's copy of what `ownership` holds, read per message without a lock.
    generations: HashMap<TopicPartition, u64>,
    /// Messages that did not fit, per partition, in offset order. While a partition has
    /// some, its later messages queue here too, so its order is kept.
    held: HashMap<TopicPartition, VecDeque<Message>>,
    /// Partitions this dispatcher asked the source to pause.
    paused: HashSet<TopicPartition>,
    in_flight: InFlight,
    /// The most messages of one partition in flight (queued, running, or settled behind
    /// an unsettled one such as a slow dead letter) before it is held back.
    in_flight_limit: usize,
    /// A paused partition resumes once its held messages are queued and its in-flight
    /// count is down to this, so it does not flip between paused and resumed on every
    /// report while its worker stays full.
    resume_below: usize,
}

impl Dispatcher {
    pub(crate) fn new(
        queues: Vec<Arc<WorkQueue>>,
        threads: Vec<JoinHandle<()>>,
        reports: UnboundedReceiver<Report>,
        ownership: Arc<Ownership>,
        pool: WorkerPool,
    ) -> Self {
        let total: usize = queues.iter().map(|q| q.capacity()).sum();
        let order = pool.processing_order();
        // One partition fills one worker under partition order, all of them under key order.
        let reach = match order {
            ProcessingOrder::Key => total,
            _ => pool.capacity(),
        };
        Self {
            routed: vec![0; queues.len()],
            queues,
            threads,
            reports,
            ownership,
            order,
            routes: HashMap::new(),
            generations: HashMap::new(),
            held: HashMap::new(),
            paused: HashSet::new(),
            in_flight: InFlight::default(),
            in_flight_limit: total.saturating_mul(2),
            resume_below: reach / 2,
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
        let work = Work {
            message,
            generation: self.generation(tp),
        };
        self.queues[worker].try_push(work).map_err(|w| w.message)?;
        // Registered after the push: the worker's report is read on this thread, later.
        self.in_flight.dispatched(tp, offset);
        Ok(())
    }

    fn generation(&self, tp: &TopicPartition) -> u64 {
        self.generations.get(tp).copied().unwrap_or(0)
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
        if let Some(route) = self.routes.get_mut(tp) {
            if !route.owned {
                route.owned = true;
                self.routed[route.worker] += 1;
            }
            return route.worker;
        }
        let w = (0..workers).min_by_key(|&w| self.routed[w]).unwrap_or(0);
        self.routed[w] += 1;
        self.routes.insert(
            tp.clone(),
            Route {
                worker: w,
                owned: true,
            },
        );
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

    /// Paused partitions with nothing held, and room enough in flight to go on.
    pub(crate) fn to_resume(&self) -> Vec<TopicPartition> {
        self.paused
            .iter()
            .filter(|tp| {
                !self.held.contains_key(*tp) && self.in_flight.len_of(tp) <= self.resume_below
            })
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

    /// Whether a report is about work of the partition as this consumer owns it now:
    /// reports of a revoked generation (or a partition given up) are ignored.
    pub(crate) fn is_current(&self, report: &Report) -> bool {
        self.generation(&report.tp) == report.generation && self.in_flight.len_of(&report.tp) > 0
    }

    /// A message of a current report is settled (handled, skipped or dead-lettered).
    pub(crate) fn settle(&mut self, tp: &TopicPartition, offset: i64) -> Settled {
        match self.in_flight.settle(tp, offset) {
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
    /// does): queued and held messages are dropped for the new owner to read, running
    /// ones end after their current callback, and their reports are ignored.
    pub(crate) fn forget(&mut self, gone: &[TopicPartition]) {
        self.ownership.revoke(gone);
        for tp in gone {
            *self.generations.entry(tp.clone()).or_insert(0) += 1;
            if let Some(route) = self.routes.get_mut(tp) {
                if route.owned {
                    route.owned = false;
                    self.routed[route.worker] -= 1;
                }
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

    /// Tells every worker to finish its current callback and take no more work.
    pub(crate) fn halt(&self) {
        for q in &self.queues {
            q.halt();
        }
    }

    /// The next report until every worker has ended (`None` then), once halted. Awaited,
    /// not joined: the consumer thread's runtime keeps serving the source meanwhile
    /// (heartbeats), however long the last callbacks take.
    pub(crate) async fn last_reports(&mut self) -> Option<Report> {
        self.reports.recv().await
    }

    /// Joins the workers, which have all ended once [`Self::last_reports`] returned `None`.
    pub(crate) fn join(&mut self) {
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
        self.halt();
    }
}
