//! The member's background task: join, sync, heartbeat, and rejoin on rebalances,
//! reporting assignment changes to the source as [`GroupEvent`]s.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::{SourceError, TopicPartition};
use rskafka::client::Client;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::conn::Conn;
use super::coordinator::{check, connect_coordinator, GroupError, GroupSettings};
use super::metadata_watch::MetadataWatch;
use super::offsets::CommitIdentity;
use super::sync::{join_and_sync, Joined};
use crate::backoff::Backoff;
use crate::BACKEND;

const HEARTBEAT_VERSION: i16 = 3;
const LEAVE_GROUP_VERSION: i16 = 3;

/// An assignment change, for the source to act on at its next poll.
#[derive(Debug)]
pub(crate) enum GroupEvent {
    /// The group (re)formed and gave this member these partitions.
    Assigned {
        identity: CommitIdentity,
        partitions: Vec<TopicPartition>,
    },
    /// A rebalance started: commit the owned partitions' stored positions, give them up,
    /// then answer on `done` so the member rejoins.
    Revoke { done: oneshot::Sender<()> },
    /// The member was fenced or its session expired: its partitions are gone, and its
    /// commits would be refused (or, on brokers that do not check, would be wrong).
    Lost,
    /// A group request failed; retried by the task itself.
    Failed(SourceError),
}

/// Who this member is in the group, as commits must say, and whether it still owns
/// its assignment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Membership {
    identity: Option<CommitIdentity>,
}

type Shared = Arc<Mutex<Membership>>;

fn set_identity(shared: &Shared, identity: Option<CommitIdentity>) {
    shared
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .identity = identity;
}

/// The source's end of the member task.
#[derive(Debug)]
pub(crate) struct GroupHandle {
    events: mpsc::UnboundedReceiver<GroupEvent>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
    task: JoinHandle<()>,
    shared: Shared,
}

impl GroupHandle {
    /// Starts the member task.
    pub(crate) fn spawn(settings: Arc<GroupSettings>, client: Arc<Client>) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let (leave, leave_rx) = oneshot::channel();
        let shared = Shared::default();
        let member = Member {
            backoff: Backoff::new(
                Duration::from_millis(200),
                settings.heartbeat_interval.max(Duration::from_secs(1)),
            ),
            settings,
            client,
            tx,
            shared: Arc::clone(&shared),
            conn: None,
            member_id: String::new(),
        };
        Self {
            events,
            leave: Some(leave),
            task: tokio::spawn(member.run(leave_rx)),
            shared,
        }
    }

    /// The next event; `None` when the task has ended. Cancel-safe.
    pub(crate) async fn next_event(&mut self) -> Option<GroupEvent> {
        self.events.recv().await
    }

    /// The identity to commit with, while this member owns its assignment.
    pub(crate) fn commit_identity(&self) -> Option<CommitIdentity> {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .identity
            .clone()
    }

    /// Leaves the group and ends the task.
    pub(crate) async fn leave(&mut self) {
        set_identity(&self.shared, None);
        if let Some(leave) = self.leave.take() {
            let (done, wait) = oneshot::channel();
            if leave.send(done).is_ok() {
                let _ = wait.await;
            }
        }
        self.task.abort();
    }

    /// Ends the task without leaving the group, as a crash would.
    pub(crate) fn abandon(&mut self) {
        set_identity(&self.shared, None);
        self.leave = None;
        self.task.abort();
    }
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the member stopped heartbeating.
enum After {
    Rebalance,
    Fenced { forget_member_id: bool },
}

pub(super) struct Member {
    pub(super) settings: Arc<GroupSettings>,
    pub(super) client: Arc<Client>,
    tx: mpsc::UnboundedSender<GroupEvent>,
    shared: Shared,
    pub(super) conn: Option<Conn>,
    pub(super) member_id: String,
    backoff: Backoff,
}

impl Member {
    async fn run(mut self, leave: oneshot::Receiver<oneshot::Sender<()>>) {
        let reply = tokio::select! {
            biased;
            reply = leave => reply.ok(),
            () = self.membership() => None,
        };
        self.leave_group().await;
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    pub(super) fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.settings.group_id.clone()))
    }

    /// The connection, taken out for one exchange: a cancelled exchange drops it.
    pub(super) async fn take_conn(&mut self) -> Result<Conn, GroupError> {
        match self.conn.take() {
            Some(c) => Ok(c),
            None => connect_coordinator(&self.settings).await,
        }
    }

    pub(super) fn put_back<T>(&mut self, conn: Conn, result: &Result<T, GroupError>) {
        if !matches!(result, Err(e) if e.needs_rediscovery()) {
            self.conn = Some(conn);
        }
    }

    /// Joins, syncs and heartbeats for ever; returns only if the source is gone.
    async fn membership(&mut self) {
        // The generation held before the last rebalance, if it was an orderly one.
        let mut before_rebalance: Option<i32> = None;
        loop {
            let Joined {
                identity,
                partitions,
                mut watch,
            } = match join_and_sync(self).await {
                Ok(joined) => joined,
                Err(e) => {
                    if !self.on_join_error(e).await {
                        return;
                    }
                    continue;
                }
            };
            if before_rebalance.take() == Some(identity.generation) {
                // A rebalance always moves the generation on; a coordinator that kept
                // it (Tansu 0.6 after a member's session expired) also kept the old
                // assignment and a leader that is gone. Leave and join afresh, which
                // makes it elect a leader among the live members.
                warn!(group = %self.settings.group_id, generation = identity.generation, "the coordinator kept the generation across a rebalance; leaving and rejoining as a new member");
                self.leave_group().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            self.backoff.reset();
            info!(group = %self.settings.group_id, generation = identity.generation, member = %identity.member_id, ?partitions, "joined the group");
            if let Some(missing) = watch.as_ref().map(MetadataWatch::missing) {
                if !missing.is_empty() {
                    // Said once per rebalance: the leader's watch rejoins when they appear.
                    let message = format!("subscribed topics {missing:?} do not exist: none of their partitions is assigned until they do");
                    warn!(group = %self.settings.group_id, "{message}");
                    if self
                        .tx
                        .send(GroupEvent::Failed(SourceError::transient(BACKEND, message)))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            let generation = identity.generation;
            set_identity(&self.shared, Some(identity.clone()));
            if self
                .tx
                .send(GroupEvent::Assigned {
                    identity,
                    partitions,
                })
                .is_err()
            {
                return;
            }
            match self.heartbeat_until_change(watch.as_mut()).await {
                After::Rebalance => {
                    info!(group = %self.settings.group_id, "rebalance: committing and revoking before rejoining");
                    let (done, wait) = oneshot::channel();
                    if self.tx.send(GroupEvent::Revoke { done }).is_err() {
                        return;
                    }
                    let _ = tokio::time::timeout(self.settings.rebalance_timeout, wait).await;
                    set_identity(&self.shared, None);
                    before_rebalance = Some(generation);
                }
                After::Fenced { forget_member_id } => {
                    warn!(group = %self.settings.group_id, "fenced or session expired: partitions lost");
                    set_identity(&self.shared, None);
                    if forget_member_id {
                        self.member_id.clear();
                    }
                    if self.tx.send(GroupEvent::Lost).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Handles a failed join; `false` when the task must end.
    async fn on_join_error(&mut self, e: GroupError) -> bool {
        let quiet = matches!(
            e.code(),
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration)
        );
        if e.code() == Some(ResponseError::UnknownMemberId) {
            self.member_id.clear();
        }
        let delay = if quiet {
            Duration::from_millis(200)
        } else {
            self.backoff.next_delay()
        };
        if quiet {
            debug!(error = %e, "rejoining");
        } else {
            warn!(error = %e, retry_in = ?delay, "joining the group failed");
            let error = e.into_source_error("joining the group");
            let fatal = !error.is_transient();
            if self.tx.send(GroupEvent::Failed(error)).is_err() || fatal {
                return false;
            }
        }
        tokio::time::sleep(delay).await;
        true
    }

    /// Heartbeats until the group must rebalance, or (for the leader, with `watch`)
    /// the subscribed topics' metadata no longer matches what it assigned from.
    async fn heartbeat_until_change(&mut self, mut watch: Option<&mut MetadataWatch>) -> After {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.settings.heartbeat_interval).await;
            match self.heartbeat().await {
                Ok(()) => {
                    last_ok = Instant::now();
                    // Bounded by the heartbeat interval, so a slow metadata answer
                    // never costs the session.
                    let patience = self.settings.heartbeat_interval;
                    if let Some(watch) = watch.as_deref_mut() {
                        if let Some(change) = watch.look(&self.client, patience).await {
                            info!(group = %self.settings.group_id, %change, "the subscribed topics changed: rejoining so the group is assigned anew");
                            return After::Rebalance;
                        }
                    }
                }
                Err(e) => match e.code() {
                    Some(ResponseError::RebalanceInProgress) => return After::Rebalance,
                    Some(ResponseError::IllegalGeneration) => {
                        return After::Fenced {
                            forget_member_id: false,
                        }
                    }
                    Some(ResponseError::UnknownMemberId | ResponseError::FencedInstanceId) => {
                        return After::Fenced {
                            forget_member_id: true,
                        }
                    }
                    _ => {
                        warn!(error = %e, "heartbeat failed");
                        if last_ok.elapsed() >= self.settings.session_timeout {
                            // Our own clock says the session is over, not the
                            // coordinator: keep the member id, as the Java consumer
                            // does, and let the coordinator decide. One that expired us
                            // answers UNKNOWN_MEMBER_ID to the rejoin, which clears it.
                            // Tansu 0.6 instead accepts the old id as a new member, and
                            // only that id can re-form the group: when the broker was
                            // frozen past the session timeout, the expired member stays
                            // recorded as leader, so a fresh id would be a follower
                            // waiting for a leader that never comes (every SyncGroup
                            // REBALANCE_IN_PROGRESS).
                            return After::Fenced {
                                forget_member_id: false,
                            };
                        }
                        let error = e.into_source_error("heartbeat");
                        if self.tx.send(GroupEvent::Failed(error)).is_err() {
                            return After::Fenced {
                                forget_member_id: false,
                            };
                        }
                    }
                },
            }
        }
    }

    async fn heartbeat(&mut self) -> Result<(), GroupError> {
        let Some(identity) = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .identity
            .clone()
        else {
            return Err(GroupError::Broker {
                request: "Heartbeat",
                error: ResponseError::UnknownMemberId,
            });
        };
        let request = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(identity.generation)
            .with_member_id(StrBytes::from_string(identity.member_id));
        let mut conn = self.take_conn().await?;
        conn.set_request_timeout(self.settings.session_timeout);
        let result = match conn.send(&request, HEARTBEAT_VERSION).await {
            Ok(r) => check("Heartbeat", r.error_code),
            Err(e) => Err(e.into()),
        };
        self.put_back(conn, &result);
        result
    }

    async fn leave_group(&mut self) {
        set_identity(&self.shared, None);
        if self.member_id.is_empty() {
            return;
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(self.group_id())
            .with_members(vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))]);
        let result = async {
            let mut conn = self.take_conn().await?;
            conn.set_request_timeout(self.settings.connect_timeout);
            let r = conn.send(&request, LEAVE_GROUP_VERSION).await?;
            check("LeaveGroup", r.error_code)
        }
        .await;
        match result {
            Ok(()) => {
                info!(group = %self.settings.group_id, member = %self.member_id, "left the group")
            }
            Err(e) => warn!(error = %e, "leaving the group failed; the session will expire"),
        }
        self.member_id.clear();
    }
}

/// A protocol entry for JoinGroup.
pub(super) fn protocol(name: &'static str, metadata: bytes::Bytes) -> JoinGroupRequestProtocol {
    JoinGroupRequestProtocol::default()
        .with_name(StrBytes::from_static_str(name))
        .with_metadata(metadata)
}

/// A JoinGroup request for `member_id`.
pub(super) fn join_request(
    m: &Member,
    protocols: Vec<JoinGroupRequestProtocol>,
) -> JoinGroupRequest {
    let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    JoinGroupRequest::default()
        .with_group_id(m.group_id())
        .with_session_timeout_ms(millis(m.settings.session_timeout))
        .with_rebalance_timeout_ms(millis(m.settings.rebalance_timeout))
        .with_member_id(StrBytes::from_string(m.member_id.clone()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(protocols)
}
