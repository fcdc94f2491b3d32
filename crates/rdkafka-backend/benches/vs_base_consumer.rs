//! Messages per second of a `ThreadManager` over `RdkafkaSource` with a no-op callback,
//! against a hand-written `BaseConsumer` poll loop, on the same topic in one run.
//!
//! Needs a broker: `KAFKA_BOOTSTRAP_SERVERS=host:port cargo bench -p ktm-rdkafka`.
//! `KTM_BENCH_RECORDS` sets the record count (default 300,000).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ktm_core::{Message as CoreMessage, ThreadManager};
use ktm_rdkafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ktm_rdkafka::rdkafka::client::DefaultClientContext;
use ktm_rdkafka::rdkafka::consumer::{BaseConsumer, Consumer};
use ktm_rdkafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use ktm_rdkafka::rdkafka::{ClientConfig, Message};
use ktm_rdkafka::RdkafkaSource;

const PARTITIONS: i32 = 3;
const ROUNDS: usize = 2;

fn main() {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        eprintln!("vs_base_consumer: skipped, KAFKA_BOOTSTRAP_SERVERS is not set (start a broker with scripts/tansu.sh start)");
        return;
    };
    let records: u64 = std::env::var("KTM_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let topic = format!("ktm-bench-{}", std::process::id());
    create_topic(&bootstrap, &topic);
    produce(&bootstrap, &topic, records);
    eprintln!("produced {records} records of 100 bytes to {topic} ({PARTITIONS} partitions)");

    let mut base = Vec::new();
    let mut manager = Vec::new();
    for round in 0..ROUNDS {
        base.push(base_consumer_loop(&bootstrap, &topic, records, round));
        manager.push(thread_manager(&bootstrap, &topic, records, round));
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (b, m) = (best(&base), best(&manager));
    println!();
    println!("| consumer ({records} records, best of {ROUNDS}) | messages/s | ratio |");
    println!("|---|---:|---:|");
    println!("| BaseConsumer poll loop | {b:>12.0} | 1.00 |");
    println!(
        "| ThreadManager + RdkafkaSource, no-op callback | {m:>12.0} | {:.2} |",
        m / b
    );
    println!("rounds: base {base:.0?}, manager {manager:.0?}");
}

fn create_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap()
    {
        r.unwrap();
    }
}

fn produce(bootstrap: &str, topic: &str, records: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let payload = [b'x'; 100];
    for i in 0..records {
        let key = i.to_string();
        let partition = (i % PARTITIONS as u64) as i32;
        let mut record = BaseRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    c
}

/// Messages/s from the first record to the last.
fn base_consumer_loop(bootstrap: &str, topic: &str, records: u64, round: usize) -> f64 {
    let consumer: BaseConsumer = consumer_config(bootstrap, &format!("{topic}-base-{round}"))
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut first = None;
    while n < records {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    let rate = records as f64 / first.unwrap().elapsed().as_secs_f64();
    eprintln!("round {round}: BaseConsumer {rate:.0} msg/s ({bytes} bytes)");
    rate
}

fn thread_manager(bootstrap: &str, topic: &str, records: u64, round: usize) -> f64 {
    let source = RdkafkaSource::builder()
        .bootstrap_servers([bootstrap])
        .topics([topic])
        .group_id(format!("{topic}-ktm-{round}"))
        .session_timeout(Duration::from_millis(6000))
        .heartbeat_interval(Duration::from_millis(1000))
        .build()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None));
    let (c, f) = (Arc::clone(&count), Arc::clone(&first));
    let manager = ThreadManager::builder(source)
        .callback(move |m: &CoreMessage| -> Result<(), std::io::Error> {
            if c.fetch_add(1, Ordering::Relaxed) == 0 {
                *f.lock().unwrap() = Some(Instant::now());
            }
            std::hint::black_box(m.payload());
            Ok(())
        })
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    manager.start().unwrap();
    while count.load(Ordering::Relaxed) < records {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = first.lock().unwrap().unwrap().elapsed();
    manager.stop().unwrap();
    let rate = records as f64 / elapsed.as_secs_f64();
    eprintln!("round {round}: ThreadManager {rate:.0} msg/s");
    rate
}
