//! The member's heartbeats: while it holds an assignment, while the consumer thread
//! gives partitions up, and the `max.poll.interval` check that makes it leave when the
//! consumer thread stops polling.

use std::time::{Duration, Instant};

use kafka_protocol::messages::HeartbeatRequest;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::Member;
use crate::group::coordinator::{check, GroupError};
use crate::group::membership::GroupEvent;
use crate::group::metadata_watch::MetadataWatch;

/// How often a member that left for a poll timeout looks whether polling resumed.
const POLL_RESUME_CHECK: Duration = Duration::from_millis(50);

/// Why the member stopped heartbeating.
pub(super) enum After {
    /// The group is rebalancing: hand the partitions back, then rejoin.
    Rebalance,
    /// The member is no longer in the generation it joined.
    Fenced { forget_member_id: bool },
    /// The consumer thread has not polled within `max.poll.interval`.
    PollTimeout,
    /// A fatal error was reported, or the source is gone: end the task.
    End,
}

impl Member {
    /// Waits until the consumer thread has committed and given up what it was asked
    /// to, heartbeating meanwhile (within the rebalance timeout): the coordinator waits
    /// that long for the rejoin, and a member that went quiet meanwhile would be
    /// expelled for its session instead. `false` when the task must end.
    pub(super) async fn await_consumer(&mut self, wait: oneshot::Receiver<()>) -> bool {
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
    pub(super) fn poll_expired(&self) -> bool {
        self.shared.poll_clock.since_last_poll() > self.settings.rebalance_timeout
    }

    /// The consumer thread stopped polling: leave the group (as Kafka defines
    /// `max.poll.interval.ms`), report the partitions lost, and wait for polling to
    /// resume before rejoining. `false` when the task must end.
    pub(super) async fn sit_out_poll_timeout(&mut self) -> bool {
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

    /// Heartbeats until the group must rebalance, the member is fenced, the consumer
    /// thread stops polling, or (for the leader, with `watch`) the subscribed topics'
    /// metadata no longer matches what it assigned from.
    pub(super) async fn heartbeat_until_change(
        &mut self,
        mut watch: Option<&mut MetadataWatch>,
    ) -> After {
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
                        if let Some(change) = watch.look(&self.control, patience).await {
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

    pub(super) async fn heartbeat(&mut self) -> Result<(), GroupError> {
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
}

/// Whether a heartbeat error says the member is no longer in its generation.
fn is_fencing(e: &GroupError) -> bool {
    matches!(
        e.code(),
        Some(ResponseError::IllegalGeneration | ResponseError::UnknownMemberId)
    )
}
