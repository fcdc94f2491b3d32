//! A consumer of the mock cluster, implementing `MessageSource`.

use std::time::{Duration, Instant};

use ktm_core::{
    async_trait, MessageSource, OffsetReset, Offsets, PollBatch, SourceError, SourceEvent,
    TopicPartition,
};

use crate::cluster::{ClusterState, MockCluster};
use crate::group::{Group, Member, MemberId};

const BACKEND: &str = "mock";

mod builder;

pub use builder::MockSourceBuilder;
pub(crate) use builder::Mode;

struct Held {
    tp: TopicPartition,
    position: i64,
    /// Paused by the manager: not fetched until resumed; forgotten with the partition.
    paused: bool,
}

/// A consumer of a [`MockCluster`]: group member (or fixed assignment), with positions,
/// stored offsets and commits. Dropping it without [`close`](MessageSource::close) is a
/// crash: the group evicts it only after the session timeout.
pub struct MockSource {
    pub(crate) cluster: MockCluster,
    pub(crate) group: String,
    pub(crate) mode: Mode,
    reset: OffsetReset,
    max_batch: usize,
    member: Option<MemberId>,
    generation_seen: u64,
    held: Vec<Held>,
    stored: Offsets,
    closed: bool,
}

impl MockSource {
    /// The partitions this consumer reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.held.iter().map(|h| h.tp.clone()).collect()
    }

    /// Partitions this consumer holds and has paused.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.held
            .iter()
            .filter(|h| h.paused)
            .map(|h| h.tp.clone())
            .collect()
    }

    fn set_paused(&mut self, partitions: &[TopicPartition], paused: bool) {
        for h in &mut self.held {
            if partitions.contains(&h.tp) {
                h.paused = paused;
            }
        }
    }

    /// Brings membership and assignment up to date, pushing the events it causes.
    fn sync_assignment(
        &mut self,
        st: &mut ClusterState,
        batch: &mut PollBatch,
    ) -> Result<(), SourceError> {
        let topics = match &self.mode {
            Mode::Assign(tps) => {
                if self.held.is_empty() && self.generation_seen == 0 {
                    self.generation_seen = 1;
                    st.groups.entry(self.group.clone()).or_default();
                    let mut assigned = Vec::new();
                    for tp in tps.clone() {
                        let position = start_position(st, &self.group, &tp, self.reset)?;
                        assigned.push(tp.clone());
                        self.held.push(Held {
                            tp,
                            position,
                            paused: false,
                        });
                    }
                    batch.push_event(SourceEvent::Assigned(assigned));
                }
                return Ok(());
            }
            Mode::Subscribe(topics) => topics.clone(),
            Mode::Pattern(pattern) => crate::preflight::matching(st, pattern),
        };
        if let Some(error) = st.refused_groups.get(&self.group) {
            return Err(SourceError::fatal(
                BACKEND,
                format!("group {:?} refused: {error}", self.group),
            ));
        }
        let session_timeout = st.session_timeout;
        let group = st.groups.entry(self.group.clone()).or_default();
        let mut must_rebalance = group.evict_expired(session_timeout, self.member);
        let id = match self.member.filter(|id| group.members.contains_key(id)) {
            Some(id) => id,
            None => {
                if self.member.is_some() {
                    // Evicted while not polling: the partitions went to others uncommitted.
                    let lost = self.assignment();
                    self.held.clear();
                    self.stored.clear();
                    tracing::warn!(group = %self.group, "mock consumer was evicted; rejoining");
                    batch.push_event(SourceEvent::Lost(lost));
                }
                let id = st.next_member;
                st.next_member += 1;
                let group = st.groups.entry(self.group.clone()).or_default();
                group.members.insert(
                    id,
                    Member {
                        topics,
                        target: Vec::new(),
                        last_seen: Instant::now(),
                    },
                );
                self.member = Some(id);
                must_rebalance = true;
                id
            }
        };
        if must_rebalance {
            st.rebalance(&self.group);
            self.cluster.inner.changed.notify_waiters();
        }
        let group = st.groups.entry(self.group.clone()).or_default();
        if let Some(me) = group.members.get_mut(&id) {
            me.last_seen = Instant::now();
        }
        if self.generation_seen != group.generation {
            self.revoke_all(group, id, batch);
            self.generation_seen = group.generation;
        }
        self.acquire_targets(st, id, batch)
    }

    /// Eager revoke: commit the stored position of every held partition, release it.
    fn revoke_all(&mut self, group: &mut Group, id: MemberId, batch: &mut PollBatch) {
        if self.held.is_empty() {
            return;
        }
        let revoked = self.assignment();
        for tp in &revoked {
            if let Some(position) = self.stored.remove(tp) {
                group.commit(tp.clone(), position);
            }
            if group.owners.get(tp) == Some(&id) {
                group.owners.remove(tp);
            }
        }
        self.held.clear();
        batch.push_event(SourceEvent::Revoked(revoked));
        self.cluster.inner.changed.notify_waiters();
    }

    /// Takes each target partition once its previous owner has released it.
    fn acquire_targets(
        &mut self,
        st: &mut ClusterState,
        id: MemberId,
        batch: &mut PollBatch,
    ) -> Result<(), SourceError> {
        let targets = st
            .groups
            .get(&self.group)
            .and_then(|g| g.members.get(&id))
            .map(|m| m.target.clone())
            .unwrap_or_default();
        let mut assigned = Vec::new();
        for tp in targets {
            if self.held.iter().any(|h| h.tp == tp) {
                continue;
            }
            let free = st
                .groups
                .get(&self.group)
                .is_some_and(|g| g.owners.get(&tp).is_none_or(|o| *o == id));
            if !free {
                continue;
            }
            let position = start_position(st, &self.group, &tp, self.reset)?;
            if let Some(g) = st.groups.get_mut(&self.group) {
                g.owners.insert(tp.clone(), id);
            }
            assigned.push(tp.clone());
            self.held.push(Held {
                tp,
                position,
                paused: false,
            });
        }
        if !assigned.is_empty() {
            batch.push_event(SourceEvent::Assigned(assigned));
        }
        Ok(())
    }

    /// Moves up to `max_batch` records from the held partitions into `batch`, taking
    /// from each in turn so no partition starves.
    fn fetch(&mut self, st: &ClusterState, batch: &mut PollBatch) -> Result<(), SourceError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let share = (self.max_batch / self.held.len()).max(1);
        let mut room = self.max_batch;
        for h in &mut self.held {
            if room == 0 {
                break;
            }
            if h.paused {
                continue;
            }
            let Some(log) = st.log(&h.tp) else { continue };
            if h.position < log.start || h.position > log.end() {
                let reset_to = match self.reset {
                    OffsetReset::Earliest => log.start,
                    OffsetReset::Latest => log.end(),
                    _ => {
                        return Err(SourceError::fatal(
                            BACKEND,
                            format!(
                                "offset {} of {} is out of range [{}, {}] and offset reset is none",
                                h.position,
                                h.tp,
                                log.start,
                                log.end()
                            ),
                        ))
                    }
                };
                tracing::warn!(tp = %h.tp, position = h.position, reset_to, "offset out of range; applying the reset policy");
                h.position = reset_to;
            }
            batch.set_high_watermark(h.tp.clone(), log.end());
            let from = (h.position - log.start) as usize;
            let take = share.min(room).min(log.records.len() - from);
            for m in &log.records[from..from + take] {
                batch.push(m.clone());
            }
            h.position += take as i64;
            room -= take;
        }
        Ok(())
    }
}

fn start_position(
    st: &ClusterState,
    group: &str,
    tp: &TopicPartition,
    reset: OffsetReset,
) -> Result<i64, SourceError> {
    let committed = st
        .groups
        .get(group)
        .and_then(|g| g.committed.get(tp))
        .copied();
    if let Some(c) = committed {
        return Ok(c);
    }
    let log = st
        .log(tp)
        .ok_or_else(|| SourceError::fatal(BACKEND, format!("unknown partition {tp}")))?;
    match reset {
        OffsetReset::Earliest => Ok(log.start),
        OffsetReset::Latest => Ok(log.end()),
        _ => Err(SourceError::fatal(
            BACKEND,
            format!("no committed offset for {tp} in group {group:?} and offset reset is none"),
        )),
    }
}

#[async_trait]
impl MessageSource for MockSource {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError> {
        if self.closed {
            return Err(SourceError::fatal(BACKEND, "poll after close"));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let inner = std::sync::Arc::clone(&self.cluster.inner);
        loop {
            // Registered before looking, so a produce in between still wakes us.
            let notified = inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = inner.state();
                self.sync_assignment(&mut st, batch)?;
                self.fetch(&st, batch)?;
            }
            // Nothing below awaits once the batch holds something: cancel-safe.
            if !batch.is_empty() {
                return Ok(());
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
    }

    fn group_id(&self) -> Option<&str> {
        Some(&self.group)
    }

    async fn describe(&mut self) -> Result<ktm_core::SourceDescription, SourceError> {
        Ok(self.description())
    }

    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.set_paused(partitions, true);
        Ok(())
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.set_paused(partitions, false);
        self.cluster.inner.changed.notify_waiters();
        Ok(())
    }

    fn store(&mut self, positions: &Offsets) {
        for (tp, position) in positions.iter() {
            if self.held.iter().any(|h| &h.tp == tp) {
                self.stored.insert(tp.clone(), position);
            }
        }
    }

    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError> {
        let mut st = self.cluster.inner.state();
        let group = st.groups.entry(self.group.clone()).or_default();
        if let Some(id) = self.member {
            if !group.members.contains_key(&id) {
                return Err(SourceError::transient(
                    BACKEND,
                    "unknown member id: evicted from the group",
                ));
            }
            // Kafka rejects a commit naming partitions the member does not own.
            if let Some((tp, _)) = positions
                .iter()
                .find(|(tp, _)| group.owners.get(*tp) != Some(&id))
            {
                return Err(SourceError::transient(
                    BACKEND,
                    format!("cannot commit {tp}: not owned by this member (rebalance in progress)"),
                ));
            }
        }
        for (tp, position) in positions.iter() {
            group.commit(tp.clone(), position);
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.closed = true;
        if let Some(id) = self.member.take() {
            let mut st = self.cluster.inner.state();
            let group = st.groups.entry(self.group.clone()).or_default();
            group.remove_member(id);
            if !group.members.is_empty() {
                st.rebalance(&self.group);
            }
            drop(st);
            self.cluster.inner.changed.notify_waiters();
        }
        self.held.clear();
        Ok(())
    }
}
