//! The member task, on the I/O thread: join, sync, heartbeat, hand revokes over to
//! the consumer thread (heartbeating meanwhile), leave when the consumer thread stops
//! polling for longer than `max.poll.interval`, and rejoin.
//!
//! Eager rebalancing revokes every partition before rejoining. Cooperative
//! rebalancing (KIP-429) rejoins owning its partitions and keeps consuming them; after
//! the sync it revokes only those missing from its new assignment, then rejoins once
//! more so that the group can give them to their new owner.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{GroupId, HeartbeatRequest, LeaveGroupRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::TopicPartition;
use rskafka::client::Client;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::conn::Conn;
use super::coordinator::{check, connect_coordinator, GroupError, GroupSettings};
use super::membership::{GroupEvent, Shared};
use super::metadata_watch::MetadataWatch;
use super::sync::{join_and_sync, Joined};
use crate::backoff::Backoff;

/// How often a member that left for a poll timeout looks whether polling resumed.
const POLL_RESUME_CHECK: Duration = Duration::from_millis(50);

/// Why the member stopped heartbeating.
enum After {
    /// The group is rebalancing: hand the partitions back, then rejoin.
    Rebalance,
    /// The member is no longer in the generation it joined.
    Fenced { forget_member_id: bool },
    /// The consumer thread has not polled within `max.poll.interval`.
    PollTimeout,
    /// A fatal error was reported, or the source is gone: end the task.
    End,
}

pub(super) struct Member {
    pub(super) settings: Arc<GroupSettings>,
    pub(super) client: Arc<Client>,
    tx: mpsc::UnboundedSender<GroupEvent>,
    shared: Arc<Shared>,
    pub(super) conn: Option<Conn>,
    pub(super) member_id: String,
    /// The partitions of the last assignment, and its generation (-1: none): what a
    /// cooperative member says it owns when it rejoins.
    pub(super) owned: Vec<TopicPartition>,
    pub(super) owned_generation: i32,
    backoff: Backoff,
}

impl Member {
    pub(super) fn new(
        settings: Arc<GroupSettings>,
        client: Arc<Client>,
        tx: mpsc::UnboundedSender<GroupEvent>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            backoff: Backoff::new(
                Duration::from_millis(200),
                settings.heartbeat_interval.max(Duration::from_secs(1)),
            ),
            settings,
            client,
            tx,
            shared,
            conn: None,
            member_id: String::new(),
            owned: Vec::new(),
            owned_generation: -1,
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
        // The generation held before the last rebalance, if it was an orderly one.
        let mut before_rebalance: Option<i32> = None;
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
            if before_rebalance.take() == Some(identity.generation) {
                // A rebalance always moves the generation on; a coordinator that kept
                // it (Tansu 0.6 after a member's session expired) also kept the old
                // assignment and a leader that is gone. Leave and join afresh, which
                // makes it elect a leader among the live members.
                warn!(group = %self.settings.group_id, generation = identity.generation, "the coordinator kept the generation across a rebalance; leaving and rejoining as a new member");
                self.leave_group().await;
                if !self.forget_owned() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
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
                before_rebalance = Some(generation);
                continue;
            }
            match self.heartbeat_until_change(watch.as_mut()).await {
                After::Rebalance if cooperative => {
                    info!(group = %self.settings.group_id, "cooperative rebalance: rejoining, still consuming every owned partition");
                    before_rebalance = Some(generation);
                }
                After::Rebalance => {
                    info!(group = %self.settings.group_id, "rebalance: committing and revoking before rejoining");
                    let (done, wait) = oneshot::channel();
                    if !self.tell(GroupEvent::Revoke { done }) || !self.await_consumer(wait).await {
                        return;
                    }
                    self.shared.set_identity(None);
                    self.owned.clear();
                    before_rebalance = Some(generation);
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

    /// Waits until the consumer thread has committed and given up what it was asked
    /// to, heartbeating meanwhile (within the rebalance timeout): the coordinator waits
    /// that long for the rejoin, and a member that went quiet meanwhile would be
    /// expelled for its session instead. `false` when the task must end.
    async fn await_consumer(&mut self, wait: oneshot::Receiver<()>) -> bool {
        let deadline = tokio::time::sleep(self.settings.rebalance_timeout);
        tokio::pin!(deadline, wait);
        loop {
            tokio::select! {
                biased;
                _ = &mut wait => break,
                () = &mut deadline => {
                    warn!(group = %self.settings.group_id, rebalance_timeout = ?self.settings.rebalance_timeout, "the consumer thread did not give its partitions up within the rebalance timeout (max.poll.interval.ms); rejoining without them");
                    break;
                }
                () = tokio::time::sleep(self.settings.heartbeat_interval) => {
                    match self.heartbeat().await {
                        Ok(()) => {}
                        Err(e) if e.code() == Some(ResponseError::RebalanceInProgress) => {}
                        Err(e) if e.is_fatal() => return self.report_fatal(e, "heartbeat"),
                        Err(e) if is_fencing(&e) => {
                            // The commit before the revoke will be refused; say so now.
                            warn!(group = %self.settings.group_id, error = %e, "fenced while revoking: the partitions are lost");
                            self.shared.set_identity(None);
                            if e.code() == Some(ResponseError::UnknownMemberId) {
                                self.member_id.clear();
                            }
                        }
                        Err(e) => debug!(error = %e, "heartbeat while revoking failed"),
                    }
                }
            }
        }
        true
    }

    /// Whether the consumer thread has gone longer than `max.poll.interval` without
    /// polling.
    fn poll_expired(&self) -> bool {
        self.shared.poll_clock.since_last_poll() > self.settings.rebalance_timeout
    }

    /// The consumer thread stopped polling: leave the group (as Kafka defines
    /// `max.poll.interval.ms`), report the partitions lost, and wait for polling to
    /// resume before rejoining. `false` when the task must end.
    async fn sit_out_poll_timeout(&mut self) -> bool {
        let stuck = self.shared.poll_clock.since_last_poll();
        warn!(
            group = %self.settings.group_id,
            setting = "max.poll.interval.ms",
            max_poll_interval = ?self.settings.rebalance_timeout,
            ?stuck,
            "the consumer thread has not polled for {stuck:?}, longer than max.poll.interval.ms ({:?}): leaving the group; its partitions are lost, and it rejoins when polling resumes",
            self.settings.rebalance_timeout
        );
        self.leave_group().await;
        if !self.forget_owned() {
            return false;
        }
        while self.poll_expired() {
            if self.tx.is_closed() {
                return false;
            }
            tokio::time::sleep(POLL_RESUME_CHECK).await;
        }
        info!(group = %self.settings.group_id, "the consumer thread polls again: rejoining");
        true
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
            if !self.tell(GroupEvent::Failed(e.into_source_error("joining the group"))) {
                return false;
            }
        }
        tokio::time::sleep(delay).await;
        true
    }

    /// Heartbeats until the group must rebalance, the member is fenced, the consumer
    /// thread stops polling, or (for the leader, with `watch`) the subscribed topics'
    /// metadata no longer matches what it assigned from.
    async fn heartbeat_until_change(&mut self, mut watch: Option<&mut MetadataWatch>) -> After {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.settings.heartbeat_interval).await;
            if self.poll_expired() {
                return After::PollTimeout;
            }
            let e = match self.heartbeat().await {
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
                    continue;
                }
                Err(e) => e,
            };
            match e.code() {
                Some(ResponseError::RebalanceInProgress) => return After::Rebalance,
                _ if e.is_fatal() => {
                    self.report_fatal(e, "heartbeat");
                    return After::End;
                }
                Some(ResponseError::IllegalGeneration) => {
                    return After::Fenced {
                        forget_member_id: false,
                    }
                }
                Some(ResponseError::UnknownMemberId) => {
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
                    if !self.tell(GroupEvent::Failed(e.into_source_error("heartbeat"))) {
                        return After::End;
                    }
                }
            }
        }
    }

    async fn heartbeat(&mut self) -> Result<(), GroupError> {
        let Some(identity) = self.shared.identity() else {
            return Err(GroupError::Broker {
                request: "Heartbeat",
                error: ResponseError::UnknownMemberId,
            });
        };
        let mut conn = self.take_conn().await?;
        conn.set_request_timeout(self.settings.session_timeout);
        let result = async {
            let version = conn.version::<HeartbeatRequest>()?;
            let request = HeartbeatRequest::default()
                .with_group_id(self.group_id())
                .with_generation_id(identity.generation)
                .with_member_id(StrBytes::from_string(identity.member_id))
                .with_group_instance_id(self.instance_id().filter(|_| version >= 3));
            let r = conn.send_at(&request, version).await?;
            check("Heartbeat", r.error_code)
        }
        .await;
        self.put_back(conn, &result);
        result
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

/// Whether a heartbeat error says the member is no longer in its generation.
fn is_fencing(e: &GroupError) -> bool {
    matches!(
        e.code(),
        Some(ResponseError::IllegalGeneration | ResponseError::UnknownMemberId)
    )
}
