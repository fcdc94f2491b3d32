//! A dead-letter producer into the in-memory cluster, with scripted send failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ktm_core::{async_trait, DeadLetterProducer, DeadLetterRecord, SourceError};

use crate::{Fault, FaultPlan, MockCluster, MockError, Record};

const BACKEND: &str = "mock";

/// Produces dead letters into a [`MockCluster`]: to the record's topic, partition =
/// source partition modulo the topic's partition count. Faults scripted with
/// [`FaultPlan::on_send`] fail exactly the planned sends.
///
/// ```
/// use ktm_core::{DeadLetterProducer, DeadLetterRecord, Message};
/// use ktm_mock::MockCluster;
///
/// let cluster = MockCluster::new();
/// cluster.create_topic("orders.dlq", 1)?;
/// let mut producer = cluster.dead_letter_producer();
/// let failed = Message::builder("orders", 4, 7).payload("bad").build();
/// let record = DeadLetterRecord::new("orders.dlq", &failed, 3, "unparseable");
/// tokio::runtime::Builder::new_current_thread().build()?.block_on(producer.send(&record))?;
/// assert_eq!(cluster.end_offset("orders.dlq", 0)?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MockDeadLetterProducer {
    cluster: MockCluster,
    plan: FaultPlan,
    sends: u64,
    failing_for: u32,
    failures: Arc<AtomicU64>,
}

impl MockDeadLetterProducer {
    pub(crate) fn new(cluster: MockCluster) -> Self {
        Self {
            cluster,
            plan: FaultPlan::new(),
            sends: 0,
            failing_for: 0,
            failures: Arc::default(),
        }
    }

    /// Fails the sends `plan` names ([`FaultPlan::on_send`]).
    #[must_use]
    pub fn with_faults(mut self, plan: FaultPlan) -> Self {
        self.plan = plan;
        self
    }

    /// How many sends failed by injection so far; shared, readable from the test.
    pub fn failure_count(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.failures)
    }

    fn injected(&mut self) -> Option<SourceError> {
        self.sends += 1;
        let fault = match self.plan.sends.get(&self.sends).copied() {
            Some(Fault::Disconnect(calls)) => {
                self.failing_for = calls;
                None
            }
            other => other,
        };
        let fault = match fault {
            Some(f @ (Fault::Transient | Fault::Fatal)) => Some(f),
            _ if self.failing_for > 0 => {
                self.failing_for -= 1;
                Some(Fault::Transient)
            }
            _ => None,
        }?;
        self.failures.fetch_add(1, Ordering::Relaxed);
        Some(match fault {
            Fault::Fatal => SourceError::fatal(BACKEND, "injected fatal produce fault"),
            _ => SourceError::transient(BACKEND, "injected transient produce fault"),
        })
    }
}

#[async_trait]
impl DeadLetterProducer for MockDeadLetterProducer {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn send(&mut self, record: &DeadLetterRecord) -> Result<(), SourceError> {
        if let Some(e) = self.injected() {
            return Err(e);
        }
        let unknown = |e: MockError| SourceError::fatal(BACKEND, e.to_string());
        let partitions = self
            .cluster
            .partition_count(&record.topic)
            .map_err(unknown)?;
        let partition = record.source.partition().rem_euclid(partitions);
        let mut produced = match &record.payload {
            Some(payload) => Record::new(payload.clone()),
            None => Record::tombstone(),
        };
        if let Some(key) = &record.key {
            produced = produced.key(key.clone());
        }
        for header in &record.headers {
            produced = produced.header(header.key.clone(), header.value.clone());
        }
        if let Some(ts) = record.timestamp {
            produced = produced.timestamp(ts.millis());
        }
        self.cluster
            .produce(&record.topic, partition, produced)
            .map_err(unknown)?;
        Ok(())
    }

    async fn partition_count(&mut self, topic: &str) -> Result<Option<i32>, SourceError> {
        Ok(self.cluster.partition_count(topic).ok())
    }
}

impl MockCluster {
    /// A dead-letter producer into this cluster.
    pub fn dead_letter_producer(&self) -> MockDeadLetterProducer {
        MockDeadLetterProducer::new(self.clone())
    }
}
