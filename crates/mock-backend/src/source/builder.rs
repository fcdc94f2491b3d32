//! How a consumer of the mock cluster is configured: its group, subscription and reset.

use ktm_core::{OffsetReset, Offsets, TopicPartition};

use super::MockSource;
use crate::cluster::MockCluster;
use crate::MockError;

pub(crate) enum Mode {
    Subscribe(Vec<String>),
    /// Every topic whose name matches this glob (`*` for any run of characters), as
    /// the cluster has them when the member joins.
    Pattern(String),
    Assign(Vec<TopicPartition>),
}

/// Builds a [`MockSource`]; from [`MockCluster::consumer`].
#[must_use]
pub struct MockSourceBuilder {
    cluster: MockCluster,
    group: String,
    mode: Option<Mode>,
    reset: OffsetReset,
    max_batch: usize,
}

impl MockSourceBuilder {
    pub(crate) fn new(cluster: MockCluster, group: String) -> Self {
        Self {
            cluster,
            group,
            mode: None,
            reset: OffsetReset::Earliest,
            max_batch: 500,
        }
    }

    /// Join the group and share these topics with its other members.
    pub fn subscribe(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.mode = Some(Mode::Subscribe(
            topics.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Join the group and share every topic whose name matches `pattern`, a glob where
    /// `*` stands for any run of characters (Kafka's pattern subscriptions take a
    /// regex; the mock keeps it simple). Topics are matched when the member joins; a
    /// pattern may match nothing, as in Kafka.
    pub fn subscribe_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.mode = Some(Mode::Pattern(pattern.into()));
        self
    }

    /// Read exactly these partitions, without membership; commits go to the group.
    pub fn assign(mut self, partitions: impl IntoIterator<Item = TopicPartition>) -> Self {
        self.mode = Some(Mode::Assign(partitions.into_iter().collect()));
        self
    }

    /// Where to start without a committed offset (default earliest).
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.reset = reset;
        self
    }

    /// Most records one poll returns (default 500).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max;
        self
    }

    /// Checks the settings and builds the consumer; it joins its group on first poll.
    ///
    /// # Errors
    /// [`MockError::Config`] for an empty group id, no topics or a zero batch size;
    /// [`MockError::UnknownTopic`] / [`MockError::UnknownPartition`] for what the cluster
    /// does not have.
    pub fn build(self) -> Result<MockSource, MockError> {
        if self.group.is_empty() {
            return Err(MockError::Config("group id must not be empty"));
        }
        if self.max_batch == 0 {
            return Err(MockError::Config("max batch must be at least 1"));
        }
        let mode = self
            .mode
            .ok_or(MockError::Config("call subscribe(..) or assign(..)"))?;
        {
            let st = self.cluster.inner.state();
            let check_topic = |t: &str| match st.partition_count(t) {
                0 => Err(MockError::UnknownTopic(t.to_owned())),
                n => Ok(n),
            };
            match &mode {
                Mode::Pattern(_) => {}
                Mode::Subscribe(topics) if topics.is_empty() => {
                    return Err(MockError::Config("subscribe to at least one topic"))
                }
                Mode::Assign(tps) if tps.is_empty() => {
                    return Err(MockError::Config("assign at least one partition"))
                }
                Mode::Subscribe(topics) => {
                    for t in topics {
                        check_topic(t)?;
                    }
                }
                Mode::Assign(tps) => {
                    for tp in tps {
                        if tp.partition() < 0 || tp.partition() >= check_topic(tp.topic())? {
                            return Err(MockError::UnknownPartition {
                                topic: tp.topic().to_owned(),
                                partition: tp.partition(),
                            });
                        }
                    }
                }
            }
        }
        Ok(MockSource {
            cluster: self.cluster,
            group: self.group,
            mode,
            reset: self.reset,
            max_batch: self.max_batch,
            member: None,
            generation_seen: 0,
            held: Vec::new(),
            stored: Offsets::new(),
            closed: false,
        })
    }
}
