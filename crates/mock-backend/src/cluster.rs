//! The in-memory cluster: topics with partition logs, groups, and the notifier that
//! wakes waiting consumers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ktm_core::{Header, Message, Timestamp, TopicPartition};
use tokio::sync::Notify;

use crate::group::{CommitRecord, Group};
use crate::source::MockSourceBuilder;
use crate::MockError;

pub(crate) struct PartitionLog {
    /// Offset of `records[0]`; records before it were deleted (retention).
    pub(crate) start: i64,
    pub(crate) records: Vec<Message>,
}

impl PartitionLog {
    pub(crate) fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }
}

pub(crate) struct Topic {
    pub(crate) name: Arc<str>,
    pub(crate) partitions: Vec<PartitionLog>,
}

pub(crate) struct ClusterState {
    pub(crate) topics: BTreeMap<String, Topic>,
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) next_member: u64,
    pub(crate) session_timeout: Duration,
    /// Groups the coordinator refuses, with the error it answers (see
    /// [`MockCluster::refuse_group`]).
    pub(crate) refused_groups: BTreeMap<String, String>,
}

impl ClusterState {
    pub(crate) fn log(&self, tp: &TopicPartition) -> Option<&PartitionLog> {
        self.topics
            .get(tp.topic())
            .and_then(|t| t.partitions.get(usize::try_from(tp.partition()).ok()?))
    }

    pub(crate) fn partition_count(&self, topic: &str) -> i32 {
        self.topics
            .get(topic)
            .map_or(0, |t| t.partitions.len() as i32)
    }

    /// Rebalances `group`, with partition counts from this cluster.
    pub(crate) fn rebalance(&mut self, group: &str) {
        let counts: BTreeMap<String, i32> = self
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), t.partitions.len() as i32))
            .collect();
        if let Some(g) = self.groups.get_mut(group) {
            g.rebalance(|t| counts.get(t).copied().unwrap_or(0));
        }
    }
}

pub(crate) struct Inner {
    state: Mutex<ClusterState>,
    /// Woken on every produce and rebalance, so waiting polls look again.
    pub(crate) changed: Notify,
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, ClusterState> {
        // A panic under this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A record to produce into the mock cluster.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Record {
    key: Option<Bytes>,
    payload: Option<Bytes>,
    headers: Vec<Header>,
    timestamp: Option<i64>,
}

impl Record {
    /// A record with a payload.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: Some(payload.into()),
            ..Self::default()
        }
    }

    /// A record with a null payload (a tombstone).
    pub fn tombstone() -> Self {
        Self::default()
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header (`None`: a null value).
    pub fn header(mut self, key: impl Into<String>, value: Option<impl Into<Bytes>>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the create time, in ms since the epoch.
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// An in-memory Kafka cluster: topics with partitions, consumer groups with committed
/// offsets, eager rebalances and session timeouts. Cheap to clone (a shared handle).
///
/// ```
/// use ktm_mock::{MockCluster, Record};
/// let cluster = MockCluster::new();
/// cluster.create_topic("orders", 2)?;
/// let offset = cluster.produce("orders", 1, Record::new("hello").key("k"))?;
/// assert_eq!(offset, 0);
/// assert_eq!(cluster.end_offset("orders", 1)?, 1);
/// # Ok::<(), ktm_mock::MockError>(())
/// ```
#[derive(Clone)]
pub struct MockCluster {
    pub(crate) inner: Arc<Inner>,
}

impl Default for MockCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl MockCluster {
    /// An empty cluster; consumer sessions time out after 10 s without a poll.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(ClusterState {
                    topics: BTreeMap::new(),
                    groups: BTreeMap::new(),
                    next_member: 1,
                    session_timeout: Duration::from_secs(10),
                    refused_groups: BTreeMap::new(),
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// Sets how long a group member may go without polling before it is evicted and its
    /// partitions handed to others (Kafka's `session.timeout.ms`).
    pub fn set_session_timeout(&self, timeout: Duration) {
        self.inner.state().session_timeout = timeout;
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// [`MockError::TopicExists`], [`MockError::InvalidPartitionCount`].
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), MockError> {
        if partitions < 1 {
            return Err(MockError::InvalidPartitionCount(partitions));
        }
        let mut st = self.inner.state();
        if st.topics.contains_key(name) {
            return Err(MockError::TopicExists(name.to_owned()));
        }
        st.topics.insert(
            name.to_owned(),
            Topic {
                name: Arc::from(name),
                partitions: (0..partitions)
                    .map(|_| PartitionLog {
                        start: 0,
                        records: Vec::new(),
                    })
                    .collect(),
            },
        );
        Ok(())
    }

    /// The records of `topic[partition]` still in the log, in offset order.
    ///
    /// # Errors
    /// [`MockError::UnknownTopic`], [`MockError::UnknownPartition`].
    pub fn records(&self, topic: &str, partition: i32) -> Result<Vec<Message>, MockError> {
        let st = self.inner.state();
        st.log(&TopicPartition::new(topic, partition))
            .map(|log| log.records.clone())
            .ok_or_else(|| match st.topics.get(topic) {
                None => MockError::UnknownTopic(topic.to_owned()),
                Some(_) => MockError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                },
            })
    }

    /// Appends a record to `topic[partition]` and returns its offset.
    ///
    /// # Errors
    /// [`MockError::UnknownTopic`], [`MockError::UnknownPartition`].
    pub fn produce(&self, topic: &str, partition: i32, record: Record) -> Result<i64, MockError> {
        let offset = {
            let mut st = self.inner.state();
            let t = st
                .topics
                .get_mut(topic)
                .ok_or_else(|| MockError::UnknownTopic(topic.to_owned()))?;
            let name = Arc::clone(&t.name);
            let log = usize::try_from(partition)
                .ok()
                .and_then(|p| t.partitions.get_mut(p))
                .ok_or_else(|| MockError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                })?;
            let offset = log.end();
            let mut b = Message::builder(name, partition, offset)
                .maybe_key(record.key)
                .maybe_payload(record.payload)
                .headers(record.headers);
            if let Some(ts) = record.timestamp {
                b = b.timestamp(Timestamp::CreateTime(ts));
            }
            log.records.push(b.build());
            offset
        };
        self.inner.changed.notify_waiters();
        Ok(offset)
    }

    /// Produces `count` records of `payload_size` bytes, round-robin over the topic's
    /// partitions, with keys `key-<i>`. Returns how many were produced.
    ///
    /// # Errors
    /// [`MockError::UnknownTopic`].
    pub fn fill(&self, topic: &str, count: u64, payload_size: usize) -> Result<u64, MockError> {
        let partitions = self.partition_count(topic)?;
        let payload = Bytes::from(vec![b'x'; payload_size]);
        for i in 0..count {
            let p = (i % partitions as u64) as i32;
            self.produce(
                topic,
                p,
                Record::new(payload.clone()).key(format!("key-{i}")),
            )?;
        }
        Ok(count)
    }

    /// How many partitions `topic` has.
    ///
    /// # Errors
    /// [`MockError::UnknownTopic`].
    pub fn partition_count(&self, topic: &str) -> Result<i32, MockError> {
        match self.inner.state().partition_count(topic) {
            0 => Err(MockError::UnknownTopic(topic.to_owned())),
            n => Ok(n),
        }
    }

    /// The offset the next record of `topic[partition]` will get (the high watermark).
    ///
    /// # Errors
    /// [`MockError::UnknownTopic`], [`MockError::UnknownPartition`].
    pub fn end_offset(&self, topic: &str, partition: i32) -> Result<i64, MockError> {
        self.with_log(topic, partition, PartitionLog::end)
    }

    /// Deletes records below `before` (as retention would); consumers positioned before
    /// it meet an out-of-range offset and apply their reset policy.
    ///
    /// # Errors
    /// [`MockError::UnknownTopic`], [`MockError::UnknownPartition`].
    pub fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<(), MockError> {
        let mut st = self.inner.state();
        let log = st
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
            .ok_or_else(|| MockError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })?;
        let drop_n = (before.min(log.end()) - log.start).max(0) as usize;
        log.records.drain(..drop_n);
        log.start += drop_n as i64;
        Ok(())
    }

    /// The position `group` has committed for `topic[partition]`.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let st = self.inner.state();
        st.groups
            .get(group)?
            .committed
            .get(&TopicPartition::new(topic, partition))
            .copied()
    }

    /// Every commit `group` made, in order.
    pub fn commit_log(&self, group: &str) -> Vec<CommitRecord> {
        let st = self.inner.state();
        st.groups
            .get(group)
            .map(|g| g.commit_log.clone())
            .unwrap_or_default()
    }

    /// How many members `group` has.
    pub fn member_count(&self, group: &str) -> usize {
        self.inner
            .state()
            .groups
            .get(group)
            .map_or(0, |g| g.members.len())
    }

    /// Forces a rebalance of `group`: every member gives up its partitions (committing
    /// stored positions first) and receives its new assignment on its next poll.
    pub fn rebalance(&self, group: &str) {
        self.inner.state().rebalance(group);
        self.inner.changed.notify_waiters();
    }

    /// Starts building a consumer in `group`.
    pub fn consumer(&self, group: impl Into<String>) -> MockSourceBuilder {
        MockSourceBuilder::new(self.clone(), group.into())
    }

    fn with_log<T>(
        &self,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&PartitionLog) -> T,
    ) -> Result<T, MockError> {
        let st = self.inner.state();
        let t = st
            .topics
            .get(topic)
            .ok_or_else(|| MockError::UnknownTopic(topic.to_owned()))?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .map(f)
            .ok_or_else(|| MockError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
    }
}

impl std::fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state();
        f.debug_struct("MockCluster")
            .field("topics", &st.topics.keys().collect::<Vec<_>>())
            .field("groups", &st.groups.keys().collect::<Vec<_>>())
            .finish()
    }
}
