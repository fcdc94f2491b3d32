//! [`RskafkaSource`]: the [`MessageSource`] the manager polls.

mod assignment;
mod connect;
#[cfg(feature = "test-util")]
mod crash;
mod describe;
mod fetched;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ktm_core::{
    async_trait, IsolationLevel, MessageSource, Offsets, PollBatch, SourceError, TopicPartition,
};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::config::{RskafkaConfig, RskafkaSourceBuilder};
use crate::fetch::{FetchEngine, FetchItem, FetchSettings, Owned};
use crate::group::CommitIdentity;
use crate::group::{
    ControlClient, GroupEvent, GroupHandle, GroupSettings, Security, SharedControl,
};
use crate::io::IoThread;
use crate::BACKEND;

/// Why a commit is refused while the member is between generations.
const NOT_A_MEMBER: &str = "not a member of the generation that owns these partitions (rebalancing, fenced or left); positions stay uncommitted";

/// Fetched batches taken per poll beyond the first, if they are already there.
const DRAIN_PER_POLL: usize = 32;

/// A Kafka consumer over rskafka, with consumer groups. See the [crate docs](crate).
pub struct RskafkaSource {
    config: RskafkaConfig,
    group_settings: Arc<GroupSettings>,
    fetch_settings: Arc<FetchSettings>,
    /// Every connection and background task lives there; started by the first poll.
    io: Option<IoThread>,
    /// The fetch path, started by the first poll.
    engine: Option<FetchEngine>,
    group: Option<GroupHandle>,
    /// Offsets and metadata, on the I/O thread only.
    control: SharedControl,
    tx: mpsc::UnboundedSender<FetchItem>,
    rx: mpsc::UnboundedReceiver<FetchItem>,
    owned: BTreeMap<TopicPartition, Owned>,
    identity: CommitIdentity,
    stored: Offsets,
    pending: Option<Pending>,
    deferred_error: Option<SourceError>,
    static_queued: bool,
    next_epoch: u64,
    /// Thrown by a [`CrashSwitch`] (the `test-util` feature).
    #[cfg(feature = "test-util")]
    crashed: Arc<std::sync::atomic::AtomicBool>,
}

/// An assignment change taken from the group task and not yet fully applied; it stays
/// here until it is, so a cancelled poll resumes it.
enum Pending {
    Assign {
        identity: CommitIdentity,
        partitions: Vec<TopicPartition>,
        done: Option<oneshot::Sender<()>>,
    },
    Revoke(Option<oneshot::Sender<()>>),
    Lost,
}

#[cfg(feature = "test-util")]
pub use crash::CrashSwitch;

impl fmt::Debug for RskafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RskafkaSource")
            .field("config", &self.config)
            .field("started", &self.engine.is_some())
            .field("owned", &self.owned.keys().collect::<Vec<_>>())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl RskafkaSource {
    /// Starts building a source.
    pub fn builder() -> RskafkaSourceBuilder {
        RskafkaSourceBuilder::new()
    }

    pub(crate) fn new(config: RskafkaConfig) -> Self {
        let c = &config.consumer;
        let group_settings = Arc::new(GroupSettings {
            bootstrap: c.bootstrap_servers.clone(),
            group_id: c.group_id.clone(),
            client_id: c.client_id.clone(),
            topics: c.topics(),
            assignor: config.assignor,
            session_timeout: c.session_timeout,
            heartbeat_interval: c.heartbeat_interval,
            rebalance_timeout: c.max_poll_interval,
            group_instance_id: c.group_instance_id.clone(),
            connect_timeout: config.connect_timeout,
            metadata_max_age: config.metadata_max_age,
            security: Security::of(&config),
        });
        let fetch_settings = Arc::new(FetchSettings {
            min_bytes: c.fetch_min_bytes,
            max_bytes: c.fetch_max_bytes,
            partition_max_bytes: c.max_partition_fetch_bytes.min(c.fetch_max_bytes),
            max_wait: c.fetch_max_wait,
            reset: c.offset_reset,
            read_committed: c.isolation_level == IsolationLevel::ReadCommitted,
            queued_max_bytes: config.queued_max_bytes,
            client_id: c.client_id.clone(),
            security: group_settings.security.clone(),
            request_timeout: config.connect_timeout,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            control: Arc::new(tokio::sync::Mutex::new(ControlClient::new(Arc::clone(
                &group_settings,
            )))),
            group_settings,
            fetch_settings,
            config,
            io: None,
            engine: None,
            group: None,
            tx,
            rx,
            owned: BTreeMap::new(),
            identity: CommitIdentity {
                generation: -1,
                member_id: String::new(),
            },
            stored: Offsets::new(),
            pending: None,
            deferred_error: None,
            static_queued: false,
            next_epoch: 0,
            #[cfg(feature = "test-util")]
            crashed: Arc::default(),
        }
    }

    /// The settings this source runs with.
    pub fn config(&self) -> &RskafkaConfig {
        &self.config
    }

    /// The I/O thread, once started.
    fn io(&self) -> Result<&IoThread, SourceError> {
        self.io
            .as_ref()
            .ok_or_else(|| SourceError::transient(BACKEND, "the I/O thread is not running"))
    }

    async fn poll_inner(
        &mut self,
        timeout: Duration,
        batch: &mut PollBatch,
    ) -> Result<(), SourceError> {
        #[cfg(feature = "test-util")]
        if self.check_crashed() {
            tokio::time::sleep(timeout).await;
            return Ok(());
        }
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(g) = &self.group {
            g.polled();
        }
        self.start()?;
        if self.pending.is_none() && self.release_held(batch) {
            self.drain_ready(batch);
            return Ok(());
        }
        loop {
            if self.pending.is_some() {
                self.apply_pending(batch).await?;
                self.drain_ready(batch);
                return Ok(());
            }
            let woke = tokio::select! {
                // Group events first: a member that lost (or must revoke) its
                // partitions stops handling their fetched records at once, rather
                // than handling records whose positions it can no longer commit
                // (after a broker pause those are redelivered to the next owner).
                biased;
                e = next_group_event(&mut self.group) => Woke::Group(e),
                Some(item) = self.rx.recv() => Woke::Fetched(item),
                () = tokio::time::sleep_until(deadline) => Woke::Timeout,
            };
            match woke {
                Woke::Group(Some(GroupEvent::Failed(e))) => return Err(e),
                Woke::Group(Some(GroupEvent::Assigned {
                    identity,
                    partitions,
                    done,
                })) => {
                    self.pending = Some(Pending::Assign {
                        identity,
                        partitions,
                        done,
                    })
                }
                Woke::Group(Some(GroupEvent::Revoke { done })) => {
                    self.pending = Some(Pending::Revoke(Some(done)))
                }
                Woke::Group(Some(GroupEvent::Lost)) => self.pending = Some(Pending::Lost),
                Woke::Group(None) => {
                    self.group = None;
                    return Err(SourceError::transient(
                        BACKEND,
                        "the group member task ended; rejoining",
                    ));
                }
                Woke::Fetched(item) => {
                    if self.accept(item, batch)? {
                        self.drain_ready(batch);
                        return Ok(());
                    }
                }
                Woke::Timeout => return Ok(()),
            }
        }
    }
}

/// What woke a poll up.
enum Woke {
    Group(Option<GroupEvent>),
    Fetched(FetchItem),
    Timeout,
}

async fn next_group_event(group: &mut Option<GroupHandle>) -> Option<GroupEvent> {
    match group {
        Some(g) => g.next_event().await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl MessageSource for RskafkaSource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn describe(&mut self) -> Result<ktm_core::SourceDescription, SourceError> {
        self.describe_now().await
    }

    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError> {
        let polled = self.poll_inner(timeout, batch).await;
        // Also after an error: the watermarks are true all the same. (A cancelled poll
        // reports them in the next one.)
        self.report_high_watermarks(batch);
        polled
    }

    fn store(&mut self, positions: &Offsets) {
        self.stored.merge(positions);
    }

    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError> {
        #[cfg(feature = "test-util")]
        if self.check_crashed() {
            return Err(SourceError::transient(BACKEND, "crashed (test switch)"));
        }
        let mut owned = positions.clone();
        owned.retain(|tp| self.owned.contains_key(tp));
        if owned.is_empty() {
            return Ok(());
        }
        self.commit_held(owned).await
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.owned.clear();
        #[cfg(feature = "test-util")]
        if self.check_crashed() {
            return Ok(());
        }
        if let Some(mut g) = self.group.take() {
            let limit = self.config.connect_timeout;
            if tokio::time::timeout(limit, g.leave()).await.is_err() {
                warn!("leaving the group timed out; the session will expire");
            }
        }
        self.engine = None;
        // Ends every task and connection of the source.
        self.io = None;
        Ok(())
    }

    /// Stops fetching these partitions: their task fetches nothing more, and batches it
    /// had already fetched wait in the source, returned in order after the resume, so
    /// nothing is skipped or repeated and memory stays within the prefetch bound. The
    /// group membership and heartbeats go on. Partitions not owned are ignored.
    fn group_id(&self) -> Option<&str> {
        Some(&self.group_settings.group_id)
    }

    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.set_paused(partitions, true);
        Ok(())
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.set_paused(partitions, false);
        Ok(())
    }
}
