//! Finding partitions' leaders: a Metadata request on the control connection for the
//! topics with partitions whose leader is not known, then each partition is handed to
//! the task of its leader (started when it is the first partition that broker leads).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use ktm_core::SourceError;
use tokio::runtime::Handle;
use tracing::{debug, warn};

use super::broker::BrokerTask;
use super::state::{BrokerSlot, Position, Shared};
use crate::backoff::Backoff;
use crate::group::ControlClient;
use crate::wire::ClusterMetadata;
use crate::BACKEND;

/// Runs for the life of the engine.
pub(super) async fn find_leaders(
    shared: Arc<Shared>,
    control: Arc<tokio::sync::Mutex<ControlClient>>,
    io: Handle,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let topics = leaderless_topics(&shared);
        if topics.is_empty() {
            shared.leaders_wanted.notified().await;
            continue;
        }
        let answer = control
            .lock()
            .await
            .metadata(topics.iter().map(String::as_str))
            .await;
        let complete = match answer {
            Ok(metadata) => place(&shared, &metadata, &io),
            Err(e) => {
                let error = e.into_source_error("looking up partition leaders");
                warn!(%error, "metadata request failed; retrying");
                report_all_leaderless(&shared, error);
                false
            }
        };
        if complete {
            backoff.reset();
        } else {
            // Some leader is not known yet (an election, a topic being created).
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

fn leaderless_topics(shared: &Shared) -> BTreeSet<String> {
    shared
        .lock()
        .partitions
        .iter()
        .filter(|(_, p)| p.leader.is_none() && p.position != Position::Failed)
        .map(|(tp, _)| tp.topic().to_owned())
        .collect()
}

/// Gives each leaderless partition the leader `metadata` names, starting broker tasks
/// as needed; `true` when none is left without one.
fn place(shared: &Arc<Shared>, metadata: &ClusterMetadata, io: &Handle) -> bool {
    let mut guard = shared.lock();
    let state = &mut *guard;
    let mut complete = true;
    let mut errors = Vec::new();
    for (tp, part) in &mut state.partitions {
        if part.leader.is_some() || part.position == Position::Failed {
            continue;
        }
        if let Some(e) = metadata.topic_errors.get(tp.topic()) {
            if matches!(e, ResponseError::TopicAuthorizationFailed) {
                errors.push((
                    tp.clone(),
                    SourceError::fatal(BACKEND, format!("{tp}: {e}")),
                ));
            } else {
                debug!(partition = %tp, error = %e, "no metadata for the topic yet");
            }
            complete = false;
            continue;
        }
        let leader = metadata
            .topics
            .get(tp.topic())
            .and_then(|t| t.leaders.get(&tp.partition()))
            .copied()
            .flatten();
        let Some(leader) = leader else {
            debug!(partition = %tp, "no leader yet");
            complete = false;
            continue;
        };
        let Some(addr) = metadata.brokers.get(&leader.broker) else {
            complete = false;
            continue;
        };
        part.leader = Some(leader);
        let slot = state.brokers.get(&leader.broker);
        if slot.is_none_or(|s| s.addr != *addr || s.task.is_finished()) {
            let wake = Arc::new(tokio::sync::Notify::new());
            let task = BrokerTask::new(
                leader.broker,
                addr.clone(),
                Arc::clone(shared),
                Arc::clone(&wake),
            );
            let slot = BrokerSlot {
                addr: addr.clone(),
                wake,
                task: io.spawn(task.run()),
            };
            state.brokers.insert(leader.broker, slot);
        }
        if let Some(slot) = state.brokers.get(&leader.broker) {
            slot.wake.notify_one();
        }
    }
    for (tp, e) in errors {
        shared.report(state, &tp, e);
    }
    complete
}

/// A failed lookup shows as a (transient) poll error of the partitions waiting for it.
fn report_all_leaderless(shared: &Shared, error: SourceError) {
    let mut guard = shared.lock();
    let state = &mut *guard;
    let first = state
        .partitions
        .iter()
        .find(|(_, p)| p.leader.is_none())
        .map(|(tp, _)| tp.clone());
    if let Some(tp) = first {
        shared.report(state, &tp, error);
    }
}
