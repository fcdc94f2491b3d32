//! A helper thread for librdkafka's blocking calls: synchronous commits, and dropping the
//! consumer (which leaves the group and can block for `session.timeout.ms` when the
//! broker is unreachable). The consumer thread only awaits their results, so a stop or a
//! close timeout is never held up by librdkafka.
//!
//! A group member's close is done once librdkafka has left the group: the revoke
//! callback of the close waits for that (see `GroupContext::wait_until_closed`), which
//! also spares the drop a 100 ms wait. A consumer with a static assignment has no group
//! to leave, and no callback to wait in: its close is reported done at once, and
//! librdkafka finishes in the background.

use std::sync::mpsc;
use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::TopicPartitionList;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::context::GroupContext;

/// The consumer type this backend runs.
pub(crate) type RdConsumer = StreamConsumer<GroupContext>;

enum Job {
    Commit {
        positions: TopicPartitionList,
        reply: oneshot::Sender<KafkaResult<()>>,
    },
    Close {
        consumer: Arc<RdConsumer>,
        done: oneshot::Sender<()>,
    },
}

/// Whether the consumer is a group member (subscribed to topics) or was assigned its
/// partitions (no group to leave on close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Membership {
    Group,
    Static,
}

/// The handle of the helper thread; the thread ends after a close, or when the handle is
/// dropped.
#[derive(Debug)]
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
    membership: Membership,
}

impl Worker {
    /// Spawns the thread; it keeps a reference to the consumer for commits.
    pub(crate) fn spawn(
        consumer: Arc<RdConsumer>,
        membership: Membership,
    ) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("ktm-rdkafka-io".to_owned())
            .spawn(move || run(consumer, membership, rx))?;
        Ok(Self { jobs, membership })
    }

    /// Commits exactly these positions, synchronously, on the helper thread.
    pub(crate) async fn commit(&self, positions: TopicPartitionList) -> KafkaResult<()> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Commit { positions, reply })
            .map_err(|_| KafkaError::Canceled)?;
        answer.await.map_err(|_| KafkaError::Canceled)?
    }

    /// Drops the consumer on the helper thread (after any commit in progress); the
    /// receiver completes once librdkafka has closed it (for a group member: left the
    /// group), or at once for a static assignment.
    pub(crate) fn close(self, consumer: Arc<RdConsumer>) -> oneshot::Receiver<()> {
        let (done, closed) = oneshot::channel();
        if let Err(mpsc::SendError(Job::Close { consumer, done })) =
            self.jobs.send(Job::Close { consumer, done })
        {
            // The helper thread is gone: close on a fresh one rather than here.
            drop_in_background(consumer, self.membership, done);
        }
        closed
    }
}

fn run(consumer: Arc<RdConsumer>, membership: Membership, jobs: mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Commit { positions, reply } => {
                let result = consumer.commit(&positions, CommitMode::Sync);
                // The caller may have given up (stop, timeout); the result then only matters for logs.
                if let Err(Err(e)) = reply.send(result) {
                    warn!(error = %e, "commit failed after its caller stopped waiting");
                }
            }
            Job::Close {
                consumer: other,
                done,
            } => {
                drop(other);
                close(consumer, membership, done);
                return;
            }
        }
    }
    // The source was dropped without closing.
    let (done, _) = oneshot::channel();
    close(consumer, membership, done);
}

fn close(consumer: Arc<RdConsumer>, membership: Membership, done: oneshot::Sender<()>) {
    debug!("closing the librdkafka consumer");
    if Arc::strong_count(&consumer) > 1 {
        warn!(
            "the librdkafka consumer is still referenced; it closes when the last reference goes"
        );
    } else {
        // From here on, rebalance callbacks run inside the drop's close.
        consumer.context().set_terminating();
    }
    let done = match membership {
        Membership::Group => Some(done),
        Membership::Static => {
            // Nothing to leave, and the handled positions were committed before the
            // close: what remains is librdkafka's own teardown, which nobody need await.
            let _ = done.send(());
            None
        }
    };
    drop(consumer);
    debug!("librdkafka consumer closed");
    if let Some(done) = done {
        let _ = done.send(());
    }
}

/// Drops the consumer on a thread of its own, signalling `done` when finished.
pub(crate) fn drop_in_background(
    consumer: Arc<RdConsumer>,
    membership: Membership,
    done: oneshot::Sender<()>,
) {
    let spawned = std::thread::Builder::new()
        .name("ktm-rdkafka-close".to_owned())
        .spawn(move || close(consumer, membership, done));
    if let Err(e) = spawned {
        // The consumer went down with the closure, on this thread.
        warn!(error = %e, "cannot spawn a thread to close the consumer; it was closed in place");
    }
}
