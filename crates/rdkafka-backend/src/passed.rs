//! Offsets librdkafka passes over without returning them: transaction markers, and
//! under read_committed the records of aborted transactions. Its application position
//! (`rd_kafka_position`) moves past them; the manager's must too, or an idle
//! transactional partition would keep a lag of one marker, uncommitted, for ever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ktm_core::{PollBatch, TopicPartition};
use rdkafka::consumer::Consumer;
use rdkafka::Offset;
use tracing::debug;

use crate::worker::RdConsumer;

/// How often an idle consumer asks librdkafka for its positions.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Per partition: where the records handed to the manager end, and what was reported.
#[derive(Debug)]
pub(crate) struct PassedOver {
    delivered_end: HashMap<TopicPartition, i64>,
    reported: HashMap<TopicPartition, i64>,
    checked_at: Instant,
}

impl Default for PassedOver {
    fn default() -> Self {
        Self {
            delivered_end: HashMap::new(),
            reported: HashMap::new(),
            checked_at: Instant::now(),
        }
    }
}

impl PassedOver {
    /// Notes the end of each partition's records in `batch` (once per partition run,
    /// not per message).
    pub(crate) fn note_delivered(&mut self, batch: &PollBatch) {
        let messages = batch.messages();
        for (i, m) in messages.iter().enumerate() {
            let last_of_run = messages
                .get(i + 1)
                .is_none_or(|next| next.partition() != m.partition() || next.topic() != m.topic());
            if last_of_run {
                self.delivered_end
                    .insert(m.topic_partition(), m.offset() + 1);
            }
        }
    }

    /// On an idle poll, now and then: reports the partitions whose librdkafka position
    /// is past the records handed over.
    pub(crate) fn report(&mut self, consumer: &RdConsumer, batch: &mut PollBatch) {
        if !batch.is_empty() || self.checked_at.elapsed() < CHECK_EVERY {
            return;
        }
        self.checked_at = Instant::now();
        let positions = match consumer.position() {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "no positions from librdkafka");
                return;
            }
        };
        for e in positions.elements() {
            let Offset::Offset(position) = e.offset() else {
                continue;
            };
            let tp = TopicPartition::new(e.topic(), e.partition());
            let after = self.delivered_end.get(&tp).copied();
            let reported = self.reported.get(&tp).copied().unwrap_or(i64::MIN);
            if position > after.unwrap_or(i64::MIN) && position > reported {
                self.reported.insert(tp.clone(), position);
                batch.pass(tp, after, position);
            }
        }
    }

    /// Forgets partitions no longer assigned.
    pub(crate) fn forget(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.delivered_end.remove(tp);
            self.reported.remove(tp);
        }
    }
}
