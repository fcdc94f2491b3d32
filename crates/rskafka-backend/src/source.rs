//! [`RskafkaSource`]: the [`MessageSource`] the manager polls.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ktm_core::{
    async_trait, MessageSource, Offsets, PollBatch, SourceError, SourceEvent, Subscription,
    TopicPartition,
};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::{RskafkaConfig, RskafkaSourceBuilder};
use crate::fetch::{to_source_error, FetchItem, FetchSettings, Fetcher};
use crate::group::CommitIdentity;
use crate::group::{GroupEvent, GroupHandle, GroupSettings, OffsetClient, Security};
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
    client: Option<Arc<Client>>,
    group: Option<GroupHandle>,
    /// Used on the I/O thread only.
    offsets: Arc<tokio::sync::Mutex<OffsetClient>>,
    tx: mpsc::UnboundedSender<FetchItem>,
    rx: mpsc::UnboundedReceiver<FetchItem>,
    owned: BTreeMap<TopicPartition, Fetcher>,
    identity: CommitIdentity,
    stored: Offsets,
    pending: Option<Pending>,
    deferred_error: Option<SourceError>,
    static_queued: bool,
    next_epoch: u64,
    crashed: Arc<AtomicBool>,
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

/// Simulates a crash of the source, for tests: it stops heartbeating and committing,
/// without leaving the group.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct CrashSwitch(Arc<AtomicBool>);

impl CrashSwitch {
    /// Crashes the source (it notices at its next poll or commit).
    pub fn crash(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl fmt::Debug for RskafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RskafkaSource")
            .field("config", &self.config)
            .field("connected", &self.client.is_some())
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
            security: Security {
                sasl: config.sasl.clone(),
                #[cfg(feature = "tls")]
                tls: config.tls.clone(),
            },
        });
        let fetch_settings = Arc::new(FetchSettings {
            min_bytes: c.fetch_min_bytes,
            max_bytes: c.max_partition_fetch_bytes.min(c.fetch_max_bytes),
            max_wait_ms: i32::try_from(c.fetch_max_wait.as_millis()).unwrap_or(i32::MAX),
            reset: c.offset_reset,
            prefetch_batches: config.prefetch_batches,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            offsets: Arc::new(tokio::sync::Mutex::new(OffsetClient::new(Arc::clone(
                &group_settings,
            )))),
            group_settings,
            fetch_settings,
            config,
            io: None,
            client: None,
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
            crashed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The settings this source runs with.
    pub fn config(&self) -> &RskafkaConfig {
        &self.config
    }

    #[doc(hidden)]
    pub fn crash_switch(&self) -> CrashSwitch {
        CrashSwitch(Arc::clone(&self.crashed))
    }

    /// Whether the crash switch was thrown; if so, drops everything without a word to
    /// the group.
    fn check_crashed(&mut self) -> bool {
        if !self.crashed.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(g) = &mut self.group {
            g.abandon();
        }
        self.owned.clear();
        true
    }

    /// The I/O thread, once started.
    fn io(&self) -> Result<&IoThread, SourceError> {
        self.io
            .as_ref()
            .ok_or_else(|| SourceError::transient(BACKEND, "the I/O thread is not running"))
    }

    /// Fetches the committed offsets of `partitions`, on the I/O thread.
    async fn fetch_committed(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, SourceError> {
        let offsets = Arc::clone(&self.offsets);
        self.io()?
            .run(async move { offsets.lock().await.fetch(&partitions).await })
            .await?
            .map_err(|e| e.into_source_error("fetching committed offsets"))
    }

    /// Commits `positions` under the identity of the assignment the consumer thread
    /// holds, on the I/O thread; refused locally when that generation has moved on.
    async fn commit_held(&self, positions: Offsets) -> Result<(), SourceError> {
        if let Some(g) = &self.group {
            if !g.may_commit_as(&self.identity) {
                return Err(SourceError::transient(BACKEND, NOT_A_MEMBER));
            }
        }
        let offsets = Arc::clone(&self.offsets);
        let identity = self.identity.clone();
        self.io()?
            .run(async move { offsets.lock().await.commit(&identity, &positions).await })
            .await?
            .map_err(|e| e.into_source_error("committing offsets"))
    }

    async fn client(&mut self) -> Result<Arc<Client>, SourceError> {
        if let Some(c) = &self.client {
            return Ok(Arc::clone(c));
        }
        if self.io.is_none() {
            self.io = Some(IoThread::start()?);
        }
        let c = &self.config;
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(c.connect_timeout),
        };
        let mut builder = ClientBuilder::new(c.consumer.bootstrap_servers.clone())
            .client_id(c.consumer.client_id.clone())
            .backoff_config(backoff);
        if let Some(sasl) = &c.sasl {
            builder = builder.sasl_config(sasl.to_rskafka());
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &c.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        // Built on the I/O thread, so that rskafka's connections live there.
        let limit = c.connect_timeout * 2;
        let built = self
            .io()?
            .run(async move { tokio::time::timeout(limit, builder.build()).await })
            .await?;
        let client = match built {
            Ok(Ok(client)) => Arc::new(client),
            Ok(Err(e)) => return Err(to_source_error("connecting to the brokers", e)),
            Err(_) => {
                return Err(SourceError::transient(
                    BACKEND,
                    format!(
                        "connecting to the brokers {:?} timed out",
                        c.consumer.bootstrap_servers
                    ),
                ))
            }
        };
        info!(brokers = ?c.consumer.bootstrap_servers, "connected");
        self.client = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Queues the static assignment, or starts the member task.
    fn start(&mut self, client: &Arc<Client>) -> Result<(), SourceError> {
        match &self.config.consumer.subscription {
            Subscription::Partitions(p) if !self.static_queued => {
                self.static_queued = true;
                self.pending = Some(Pending::Assign {
                    identity: self.identity.clone(),
                    partitions: p.clone(),
                    done: None,
                });
            }
            Subscription::Topics(_) if self.group.is_none() => {
                let settings = Arc::clone(&self.group_settings);
                let io = self.io()?.handle();
                self.group = Some(GroupHandle::spawn(io, settings, Arc::clone(client)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies the pending assignment change, pushing its event.
    async fn apply_pending(
        &mut self,
        client: &Arc<Client>,
        batch: &mut PollBatch,
    ) -> Result<(), SourceError> {
        match &mut self.pending {
            Some(Pending::Assign {
                identity,
                partitions,
                done,
            }) => {
                let (identity, assigned, done) =
                    (identity.clone(), partitions.clone(), done.take());
                // The new generation first: what is revoked below commits under it.
                self.identity = identity;
                let assigned: BTreeSet<TopicPartition> = assigned.into_iter().collect();
                let revoked: Vec<TopicPartition> = self
                    .owned
                    .keys()
                    .filter(|tp| !assigned.contains(*tp))
                    .cloned()
                    .collect();
                if !revoked.is_empty() {
                    let committed = self.commit_owned(&revoked).await;
                    self.give_up(batch, revoked, committed);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
                let added: Vec<TopicPartition> = assigned
                    .into_iter()
                    .filter(|tp| !self.owned.contains_key(tp))
                    .collect();
                let committed = if added.is_empty() {
                    BTreeMap::new()
                } else {
                    self.fetch_committed(added.clone()).await?
                };
                let io = self.io()?.handle().clone();
                for tp in &added {
                    self.next_epoch += 1;
                    let start = committed.get(tp).copied().flatten();
                    let fetcher = Fetcher::spawn(
                        &io,
                        Arc::clone(client),
                        tp.clone(),
                        start,
                        self.next_epoch,
                        Arc::clone(&self.fetch_settings),
                        self.tx.clone(),
                    );
                    self.owned.insert(tp.clone(), fetcher);
                }
                if !added.is_empty() {
                    batch.push_event(SourceEvent::Assigned(added));
                }
            }
            Some(Pending::Revoke(_)) => {
                let all: Vec<TopicPartition> = self.owned.keys().cloned().collect();
                let committed = self.commit_owned(&all).await;
                self.give_up(batch, all, committed);
                if let Some(Pending::Revoke(Some(done))) = self.pending.take() {
                    let _ = done.send(());
                }
            }
            Some(Pending::Lost) => {
                let all: Vec<TopicPartition> = self.owned.keys().cloned().collect();
                self.give_up(batch, all, false);
            }
            None => {}
        }
        self.pending = None;
        Ok(())
    }

    /// Commits the stored positions of `partitions` before they are revoked; whether
    /// they are safe (committed, or nothing to commit).
    async fn commit_owned(&mut self, partitions: &[TopicPartition]) -> bool {
        let mut positions = self.stored.clone();
        positions.retain(|tp| partitions.contains(tp));
        if positions.is_empty() {
            return true;
        }
        match self.commit_held(positions).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "commit before revoke failed; reporting the partitions lost");
                false
            }
        }
    }

    /// Stops fetching `gone` and reports them revoked (`orderly`) or lost.
    fn give_up(&mut self, batch: &mut PollBatch, gone: Vec<TopicPartition>, orderly: bool) {
        if gone.is_empty() {
            return;
        }
        for tp in &gone {
            self.owned.remove(tp);
        }
        self.stored.retain(|tp| !gone.contains(tp));
        batch.push_event(if orderly {
            SourceEvent::Revoked(gone)
        } else {
            SourceEvent::Lost(gone)
        });
    }

    /// Takes a fetched item: `Ok(true)` if it added messages.
    fn accept(&mut self, item: FetchItem, batch: &mut PollBatch) -> Result<bool, SourceError> {
        let epoch = item.epoch();
        let Some(fetcher) = self.owned.values_mut().find(|f| f.epoch == epoch) else {
            return Ok(false);
        };
        match item {
            FetchItem::Records { high_watermark, .. } if fetcher.must_hold() => {
                fetcher.note_high_watermark(high_watermark);
                fetcher.hold(item);
                Ok(false)
            }
            FetchItem::Records {
                messages,
                high_watermark,
                ..
            } => {
                fetcher.note_high_watermark(high_watermark);
                for m in messages {
                    batch.push(m);
                }
                Ok(true)
            }
            FetchItem::HighWatermark { high_watermark, .. } => {
                fetcher.note_high_watermark(high_watermark);
                Ok(false)
            }
            FetchItem::Failed { error, .. } => Err(error),
        }
    }

    /// Returns the batches held for partitions resumed since: `true` if there were any.
    fn release_held(&mut self, batch: &mut PollBatch) -> bool {
        let mut released = false;
        for fetcher in self.owned.values_mut() {
            let Some(held) = fetcher.take_held() else {
                continue;
            };
            for item in held {
                if let FetchItem::Records { messages, .. } = item {
                    released |= !messages.is_empty();
                    for m in messages {
                        batch.push(m);
                    }
                }
            }
        }
        released
    }

    /// Reports each owned partition's high watermark received since the last report,
    /// once: several batches of one poll must not report it several times.
    fn report_high_watermarks(&mut self, batch: &mut PollBatch) {
        for (tp, fetcher) in &mut self.owned {
            if let Some(hw) = fetcher.take_high_watermark() {
                batch.set_high_watermark(tp.clone(), hw);
            }
        }
    }

    async fn poll_inner(
        &mut self,
        timeout: Duration,
        batch: &mut PollBatch,
    ) -> Result<(), SourceError> {
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
        let client = self.client().await?;
        self.start(&client)?;
        if self.pending.is_none() && self.release_held(batch) {
            self.drain_ready(batch);
            return Ok(());
        }
        loop {
            if self.pending.is_some() {
                self.apply_pending(&client, batch).await?;
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

    /// Pauses (`true`) or resumes the owned partitions among `partitions`; the others
    /// are not this consumer's (any more), and there is nothing to remember for them.
    fn set_paused(&mut self, partitions: &[TopicPartition], paused: bool) {
        for tp in partitions {
            match self.owned.get_mut(tp) {
                Some(fetcher) => fetcher.set_paused(paused),
                None => debug!(partition = %tp, paused, "not owned; pause or resume ignored"),
            }
        }
    }

    /// Adds the batches that are already waiting, without waiting.
    fn drain_ready(&mut self, batch: &mut PollBatch) {
        for _ in 0..DRAIN_PER_POLL {
            let Ok(item) = self.rx.try_recv() else {
                return;
            };
            if let Err(e) = self.accept(item, batch) {
                self.deferred_error = Some(e);
                return;
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
        if self.check_crashed() {
            return Ok(());
        }
        if let Some(mut g) = self.group.take() {
            let limit = self.config.connect_timeout;
            if tokio::time::timeout(limit, g.leave()).await.is_err() {
                warn!("leaving the group timed out; the session will expire");
            }
        }
        self.client = None;
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
