//! One broker's fetch task: one connection, one Fetch request at a time covering every
//! fetchable partition the broker leads, ListOffsets for partitions whose position
//! must be settled first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use ktm_core::{SourceError, TopicPartition};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::apply::{apply_ranges, apply_response, Applied};
use super::list_offsets::log_ranges;
use super::session::{Request, Session, Wanted};
use super::state::{Position, Shared};
use crate::backoff::Backoff;
use crate::wire::{Conn, ConnError};
use crate::{source_error, BACKEND};

/// What a broker task does next, read from the shared state.
#[derive(Debug, Default)]
struct Plan {
    /// Partitions whose position must be settled from the log's range first, with
    /// the leader epoch they were assigned under.
    settle: Vec<(TopicPartition, i32)>,
    /// Fetchable partitions: not paused, position known.
    fetch: BTreeMap<TopicPartition, Wanted>,
    /// The prefetch budget is spent: wait for the consumer before fetching.
    budget_spent: bool,
    /// `fetch.max.bytes`, or less when the budget has less room.
    max_bytes: i32,
}

/// The task of broker `id`.
pub(super) struct BrokerTask {
    id: i32,
    addr: String,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    conn: Option<Conn>,
    session: Session,
    backoff: Backoff,
}

impl BrokerTask {
    pub(super) fn new(id: i32, addr: String, shared: Arc<Shared>, wake: Arc<Notify>) -> Self {
        Self {
            id,
            addr,
            shared,
            wake,
            conn: None,
            session: Session::default(),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let plan = self.plan();
            let trouble = if !plan.settle.is_empty() {
                self.settle(&plan.settle).await
            } else if plan.budget_spent {
                self.shared.budget.wait_for_room().await;
                false
            } else if plan.fetch.is_empty() {
                self.wake.notified().await;
                false
            } else {
                self.fetch(plan.fetch, plan.max_bytes).await
            };
            if trouble {
                tokio::time::sleep(self.backoff.next_delay()).await;
            } else {
                self.backoff.reset();
            }
        }
    }

    fn plan(&self) -> Plan {
        let state = self.shared.lock();
        let mut plan = Plan::default();
        for (tp, part) in &state.partitions {
            let Some(leader) = part.leader.filter(|l| l.broker == self.id) else {
                continue;
            };
            match part.position {
                Position::Start(_) | Position::Check { .. } => {
                    plan.settle.push((tp.clone(), leader.epoch));
                }
                Position::At(offset) if !part.paused => {
                    let wanted = Wanted {
                        offset,
                        max_bytes: part.max_bytes,
                        leader_epoch: leader.epoch,
                    };
                    plan.fetch.insert(tp.clone(), wanted);
                }
                Position::At(_) | Position::Failed => {}
            }
        }
        let settings = &self.shared.settings;
        let left = self.shared.budget.left();
        plan.budget_spent = left <= 0 && !plan.fetch.is_empty();
        let largest = plan.fetch.values().map(|w| w.max_bytes).max().unwrap_or(0);
        let room = i32::try_from(left).unwrap_or(i32::MAX).max(largest);
        plan.max_bytes = settings.max_bytes.min(room).max(1);
        plan
    }

    /// The connection, opened if need be; `None` after reporting why it could not be.
    async fn connection(&mut self, partitions: &[&TopicPartition]) -> Option<&mut Conn> {
        if self.conn.is_none() {
            let s = &self.shared.settings;
            match Conn::connect(&self.addr, &s.client_id, &s.security, s.request_timeout).await {
                Ok(mut conn) => {
                    // A Fetch may be held by the broker for fetch.max.wait.
                    conn.set_request_timeout(s.request_timeout + s.max_wait);
                    info!(broker = self.id, addr = %self.addr, "fetch connection open");
                    self.conn = Some(conn);
                }
                Err(e) => {
                    self.lost(e, partitions);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    /// The connection failed: it is dropped, and the partitions' leaders are looked up
    /// again (the broker may be gone, or no longer lead them).
    fn lost(&mut self, e: ConnError, partitions: &[&TopicPartition]) {
        self.conn = None;
        self.session.reset();
        let fatal = e.is_fatal();
        let message = format!("fetching from broker {} ({}): {e}", self.id, self.addr);
        let error = source_error(fatal, message).with_source(e);
        warn!(%error, "fetch connection failed");
        let mut state = self.shared.lock();
        if fatal {
            self.shared
                .fail_all(&mut state, partitions.iter().copied(), error);
        } else {
            if let Some(first) = partitions.first() {
                self.shared.report(&mut state, first, error);
            }
            self.shared
                .lose_leaders(&mut state, partitions.iter().copied());
        }
    }

    /// Settles positions from the log's range; `true` if something went wrong.
    async fn settle(&mut self, partitions: &[(TopicPartition, i32)]) -> bool {
        let tps: Vec<&TopicPartition> = partitions.iter().map(|(tp, _)| tp).collect();
        let read_committed = self.shared.settings.read_committed;
        let Some(conn) = self.connection(&tps).await else {
            return true;
        };
        match log_ranges(conn, partitions, read_committed).await {
            Ok(ranges) => apply_ranges(&self.shared, ranges),
            Err(e) => {
                self.lost(e, &tps);
                true
            }
        }
    }

    /// One Fetch; `true` if something went wrong.
    async fn fetch(&mut self, wanted: BTreeMap<TopicPartition, Wanted>, max_bytes: i32) -> bool {
        let tps: Vec<TopicPartition> = wanted.keys().cloned().collect();
        let refs: Vec<&TopicPartition> = tps.iter().collect();
        let Some(conn) = self.connection(&refs).await else {
            return true;
        };
        let version = match conn.version::<FetchRequest>() {
            Ok(v) => v,
            Err(e) => {
                self.lost(e, &refs);
                return true;
            }
        };
        let request = self.session.request(wanted, version >= 7);
        let request = fetch_request(&request, &self.shared.settings, max_bytes);
        let began = Instant::now();
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        let response = match conn.send_at(&request, version).await {
            Ok(r) => r,
            Err(e) => {
                self.lost(e, &refs);
                return true;
            }
        };
        if let Some(e) = ResponseError::try_from_code(response.error_code) {
            self.session.reset();
            if matches!(
                e,
                ResponseError::FetchSessionIdNotFound | ResponseError::InvalidFetchSessionEpoch
            ) {
                debug!(broker = self.id, error = %e, "fetch session reset");
                return false;
            }
            let error =
                SourceError::transient(BACKEND, format!("Fetch from broker {}: {e}", self.id));
            let mut state = self.shared.lock();
            if let Some(first) = tps.first() {
                self.shared.report(&mut state, first, error);
            }
            return true;
        }
        self.session.answered(response.session_id);
        let Applied { records, trouble } = apply_response(&self.shared, response, &self.session);
        // A broker that answers an empty fetch at once (ignoring fetch.max.wait) must not
        // make this task spin.
        if !records && !trouble && began.elapsed() < Duration::from_millis(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        trouble
    }
}

/// The Fetch request for `r`.
fn fetch_request(r: &Request, s: &super::FetchSettings, max_bytes: i32) -> FetchRequest {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (tp, w) in &r.partitions {
        topics.entry(tp.topic()).or_default().push(
            FetchPartition::default()
                .with_partition(tp.partition())
                .with_current_leader_epoch(w.leader_epoch)
                .with_fetch_offset(w.offset)
                .with_partition_max_bytes(w.max_bytes),
        );
    }
    let mut forgotten: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in &r.forgotten {
        forgotten
            .entry(tp.topic())
            .or_default()
            .push(tp.partition());
    }
    let name = |t: &str| TopicName(StrBytes::from_string(t.to_owned()));
    FetchRequest::default()
        .with_max_wait_ms(i32::try_from(s.max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(s.min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(i8::from(s.read_committed))
        .with_session_id(r.session_id)
        .with_session_epoch(r.session_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, p)| FetchTopic::default().with_topic(name(t)).with_partitions(p))
                .collect(),
        )
        .with_forgotten_topics_data(
            forgotten
                .into_iter()
                .map(|(t, p)| {
                    ForgottenTopic::default()
                        .with_topic(name(t))
                        .with_partitions(p)
                })
                .collect(),
        )
}
