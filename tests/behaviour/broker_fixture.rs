//! Fixture parts shared by the real-broker backends: topics and records go through the
//! broker fixture's own client.

use std::time::Duration;

use rskafka::client::partition::Compression;

use super::TestRecord;
use crate::support::{record, KafkaBroker};

/// Tansu answers a group join within half the session timeout; rejoining followers
/// wait about 3 s more. Generous, since a slow CI machine must not fail here.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Produces each record as a batch of its own. Tansu 0.6.0 answers a fetch that starts
/// inside a batch with the log's last record repeated (fetching offset 1 of a batch
/// 0..=4 followed by record 5 returns record 5 five times, for every client), and its
/// ListOffsets(latest) can answer inside a batch too; so the suite keeps every offset
/// at a batch boundary, and consumers that restart or reset mid-log read what was
/// produced.
pub fn produce(broker: &KafkaBroker, topic: &str, partition: i32, records: Vec<TestRecord>) {
    for r in records {
        let headers = r
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        let one = record(
            r.key.map(|k| k.to_vec()),
            r.payload.map(|p| p.to_vec()),
            headers,
        );
        broker.produce(topic, partition, vec![one], Compression::NoCompression);
    }
}
