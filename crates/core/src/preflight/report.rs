//! The preflight's report, and its `Display`: a short runbook for whoever operates the
//! consumer (what it reads, how it commits and fails, where to look on dashboards).

use std::fmt;

use super::{GroupStatus, PreflightError, SourceDescription, Subscribed, TopicDescription};
use crate::launch::RunConfig;
use crate::{CommitPolicy, FailurePolicy, RetryPolicy};

/// The metrics a lag dashboard needs, as [`telemetry`](crate::telemetry) publishes
/// them: the per-partition gauges (labels `group`, `topic`, `partition`), then the
/// per-consumer ones (label `group`).
pub const LAG_METRICS: &[&str] = &[
    "ktm_lag",
    "ktm_high_watermark",
    "ktm_committed_offset",
    "ktm_position",
    "ktm_assigned_partitions",
    "ktm_rebalances_total",
    "ktm_commit_errors_total",
];

/// One checked item and its outcome: `Ok` with a short detail, or the failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreflightItem {
    /// What was checked, such as `topic orders` or `dead-letter topic orders.dlq`.
    pub name: String,
    /// The detail (`3 partition(s)`), or why it failed.
    pub outcome: Result<String, PreflightError>,
}

impl PreflightItem {
    pub(crate) fn new(name: String, outcome: Result<String, PreflightError>) -> Self {
        Self { name, outcome }
    }
}

/// What [`ThreadManager::preflight`](crate::ThreadManager::preflight) found. Its
/// `Display` is the runbook: checks, topics and partitions, group, policies,
/// dead-letter topics and the metric names for lag dashboards.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreflightReport {
    /// The source's backend.
    pub backend: &'static str,
    /// The broker that answered (or the bootstrap list).
    pub endpoint: String,
    /// What the source reads.
    pub subscription: Subscribed,
    /// The topics read, with their partition counts (or missing).
    pub topics: Vec<TopicDescription>,
    /// The consumer group and the coordinator's answer.
    pub group: Option<(String, GroupStatus)>,
    /// The dead-letter topics of a [`FailurePolicy::DeadLetter`], one per destination.
    pub dead_letter_topics: Vec<TopicDescription>,
    /// The commit policy.
    pub commit_policy: CommitPolicy,
    /// The retry policy.
    pub retry_policy: RetryPolicy,
    /// The failure policy: `stop`, `skip` or `dead-letter`.
    pub failure_policy: &'static str,
    /// Every item checked, in order, with its outcome.
    pub items: Vec<PreflightItem>,
}

impl PreflightReport {
    pub(crate) fn new(
        backend: &'static str,
        description: SourceDescription,
        dead_letter_topics: Vec<TopicDescription>,
        config: &RunConfig,
        items: Vec<PreflightItem>,
    ) -> Self {
        let failure_policy = match &config.failure_policy {
            FailurePolicy::Stop => "stop",
            FailurePolicy::Skip => "skip",
            FailurePolicy::DeadLetter(_) => "dead-letter",
        };
        Self {
            backend,
            endpoint: description.endpoint,
            subscription: description.subscription,
            topics: description.topics,
            group: description.group,
            dead_letter_topics,
            commit_policy: config.commit_policy,
            retry_policy: config.retry_policy,
            failure_policy,
            items,
        }
    }

    /// Whether every item passed.
    pub fn is_ok(&self) -> bool {
        self.items.iter().all(|i| i.outcome.is_ok())
    }

    /// The failed items' errors, in order.
    pub fn failures(&self) -> impl Iterator<Item = &PreflightError> {
        self.items.iter().filter_map(|i| i.outcome.as_ref().err())
    }

    /// The report if every item passed, else the first failure.
    ///
    /// # Errors
    /// The first failed item's error.
    pub fn into_result(self) -> Result<Self, PreflightError> {
        let first = self.failures().next().cloned();
        match first {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

impl fmt::Display for PreflightReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_ok() { "ok" } else { "FAILED" };
        writeln!(
            f,
            "Preflight {verdict} (backend {}, broker {})",
            self.backend, self.endpoint
        )?;
        writeln!(f, "Checks:")?;
        for item in &self.items {
            match &item.outcome {
                Ok(detail) => writeln!(f, "  [ok]   {}: {detail}", item.name)?,
                Err(e) => writeln!(f, "  [FAIL] {}: {e}", item.name)?,
            }
        }
        match &self.subscription {
            Subscribed::Pattern(p) => writeln!(f, "Topics and partitions (pattern {p}):")?,
            Subscribed::Partitions(_) => writeln!(f, "Topics and partitions (assigned):")?,
            _ => writeln!(f, "Topics and partitions:")?,
        }
        write_topics(f, &self.topics)?;
        if let Subscribed::Partitions(tps) = &self.subscription {
            let list: Vec<String> = tps.iter().map(ToString::to_string).collect();
            writeln!(f, "  reading only {}", list.join(", "))?;
        }
        match &self.group {
            Some((group, GroupStatus::Accepted { coordinator })) => {
                writeln!(f, "Group: {group} (coordinator {coordinator})")?
            }
            Some((group, GroupStatus::Rejected { error })) => {
                writeln!(f, "Group: {group} (REFUSED: {error})")?
            }
            None => writeln!(f, "Group: none")?,
        }
        writeln!(f, "Policies:")?;
        writeln!(f, "  commit:  {}", commit_text(self.commit_policy))?;
        writeln!(f, "  retry:   {}", retry_text(&self.retry_policy))?;
        writeln!(f, "  failure: {}", self.failure_policy)?;
        if self.dead_letter_topics.is_empty() {
            writeln!(f, "Dead-letter topics: none")?;
        } else {
            writeln!(f, "Dead-letter topics:")?;
            write_topics(f, &self.dead_letter_topics)?;
        }
        writeln!(f, "Lag dashboards (labels group, topic, partition):")?;
        write!(f, "  {}", LAG_METRICS.join(", "))
    }
}

fn write_topics(f: &mut fmt::Formatter<'_>, topics: &[TopicDescription]) -> fmt::Result {
    if topics.is_empty() {
        return writeln!(f, "  (none)");
    }
    for t in topics {
        match t.partitions {
            Some(n) => writeln!(f, "  {}: {n} partition(s), 0..={}", t.name, n - 1)?,
            None => writeln!(f, "  {}: MISSING", t.name)?,
        }
    }
    Ok(())
}

fn commit_text(policy: CommitPolicy) -> String {
    let when = match policy {
        CommitPolicy::EveryMessage => "after every message".to_owned(),
        CommitPolicy::EveryN(n) => format!("every {n} messages"),
        CommitPolicy::Interval(d) => format!("at most every {d:?}"),
    };
    format!("{when}, and on stop and revoke")
}

fn retry_text(policy: &RetryPolicy) -> String {
    if policy.max_retries() == 0 {
        return "none: the first failure goes to the failure policy".to_owned();
    }
    let b = policy.backoff_bounds();
    let mut text = format!(
        "up to {} retries, backoff {:?} to {:?}",
        policy.max_retries(),
        b.initial,
        b.max
    );
    if let Some(limit) = policy.max_elapsed_limit() {
        text.push_str(&format!(", within {limit:?}"));
    }
    text
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
