//! The member task, on the I/O thread: join, sync, heartbeat, hand revokes over to
//! the consumer thread (heartbeating meanwhile), leave when the consumer thread stops
//! polling for longer than `max.poll.interval`, and rejoin.
//!
//! Eager rebalancing revokes every partition before rejoining. Cooperative
//! rebalancing (KIP-429) rejoins owning its partitions and keeps consuming them; after
//! the sync it revokes only those missing from its new assignment, then rejoins once
//! more so that the group can give them to their new owner.

mod heartbeat;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{GroupId, LeaveGroupRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::TopicPartition;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::control::SharedControl;
use super::coordinator::{check, connect_coordinator, GroupError, GroupSettings};
use super::membership::{GroupEvent, Shared};
use super::metadata_watch::MetadataWatch;
use super::sync::{join_and_sync, Joined};
use crate::backoff::Backoff;
use crate::wire::conn::Conn;
use heartbeat::After;

pub(super) struct Member {
    pub(super) settings: Arc<GroupSettings>,
    /// For the leader's Metadata requests.
    pub(super) control: SharedControl,
    tx: mpsc::UnboundedSender<GroupEvent>,
    shared: Arc<Shared>,
    pub(super) conn: Option<Conn>,
    pub(super) member_id: String,
    /// The partitions of the last assignment, and its generation (-1: none): what a
    /// cooperative member says it owns when it rejoins.
    pub(super) owned: Vec<TopicPartition>,
    pub(super) owned_generation: i32,
    /// A generation the next join must move past: the one held before a rebalance, or
    /// one whose sync the coordinator refused.
    pub(super) stale_generation: Option<i32>,
    backoff: Backoff,
}

impl Member {
    pub(super) fn new(
        settings: Arc<GroupSettings>,
        control: SharedControl,
        tx: mpsc::UnboundedSender<GroupEvent>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            backoff: Backoff::new(
                Duration::from_millis(200),
                settings.heartbeat_interval.max(Duration::from_secs(1)),
            ),
            settings,
            control,
            tx,
            shared,
            conn: None,
            member_id: String::new(),
            owned: Vec::new(),
            owned_generation: -1,
            stale_generation: None,
        }
    }

    pub(super) async fn run(mut self, leave: oneshot::Receiver<oneshot::Sender<()>>) {
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

    /// The static instance id, if this is a static member.
    pub(super) fn instance_id(&self) -> Option<StrBytes> {
        self.settings
            .group_instance_id
            .as_ref()
            .map(|id| StrBytes::from_string(id.clone()))
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

    /// Sends `event` to the source; `false` when the source is gone.
    fn tell(&self, event: GroupEvent) -> bool {
        self.tx.send(event).is_ok()
    }

    /// Joins, syncs and heartbeats for ever; returns when the source is gone or a
    /// fatal error was reported.
    async fn membership(&mut self) {
        loop {
            if self.poll_expired() && !self.sit_out_poll_timeout().await {
                return;
            }
            let Joined {
                identity,
                partitions,
                cooperative,
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
            self.backoff.reset();
            info!(group = %self.settings.group_id, generation = identity.generation, member = %identity.member_id, ?partitions, cooperative, "joined the group");
            if !self.warn_missing_topics(watch.as_ref()) {
                return;
            }
            let generation = identity.generation;
            let kept: BTreeSet<&TopicPartition> = partitions.iter().collect();
            let revoking = self.owned.iter().any(|tp| !kept.contains(tp));
            self.shared.set_identity(Some(identity.clone()));
            self.owned.clone_from(&partitions);
            self.owned_generation = generation;
            let (done, wait) = oneshot::channel();
            if !self.tell(GroupEvent::Assigned {
                identity,
                partitions,
                done: revoking.then_some(done),
            }) {
                return;
            }
            if revoking {
                // Cooperative: the partitions missing from the assignment are revoked
                // now; rejoin once they are, so that their new owner gets them.
                info!(group = %self.settings.group_id, "cooperative rebalance: revoking the partitions that move, then rejoining");
                if !self.await_consumer(wait).await {
                    return;
                }
                self.stale_generation = Some(generation);
                continue;
            }
            match self.heartbeat_until_change(watch.as_mut()).await {
                After::Rebalance if cooperative => {
                    info!(group = %self.settings.group_id, "cooperative rebalance: rejoining, still consuming every owned partition");
                    self.stale_generation = Some(generation);
                }
                After::Rebalance => {
                    info!(group = %self.settings.group_id, "rebalance: committing and revoking before rejoining");
                    let (done, wait) = oneshot::channel();
                    if !self.tell(GroupEvent::Revoke { done }) || !self.await_consumer(wait).await {
                        return;
                    }
                    self.shared.set_identity(None);
                    self.owned.clear();
                    self.stale_generation = Some(generation);
                }
                After::Fenced { forget_member_id } => {
                    warn!(group = %self.settings.group_id, "fenced or session expired: partitions lost");
                    if forget_member_id {
                        self.member_id.clear();
                    }
                    if !self.forget_owned() {
                        return;
                    }
                }
                After::PollTimeout => {
                    if !self.sit_out_poll_timeout().await {
                        return;
                    }
                }
                After::End => return,
            }
        }
    }

    /// The member no longer owns its partitions (fenced, expired, or it left): no
    /// commit may go out for them, and the consumer thread reports them lost. `false`
    /// when the source is gone.
    fn forget_owned(&mut self) -> bool {
        self.shared.set_identity(None);
        self.owned.clear();
        self.owned_generation = -1;
        self.tell(GroupEvent::Lost)
    }

    /// Says once per rebalance which subscribed topics do not exist (the leader's
    /// watch rejoins when they appear); `false` when the source is gone.
    fn warn_missing_topics(&self, watch: Option<&MetadataWatch>) -> bool {
        let Some(missing) = watch.map(MetadataWatch::missing) else {
            return true;
        };
        if missing.is_empty() {
            return true;
        }
        let message = format!("subscribed topics {missing:?} do not exist: none of their partitions is assigned until they do");
        warn!(group = %self.settings.group_id, "{message}");
        self.tell(GroupEvent::Failed(ktm_core::SourceError::transient(
            crate::BACKEND,
            message,
        )))
    }

    /// Reports a fatal error; the task ends (`false`).
    fn report_fatal(&self, e: GroupError, context: &str) -> bool {
        warn!(group = %self.settings.group_id, error = %e, "{context} failed for good");
        let _ = self.tell(GroupEvent::Failed(e.into_source_error(context)));
        false
    }

    /// Handles a failed join; `false` when the task must end.
    async fn on_join_error(&mut self, e: GroupError) -> bool {
        if e.is_fatal() {
            return self.report_fatal(e, "joining the group");
        }
        if let GroupError::KeptGeneration { generation } = e {
            // A coordinator that kept the generation (Tansu 0.6, after a member's
            // session expired) also kept the old assignment and a leader that is gone,
            // so no sync would ever succeed. Leave while still a member of it and join
            // afresh, which makes it elect a leader among the live members.
            warn!(group = %self.settings.group_id, generation, "the coordinator kept the generation across a rebalance; leaving and rejoining as a new member");
            self.leave_group().await;
            if !self.owned.is_empty() && !self.forget_owned() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            return true;
        }
        let quiet = matches!(
            e.code(),
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration)
        );
        if e.code() == Some(ResponseError::UnknownMemberId) {
            // Leave under the old id before joining afresh. On Kafka the coordinator
            // already forgot it and answers UNKNOWN_MEMBER_ID, changing nothing; Tansu
            // 0.6 can keep an expired member as the group's leader, so that every
            // follower's SyncGroup fails for ever, and only a leave makes it elect a
            // live leader.
            self.leave_group().await;
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
            if !self.tell(GroupEvent::Failed(e.into_source_error("joining the group"))) {
                return false;
            }
        }
        tokio::time::sleep(delay).await;
        true
    }

    /// Leaves the group, if a dynamic member of it. A static member does not: its
    /// session expires, unless it comes back first, which is the point of it (as in
    /// Java and librdkafka).
    async fn leave_group(&mut self) {
        self.shared.set_identity(None);
        if self.member_id.is_empty() || self.settings.group_instance_id.is_some() {
            return;
        }
        let result = async {
            let mut conn = self.take_conn().await?;
            conn.set_request_timeout(self.settings.connect_timeout);
            let version = conn.version::<LeaveGroupRequest>()?;
            // Up to v2, which names the member (see the version table in conn.rs).
            let request = LeaveGroupRequest::default()
                .with_group_id(self.group_id())
                .with_member_id(StrBytes::from_string(self.member_id.clone()));
            let r = conn.send_at(&request, version).await?;
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
