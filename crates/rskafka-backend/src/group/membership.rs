//! The source's end of group membership: the events the member task sends, the state
//! both sides share (which generation may commit, when the consumer thread last
//! polled), and the handle that starts and ends the task on the I/O thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ktm_core::{SourceError, TopicPartition};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::control::{CommitIdentity, SharedControl};
use super::coordinator::GroupSettings;
use super::member::Member;

/// An assignment change, for the source to act on at its next poll.
#[derive(Debug)]
pub(crate) enum GroupEvent {
    /// The group (re)formed at a new generation: commits now carry `identity`, and
    /// `partitions` is the member's whole assignment. Owned partitions missing from it
    /// are committed (under the new generation) and revoked; the others are kept, and
    /// the new ones added. Then `done`, if any, is answered: the cooperative member
    /// rejoins once it has given those partitions up (KIP-429).
    Assigned {
        identity: CommitIdentity,
        partitions: Vec<TopicPartition>,
        done: Option<oneshot::Sender<()>>,
    },
    /// An eager rebalance started: commit every owned partition's stored position,
    /// give them all up, then answer on `done` so the member rejoins.
    Revoke { done: oneshot::Sender<()> },
    /// The member was fenced, its session expired, or it left the group because the
    /// consumer thread did not poll within `max.poll.interval`: its partitions are
    /// gone, and commits for them are refused.
    Lost,
    /// A group request failed: transient ones are retried by the task itself; after
    /// a fatal one the task ends.
    Failed(SourceError),
}

/// When the consumer thread last polled: the member leaves the group when it has not
/// for longer than `max.poll.interval`, as Kafka defines it.
#[derive(Debug)]
pub(crate) struct PollClock {
    origin: Instant,
    /// Milliseconds from `origin` to the last poll.
    last_poll_ms: AtomicU64,
}

impl Default for PollClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_poll_ms: AtomicU64::new(0),
        }
    }
}

impl PollClock {
    /// Notes a poll, now. One atomic store: it is on the consumer's hot path.
    pub(crate) fn polled(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_poll_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the last poll was.
    pub(crate) fn since_last_poll(&self) -> Duration {
        let last = Duration::from_millis(self.last_poll_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// What the consumer thread and the member task share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The generation whose assignment is valid now; `None` between generations, and
    /// once fenced or gone. A commit goes out only under this identity.
    identity: Mutex<Option<CommitIdentity>>,
    pub(crate) poll_clock: PollClock,
}

impl Shared {
    pub(crate) fn set_identity(&self, identity: Option<CommitIdentity>) {
        *self.identity.lock().unwrap_or_else(PoisonError::into_inner) = identity;
    }

    pub(crate) fn identity(&self) -> Option<CommitIdentity> {
        self.identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `identity` is the generation that owns the member's assignment now.
    fn owns(&self, identity: &CommitIdentity) -> bool {
        self.identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            == Some(identity)
    }
}

/// The source's end of the member task.
#[derive(Debug)]
pub(crate) struct GroupHandle {
    events: mpsc::UnboundedReceiver<GroupEvent>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl GroupHandle {
    /// Starts the member task on the I/O thread's runtime `io`.
    pub(crate) fn spawn(io: &Handle, settings: Arc<GroupSettings>, control: SharedControl) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let (leave, leave_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        shared.poll_clock.polled();
        let member = Member::new(settings, control, tx, Arc::clone(&shared));
        Self {
            events,
            leave: Some(leave),
            task: io.spawn(member.run(leave_rx)),
            shared,
        }
    }

    /// The next event; `None` when the task has ended. Cancel-safe.
    pub(crate) async fn next_event(&mut self) -> Option<GroupEvent> {
        self.events.recv().await
    }

    /// Notes that the consumer thread polled.
    pub(crate) fn polled(&self) {
        self.shared.poll_clock.polled();
    }

    /// Whether `identity` is the generation that owns the member's assignment now:
    /// commits under any other are refused locally (fencing), never sent under a
    /// newer generation for partitions the member may no longer own.
    pub(crate) fn may_commit_as(&self, identity: &CommitIdentity) -> bool {
        self.shared.owns(identity)
    }

    /// Leaves the group (a dynamic member; a static one lets its session expire) and
    /// ends the task.
    pub(crate) async fn leave(&mut self) {
        self.shared.set_identity(None);
        if let Some(leave) = self.leave.take() {
            let (done, wait) = oneshot::channel();
            if leave.send(done).is_ok() {
                let _ = wait.await;
            }
        }
        self.task.abort();
    }

    /// Ends the task without leaving the group, as a crash would (the crash switch of
    /// the `test-util` feature).
    #[cfg(feature = "test-util")]
    pub(crate) fn abandon(&mut self) {
        self.shared.set_identity(None);
        self.leave = None;
        self.task.abort();
    }
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_clock_measures_from_the_last_poll() {
        let clock = PollClock::default();
        std::thread::sleep(Duration::from_millis(30));
        assert!(clock.since_last_poll() >= Duration::from_millis(30));
        clock.polled();
        assert!(clock.since_last_poll() < Duration::from_millis(30));
    }

    #[test]
    fn only_the_current_generation_may_commit() {
        let shared = Shared::default();
        let g1 = CommitIdentity {
            generation: 1,
            member_id: "m".into(),
        };
        let g2 = CommitIdentity {
            generation: 2,
            ..g1.clone()
        };
        assert!(!shared.owns(&g1), "no generation before the first join");
        shared.set_identity(Some(g1.clone()));
        assert!(shared.owns(&g1));
        // Rejoined after a fence: the old generation's owner may no longer commit.
        shared.set_identity(Some(g2.clone()));
        assert!(!shared.owns(&g1));
        assert!(shared.owns(&g2));
        shared.set_identity(None);
        assert!(!shared.owns(&g2), "between generations nothing commits");
    }
}
