//! Applying assignment changes from the group (or the static assignment): commits of
//! what is given up, under the generation that owns it, and the fetch path told of what is added.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ktm_core::{Offsets, PollBatch, SourceError, SourceEvent, TopicPartition};
use tracing::warn;

use super::{Pending, RskafkaSource, NOT_A_MEMBER};
use crate::BACKEND;

impl RskafkaSource {
    /// Fetches the committed offsets of `partitions`, on the I/O thread.
    pub(super) async fn fetch_committed(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, SourceError> {
        let control = Arc::clone(&self.control);
        self.io()?
            .run(async move { control.lock().await.fetch(&partitions).await })
            .await?
            .map_err(|e| e.into_source_error("fetching committed offsets"))
    }

    /// Commits `positions` under the identity of the assignment the consumer thread
    /// holds, on the I/O thread; refused locally when that generation has moved on.
    pub(super) async fn commit_held(&self, positions: Offsets) -> Result<(), SourceError> {
        if let Some(g) = &self.group {
            if !g.may_commit_as(&self.identity) {
                return Err(SourceError::transient(BACKEND, NOT_A_MEMBER));
            }
        }
        let control = Arc::clone(&self.control);
        let identity = self.identity.clone();
        self.io()?
            .run(async move { control.lock().await.commit(&identity, &positions).await })
            .await?
            .map_err(|e| e.into_source_error("committing offsets"))
    }

    /// Applies the pending assignment change, pushing its event.
    pub(super) async fn apply_pending(&mut self, batch: &mut PollBatch) -> Result<(), SourceError> {
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
                let engine = self.engine.as_ref().ok_or_else(|| {
                    SourceError::transient(BACKEND, "the fetch path is not running")
                })?;
                for tp in &added {
                    self.next_epoch += 1;
                    let start = committed.get(tp).copied().flatten();
                    let owned = engine.add(tp.clone(), start, self.next_epoch);
                    self.owned.insert(tp.clone(), owned);
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
    pub(super) async fn commit_owned(&mut self, partitions: &[TopicPartition]) -> bool {
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
    pub(super) fn give_up(
        &mut self,
        batch: &mut PollBatch,
        gone: Vec<TopicPartition>,
        orderly: bool,
    ) {
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
}
