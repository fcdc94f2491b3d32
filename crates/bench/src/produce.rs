//! Creates the topics and produces the backlog with rskafka, in large batches from
//! offset 0 (Tansu 0.6 returns wrong records to a fetch that starts inside a batch;
//! every consumer here starts at offset 0, a batch boundary). For `--rebalance`, also
//! writes a topic continuously, one record per request (so every offset starts a batch).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use rskafka::chrono::DateTime;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;

use crate::BoxResult;

/// Records per produce request (1 MB at 100 B), for topics read straight through.
pub(crate) const BATCH: usize = 10_000;

/// `total` split over `partitions`, the first ones taking the remainder.
pub(crate) fn split(total: u64, partitions: i32) -> Vec<u64> {
    let n = u64::try_from(partitions.max(1)).unwrap_or(1);
    (0..n)
        .map(|i| total / n + u64::from(i < total % n))
        .collect()
}

/// A topic to create and what to write to it.
pub(crate) struct TopicSpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) partitions: i32,
    /// Records spread evenly over the partitions (0: an empty topic).
    pub(crate) messages: u64,
    /// Records per produce request, so per record batch. A consumer that pauses and
    /// resumes a partition fetches again from where it stopped; Tansu 0.6 answers a
    /// fetch that starts inside a batch wrongly (librdkafka then gets nothing), so topics
    /// read with pauses use batches of one record.
    pub(crate) batch: usize,
}

/// Creates each topic and writes its records of `size` bytes.
pub(crate) async fn produce(
    bootstrap: &str,
    topics: &[TopicSpec<'_>],
    size: usize,
) -> BoxResult<()> {
    let client = ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await?;
    let controller = client.controller_client()?;
    for t in topics {
        controller
            .create_topic(t.name, t.partitions, 1, 5_000)
            .await?;
    }
    fill_all(&client, topics, size).await
}

/// Writes each topic's records of `size` bytes, the topics being created already
/// (librdkafka's mock cluster has no CreateTopics: they are made through it).
pub(crate) async fn fill_created(
    bootstrap: &str,
    topics: &[TopicSpec<'_>],
    size: usize,
) -> BoxResult<()> {
    let client = ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await?;
    fill_all(&client, topics, size).await
}

/// Writes the records of every topic that has some.
async fn fill_all(
    client: &rskafka::client::Client,
    topics: &[TopicSpec<'_>],
    size: usize,
) -> BoxResult<()> {
    for t in topics.iter().filter(|t| t.messages > 0) {
        fill(client, t, size).await?;
    }
    Ok(())
}

async fn fill(client: &rskafka::client::Client, t: &TopicSpec<'_>, size: usize) -> BoxResult<()> {
    let (topic, messages, partitions) = (t.name, t.messages, t.partitions);
    let batch = t.batch.max(1) as u64;
    let ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let timestamp =
        DateTime::from_timestamp_millis(i64::try_from(ms)?).ok_or("the clock is out of range")?;
    let bar = ProgressBar::new(messages).with_style(
        ProgressStyle::with_template("producing [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    for (p, count) in (0..partitions).zip(split(messages, partitions)) {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await?;
        let mut left = count;
        while left > 0 {
            let k = left.min(batch);
            let records = (0..k)
                .map(|_| Record {
                    key: None,
                    value: Some(vec![b'x'; size]),
                    headers: BTreeMap::new(),
                    timestamp,
                })
                .collect();
            pc.produce(records, Compression::NoCompression).await?;
            left -= k;
            bar.inc(k);
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "produced {messages} x {size} B over {partitions} partitions to {topic} in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// Writes one record per request to every partition, `rate` a second each, until `stop`.
pub(crate) async fn write_continuously(
    bootstrap: String,
    topic: String,
    partitions: i32,
    rate: u32,
    size: usize,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let client = ClientBuilder::new(vec![bootstrap])
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let period = Duration::from_secs(1) / rate.max(1);
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic.as_str(), p, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| e.to_string())?;
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let record = Record {
                    key: None,
                    value: Some(vec![b'x'; size]),
                    headers: BTreeMap::new(),
                    timestamp: DateTime::from_timestamp_millis(now_ms()).unwrap_or_default(),
                };
                pc.produce(vec![record], Compression::NoCompression)
                    .await
                    .map_err(|e| format!("partition {p}: {e}"))?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0)
}
