//! The records' own librdkafka queue, read in batches.
//!
//! rust-rdkafka reads one record per call, each through librdkafka's event API: an event
//! set up, a heap-allocated handle, and several clock reads per record. That was about
//! three fifths of the consumer thread's time (`perf` on `ktm-bench`), more than
//! everything the manager does with the record. librdkafka's
//! `rd_kafka_consume_batch_queue` returns up to a whole batch for one lock-and-clock
//! round, but it serves any other op it meets itself, and a rebalance op served there
//! (without a rebalance callback, as rust-rdkafka sets librdkafka up) unassigns
//! everything. So the records are moved off the consumer queue: each assigned
//! partition's fetch queue is forwarded, before librdkafka starts fetching it, to a queue
//! of our own that only ever holds records (and per-partition consumer errors). The
//! consumer queue keeps the rebalances, commits, statistics and errors, which
//! rust-rdkafka's poll serves as before.
//!
//! What librdkafka guarantees here: an application's forward survives its own fetch
//! starts (`RD_KAFKA_Q_F_FWD_APP`), so it is set again at each assignment; records of a
//! partition that was revoked or paused since they were fetched carry an outdated
//! version and are dropped by the batch read itself; the batch read moves each
//! partition's application position past what it returned, as a per-record poll does.
//! One difference: it also moves the position past a per-partition error it returns
//! (librdkafka#4844), which is why end-of-partition markers are forced off; the errors
//! left (offset reset refused, authorization, records librdkafka cannot read) stop the
//! partition anyway, and a fatal one stops the read: no record after it is handed over.
#![allow(unsafe_code)]

use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::task::Waker;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use ktm_core::{Header, Message as CoreMessage, PollBatch, SourceError, Timestamp, TopicPartition};
use rdkafka::bindings as rd;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::debug;

use crate::convert::MessageConverter;
use crate::error::{partition_error, source_error, PartitionError};
use crate::worker::RdConsumer;

/// The queue every assigned partition's records are forwarded to.
pub(crate) struct FetchQueue {
    /// `None` once destroyed; the lock also orders forwards against the destroy.
    queue: Mutex<Option<QueuePtr>>,
    /// Woken by librdkafka (from its own threads) when the queue gets records; boxed, so
    /// the address librdkafka holds stays put when the queue moves.
    waker: Box<AtomicWaker>,
    /// The client the queue belongs to, alive for as long as the queue is.
    consumer: Arc<RdConsumer>,
}

/// The queue handle. librdkafka's queues are thread-safe; the handle is only used
/// under [`FetchQueue::queue`]'s lock or by the one reader.
struct QueuePtr(NonNull<rd::rd_kafka_queue_t>);

// SAFETY: librdkafka documents its queue API as thread-safe; the handle is destroyed
// once, under the lock, after which no one holds it.
unsafe impl Send for QueuePtr {}

/// Called by librdkafka, with the queue's lock held, each time the queue gets ops.
unsafe extern "C" fn queue_nonempty(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the boxed `AtomicWaker` that `FetchQueue` holds until after
    // this callback is disabled (which takes the same queue lock).
    let waker = unsafe { &*(opaque as *const AtomicWaker) };
    waker.wake();
}

/// A record read from the fetch queue, or the error librdkafka put in its place.
enum Fetched {
    Record(CoreMessage),
    PartitionEof,
    Error(SourceError),
}

impl FetchQueue {
    /// A new queue on `consumer`'s client.
    pub(crate) fn new(consumer: Arc<RdConsumer>) -> Option<Self> {
        use rdkafka::consumer::Consumer as _;
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is live: `consumer` is kept with the queue.
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_new(rk) })?;
        let waker = Box::new(AtomicWaker::new());
        // SAFETY: the queue is live; the opaque outlives the callback (see `destroy`).
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(queue_nonempty),
                std::ptr::from_ref::<AtomicWaker>(&waker) as *mut c_void,
            );
        }
        Some(Self {
            queue: Mutex::new(Some(QueuePtr(queue))),
            waker,
            consumer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<QueuePtr>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forwards these partitions' fetch queues here. Called before librdkafka starts
    /// fetching them (in the assign's pre-rebalance step, or before a static assign).
    pub(crate) fn forward(&self, partitions: &[TopicPartition]) {
        use rdkafka::consumer::Consumer as _;
        let rk = self.consumer.client().native_ptr();
        let guard = self.lock();
        let Some(queue) = guard.as_ref() else {
            return;
        };
        for tp in partitions {
            let Ok(topic) = CString::new(tp.topic()) else {
                continue;
            };
            // SAFETY: `rk` is live; the partition queue handle is ours and destroyed
            // here (the forward keeps its own reference to our queue).
            unsafe {
                let partition_queue =
                    rd::rd_kafka_queue_get_partition(rk, topic.as_ptr(), tp.partition());
                if partition_queue.is_null() {
                    debug!(partition = %tp, "no fetch queue to forward");
                    continue;
                }
                rd::rd_kafka_queue_forward(partition_queue, queue.0.as_ptr());
                rd::rd_kafka_queue_destroy(partition_queue);
            }
        }
    }

    /// Whether records (or errors) wait here.
    pub(crate) fn is_empty(&self) -> bool {
        let guard = self.lock();
        match guard.as_ref() {
            // SAFETY: the queue is live while it is in the slot.
            Some(queue) => unsafe { rd::rd_kafka_queue_length(queue.0.as_ptr()) == 0 },
            None => true,
        }
    }

    /// Wakes `waker` when records arrive; check [`is_empty`](Self::is_empty) after.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// Moves up to `max` waiting records into `batch` without blocking, each converted
    /// by `converter`, in the queue's order (per partition: offset order). Returns the
    /// first consumer error librdkafka put in place of a record, if any (later ones are
    /// logged); end-of-partition markers are skipped. A fatal error ends the read: the
    /// records after it stay unhandled (and uncommitted), whichever their partition.
    pub(crate) fn read(
        &self,
        max: usize,
        converter: &mut MessageConverter,
        batch: &mut PollBatch,
    ) -> Option<SourceError> {
        const CHUNK: usize = 256;
        let guard = self.lock();
        let queue = guard.as_ref()?;
        let mut pointers = [std::ptr::null_mut::<rd::rd_kafka_message_t>(); CHUNK];
        let mut first_error = None;
        let mut left = max;
        while left > 0 {
            let want = left.min(CHUNK);
            // SAFETY: the queue is live; `pointers` has room for `want` entries; a
            // timeout of 0 never blocks.
            let got = unsafe {
                rd::rd_kafka_consume_batch_queue(queue.0.as_ptr(), 0, pointers.as_mut_ptr(), want)
            };
            let got = usize::try_from(got).unwrap_or(0);
            let mut fatal = false;
            for &message in &pointers[..got] {
                if fatal {
                    // SAFETY: returned by librdkafka, destroyed once, never read.
                    unsafe { rd::rd_kafka_message_destroy(message) };
                    continue;
                }
                // SAFETY: librdkafka returned `got` valid messages, each ours to destroy
                // once; nothing of one is kept past its conversion (it is copied).
                let fetched = unsafe {
                    let fetched = fetched(&*message, converter);
                    rd::rd_kafka_message_destroy(message);
                    fetched
                };
                match fetched {
                    Fetched::Record(m) => batch.push(m),
                    Fetched::PartitionEof => {}
                    Fetched::Error(e) => {
                        // Records after a fatal error are not handed over: librdkafka
                        // may have skipped the records it could not read, and handling
                        // later ones would let a commit cover them.
                        fatal = !e.is_transient();
                        if first_error.is_none() {
                            first_error = Some(e);
                        } else {
                            debug!(error = %e, "further consumer error");
                        }
                    }
                }
            }
            if fatal || got < want {
                break;
            }
            left -= got;
        }
        first_error
    }

    /// Disables the wake-up and destroys the queue (records left in it are dropped:
    /// they were never handed over, so their positions were never stored).
    pub(crate) fn destroy(&self) {
        let mut guard = self.lock();
        if let Some(queue) = guard.take() {
            // SAFETY: the queue is live; disabling takes the queue's lock, so no callback
            // is running after it returns, and none starts.
            unsafe {
                rd::rd_kafka_queue_cb_event_enable(queue.0.as_ptr(), None, std::ptr::null_mut());
                rd::rd_kafka_queue_destroy(queue.0.as_ptr());
            }
        }
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl std::fmt::Debug for FetchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchQueue").finish_non_exhaustive()
    }
}

/// Copies one librdkafka message into a core message (or its error).
///
/// # Safety
/// `m` must be a live message returned by librdkafka.
unsafe fn fetched(m: &rd::rd_kafka_message_t, names: &mut MessageConverter) -> Fetched {
    use rd::rd_kafka_resp_err_t as E;
    if m.err != E::RD_KAFKA_RESP_ERR_NO_ERROR {
        if m.err == E::RD_KAFKA_RESP_ERR__PARTITION_EOF {
            return Fetched::PartitionEof;
        }
        // SAFETY: the caller's contract.
        return Fetched::Error(unsafe { consumer_error(m) });
    }
    // SAFETY (whole block): pointers and lengths come from librdkafka's live message.
    unsafe {
        let topic = names.topic_with(|| {
            let name = rd::rd_kafka_topic_name(m.rkt);
            if name.is_null() {
                ""
            } else {
                CStr::from_ptr(name).to_str().unwrap_or("")
            }
        });
        let mut builder = CoreMessage::builder(topic, m.partition, m.offset)
            .maybe_key(copy(m.key.cast::<u8>(), m.key_len))
            .maybe_payload(copy(m.payload.cast::<u8>(), m.len));
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        let ms = rd::rd_kafka_message_timestamp(m, &mut kind);
        match kind {
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => {
                builder = builder.timestamp(Timestamp::CreateTime(ms));
            }
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                builder = builder.timestamp(Timestamp::LogAppendTime(ms));
            }
            _ => {}
        }
        if names.read_headers() {
            builder = builder.headers(headers(m));
        }
        Fetched::Record(builder.build())
    }
}

/// The consumer error that librdkafka put in a partition's queue, with the partition
/// and offset it names.
///
/// # Safety
/// `m` must be a live message returned by librdkafka, with an error.
unsafe fn consumer_error(m: &rd::rd_kafka_message_t) -> SourceError {
    let code = RDKafkaErrorCode::from(m.err);
    // SAFETY: `m` is live; the topic handle and the error string belong to it, and both
    // are copied before it is destroyed.
    let (topic, detail) = unsafe {
        let name = if m.rkt.is_null() {
            std::ptr::null()
        } else {
            rd::rd_kafka_topic_name(m.rkt)
        };
        let errstr = rd::rd_kafka_message_errstr(m);
        let text = |p: *const std::ffi::c_char| {
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        (text(name), text(errstr))
    };
    let Some(topic) = topic else {
        // Not one partition's: classified as the consumer queue's errors are.
        return source_error("polling", KafkaError::MessageConsumption(code));
    };
    partition_error(PartitionError {
        topic,
        partition: m.partition,
        offset: (m.offset >= 0).then_some(m.offset),
        code,
        detail: detail.unwrap_or_else(|| code.to_string()),
    })
}

/// A copy of `len` bytes at `data`; `None` for a null pointer (a null key or payload).
///
/// # Safety
/// `data` must be null or point to `len` readable bytes.
unsafe fn copy(data: *const u8, len: usize) -> Option<Bytes> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    Some(Bytes::copy_from_slice(unsafe {
        std::slice::from_raw_parts(data, len)
    }))
}

/// The message's headers, copied.
///
/// # Safety
/// `m` must be a live message returned by librdkafka.
unsafe fn headers(m: &rd::rd_kafka_message_t) -> Vec<Header> {
    let mut list = std::ptr::null_mut();
    // SAFETY: `m` is live; the header list it returns belongs to the message.
    let err = unsafe { rd::rd_kafka_message_headers(m, &mut list) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || list.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for index in 0.. {
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0;
        // SAFETY: `list` is live while `m` is; the out-pointers are valid.
        let err =
            unsafe { rd::rd_kafka_header_get_all(list, index, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            break;
        }
        // SAFETY: librdkafka returns a NUL-terminated name and `size` value bytes.
        let key = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let value = unsafe { copy(value.cast::<u8>(), size) };
        out.push(Header { key, value });
    }
    out
}
