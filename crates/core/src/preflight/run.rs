//! Running the preflight: the broker questions on a runtime of their own, then the
//! extra checks on the calling thread, then the report.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::{GroupStatus, SourceDescription, Subscribed, TopicDescription};
use super::{PreflightError, PreflightItem, PreflightReport, PreflightSettings};
use crate::backoff::Backoff;
use crate::launch::RunConfig;
use crate::shared::lock;
use crate::{
    DeadLetter, FailurePolicy, MessageSource, SharedError, SourceError, SourceErrorKind, State,
    ThreadManager,
};

impl ThreadManager {
    /// Checks, before anything is consumed, that the configuration will work: each
    /// subscribed topic exists (or the pattern matches one) and its partition count,
    /// the group coordinator accepts the group id, each dead-letter topic of a
    /// [`FailurePolicy::DeadLetter`] exists and its partition count, and each extra
    /// [`preflight_check`](crate::ThreadManagerBuilder::preflight_check) passes.
    /// Returns the report (its `Display` is a short runbook) when every item passed.
    ///
    /// Nothing is joined, fetched or committed. It runs on the calling thread (a tokio
    /// runtime of its own: do not call it from async code), bounded by
    /// [`preflight_timeout`](crate::ThreadManagerBuilder::preflight_timeout).
    ///
    /// # Errors
    /// The first item that failed ([`PreflightError::TopicMissing`],
    /// [`PreflightError::DeadLetterTopicMissing`], ...); or why it could not run:
    /// [`PreflightError::InvalidState`] after `start()`, [`PreflightError::Unsupported`],
    /// [`PreflightError::Source`], [`PreflightError::TimedOut`].
    pub fn preflight(&self) -> Result<PreflightReport, PreflightError> {
        self.preflight_report()?.into_result()
    }

    /// As [`preflight`](Self::preflight), but returns the report with the failed items
    /// in it (see [`PreflightReport::failures`]), to print the whole picture.
    ///
    /// # Errors
    /// Only why it could not run: [`PreflightError::InvalidState`],
    /// [`PreflightError::Unsupported`], [`PreflightError::Source`],
    /// [`PreflightError::TimedOut`].
    pub fn preflight_report(&self) -> Result<PreflightReport, PreflightError> {
        let state = self.state();
        // The state is read before the pending lock is taken: `start()` takes the
        // lifecycle lock then the pending one, so holding both here the other way round
        // could deadlock. A start in between leaves `pending` empty, caught below.
        if state != State::Created {
            return Err(PreflightError::InvalidState { state });
        }
        let mut guard = lock(&self.pending);
        let Some(pending) = guard.as_mut() else {
            // Released first: `state()` takes the lifecycle lock (see above).
            drop(guard);
            return Err(PreflightError::InvalidState {
                state: self.state(),
            });
        };
        let settings = &self.preflight;
        let started = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PreflightError::Source(SharedError::new(e)))?;
        let dead_letter = match &mut pending.config.failure_policy {
            FailurePolicy::DeadLetter(d) => Some(d),
            _ => None,
        };
        let asked = runtime.block_on(async {
            tokio::time::timeout(
                settings.timeout,
                ask_broker(
                    pending.source.as_mut(),
                    dead_letter,
                    Backoff::new(pending.config.retry_backoff),
                ),
            )
            .await
        });
        // Not a plain drop, which would wait for blocking tasks a backend started (a
        // librdkafka request past the timeout): the preflight is over either way.
        runtime.shutdown_background();
        let (description, dead_letters) =
            asked.map_err(|_| PreflightError::TimedOut(settings.timeout))??;
        let backend = pending.source.backend();
        let report = build_report(
            backend,
            description,
            dead_letters,
            &pending.config,
            settings,
        );
        info!(
            backend,
            ok = report.is_ok(),
            elapsed = ?started.elapsed(),
            "preflight finished"
        );
        Ok(report)
    }
}

/// The source's description and each dead-letter topic with its partition count.
/// A transient error (a coordinator still loading, a broker starting) is asked again
/// after the manager's retry backoff; the preflight's timeout bounds the asking.
async fn ask_broker(
    source: &mut dyn MessageSource,
    dead_letter: Option<&mut DeadLetter>,
    mut backoff: Backoff,
) -> Result<(SourceDescription, Vec<TopicDescription>), PreflightError> {
    let description = loop {
        match source.describe().await {
            Ok(d) => break d,
            Err(e) => give_up_or_wait(e, &mut backoff).await?,
        }
    };
    let mut dead_letters = Vec::new();
    if let Some(dead_letter) = dead_letter {
        let mut topics: Vec<String> = description
            .topics
            .iter()
            .map(|t| dead_letter.destination(&t.name))
            .collect();
        topics.dedup();
        for topic in topics {
            let count = loop {
                match dead_letter.producer.partition_count(&topic).await {
                    Ok(n) => break n,
                    Err(e) => give_up_or_wait(e, &mut backoff).await?,
                }
            };
            dead_letters.push(TopicDescription {
                name: topic,
                partitions: count,
            });
        }
    }
    Ok((description, dead_letters))
}

/// A transient error waits out the backoff, for the caller to ask again; any other ends
/// the preflight.
async fn give_up_or_wait(e: SourceError, backoff: &mut Backoff) -> Result<(), PreflightError> {
    match e.kind() {
        SourceErrorKind::Unsupported => Err(PreflightError::Unsupported(SharedError::new(e))),
        SourceErrorKind::Transient => {
            debug!(error = %e, "preflight: transient error, asking again");
            tokio::time::sleep(backoff.next_delay()).await;
            Ok(())
        }
        _ => Err(PreflightError::Source(SharedError::new(e))),
    }
}

/// Turns the answers into report items, and runs the extra checks.
fn build_report(
    backend: &'static str,
    description: SourceDescription,
    dead_letters: Vec<TopicDescription>,
    config: &RunConfig,
    settings: &PreflightSettings,
) -> PreflightReport {
    let mut items = Vec::new();
    if let Subscribed::Pattern(pattern) = &description.subscription {
        let outcome = if description.topics.is_empty() {
            Err(PreflightError::PatternMatchesNothing {
                pattern: pattern.clone(),
            })
        } else {
            Ok(format!("{} topic(s) match", description.topics.len()))
        };
        items.push(PreflightItem::new(format!("pattern {pattern}"), outcome));
    }
    for t in &description.topics {
        items.push(partitions_item("topic", t, |topic| {
            PreflightError::TopicMissing { topic }
        }));
    }
    if let Some((group, status)) = &description.group {
        let outcome = match status {
            GroupStatus::Accepted { coordinator } => Ok(format!("coordinator {coordinator}")),
            GroupStatus::Rejected { error } => Err(PreflightError::GroupRejected {
                group: group.clone(),
                error: error.clone(),
            }),
        };
        items.push(PreflightItem::new(format!("group {group}"), outcome));
    }
    for t in &dead_letters {
        items.push(partitions_item("dead-letter topic", t, |topic| {
            PreflightError::DeadLetterTopicMissing { topic }
        }));
    }
    for (name, check) in &settings.checks {
        let outcome = check.check().map_err(|e| PreflightError::CheckFailed {
            name: name.clone(),
            error: SharedError::new(e),
        });
        items.push(PreflightItem::new(format!("check {name}"), outcome));
    }
    for item in &items {
        if let Err(e) = &item.outcome {
            warn!(item = %item.name, error = %e, "preflight item failed");
        }
    }
    PreflightReport::new(backend, description, dead_letters, config, items)
}

/// A topic's item: its partition count, or `missing` (given the topic's name).
fn partitions_item(
    what: &str,
    t: &TopicDescription,
    missing: impl FnOnce(String) -> PreflightError,
) -> PreflightItem {
    let outcome = match t.partitions {
        Some(n) => Ok(format!("{n} partition(s)")),
        None => Err(missing(t.name.clone())),
    };
    PreflightItem::new(format!("{what} {}", t.name), outcome)
}
