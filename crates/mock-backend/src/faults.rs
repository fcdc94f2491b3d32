//! Deterministic fault injection around any `MessageSource`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ktm_core::{async_trait, MessageSource, Offsets, PollBatch, SourceError, TopicPartition};

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails with a transient error (retried by the manager).
    Transient,
    /// The call fails with a fatal error (the manager stops, `Failed`).
    Fatal,
    /// The connection drops for this many calls (polls and commits alike fail
    /// transiently), starting with this one.
    Disconnect(u32),
    /// The poll waits this long before it starts (a slow broker).
    Delay(Duration),
}

/// When faults happen: keyed by the 1-based number of the poll or commit call.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct FaultPlan {
    polls: BTreeMap<u64, Fault>,
    commits: BTreeMap<u64, Fault>,
    pub(crate) sends: BTreeMap<u64, Fault>,
    resumes: BTreeMap<u64, Fault>,
}

impl FaultPlan {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `n`th poll (from 1) meets `fault`.
    pub fn on_poll(mut self, n: u64, fault: Fault) -> Self {
        self.polls.insert(n, fault);
        self
    }

    /// The `n`th commit (from 1) meets `fault` (`Delay` and `Disconnect` apply to polls).
    pub fn on_commit(mut self, n: u64, fault: Fault) -> Self {
        self.commits.insert(n, fault);
        self
    }

    /// The `n`th `resume` call (from 1) meets `fault` (any fault fails that one call).
    pub fn on_resume(mut self, n: u64, fault: Fault) -> Self {
        self.resumes.insert(n, fault);
        self
    }

    /// The `n`th send (from 1) of a
    /// [`MockDeadLetterProducer`](crate::MockDeadLetterProducer) meets `fault`
    /// (`Disconnect(k)` fails this send and the next k - 1).
    pub fn on_send(mut self, n: u64, fault: Fault) -> Self {
        self.sends.insert(n, fault);
        self
    }
}

/// How many faults a [`Faulty`] source injected; shared, readable from the test.
#[derive(Clone, Debug, Default)]
pub struct FaultCounts(Arc<[AtomicU64; 2]>);

impl FaultCounts {
    /// Poll calls that failed by injection.
    pub fn poll_failures(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }

    /// Commit calls that failed by injection.
    pub fn commit_failures(&self) -> u64 {
        self.0[1].load(Ordering::Relaxed)
    }
}

/// Wraps a source and injects the faults of a [`FaultPlan`], exactly at the planned
/// calls, so a test run is repeatable.
pub struct Faulty<S> {
    inner: S,
    plan: FaultPlan,
    polls: u64,
    commits: u64,
    resumes: u64,
    disconnected_for: u32,
    counts: FaultCounts,
}

impl<S: MessageSource> Faulty<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            polls: 0,
            commits: 0,
            resumes: 0,
            disconnected_for: 0,
            counts: FaultCounts::default(),
        }
    }

    /// The shared counts of injected failures.
    pub fn counts(&self) -> FaultCounts {
        self.counts.clone()
    }

    fn error(&self, fault: Fault) -> SourceError {
        let backend = self.inner.backend();
        match fault {
            Fault::Fatal => SourceError::fatal(backend, "injected fatal fault"),
            Fault::Disconnect(_) => SourceError::transient(backend, "injected disconnect"),
            _ => SourceError::transient(backend, "injected transient fault"),
        }
    }

    /// Consumes one call of a disconnect window, if one is open.
    fn disconnected(&mut self) -> bool {
        if self.disconnected_for > 0 {
            self.disconnected_for -= 1;
            true
        } else {
            false
        }
    }
}

#[async_trait]
impl<S: MessageSource> MessageSource for Faulty<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn poll(&mut self, timeout: Duration, batch: &mut PollBatch) -> Result<(), SourceError> {
        self.polls += 1;
        let fault = self.plan.polls.get(&self.polls).copied();
        if let Some(Fault::Disconnect(calls)) = fault {
            self.disconnected_for = calls;
        }
        let failing = match fault {
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                None
            }
            Some(Fault::Disconnect(_)) | None => self.disconnected().then_some(Fault::Transient),
            other => other,
        };
        if let Some(f) = failing {
            self.counts.0[0].fetch_add(1, Ordering::Relaxed);
            return Err(self.error(f));
        }
        self.inner.poll(timeout, batch).await
    }

    fn store(&mut self, positions: &Offsets) {
        self.inner.store(positions);
    }

    async fn commit(&mut self, positions: &Offsets) -> Result<(), SourceError> {
        self.commits += 1;
        let failing = match self.plan.commits.get(&self.commits).copied() {
            Some(f @ (Fault::Transient | Fault::Fatal)) => Some(f),
            _ => self.disconnected().then_some(Fault::Transient),
        };
        if let Some(f) = failing {
            self.counts.0[1].fetch_add(1, Ordering::Relaxed);
            return Err(self.error(f));
        }
        self.inner.commit(positions).await
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        self.inner.close().await
    }

    fn group_id(&self) -> Option<&str> {
        self.inner.group_id()
    }

    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.inner.pause(partitions)
    }

    async fn describe(&mut self) -> Result<ktm_core::SourceDescription, SourceError> {
        self.inner.describe().await
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        self.resumes += 1;
        if let Some(&fault) = self.plan.resumes.get(&self.resumes) {
            return Err(self.error(fault));
        }
        self.inner.resume(partitions)
    }
}
