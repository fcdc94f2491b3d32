//! Compressed backlogs for `--fetch-path`'s codec rows, written with librdkafka's
//! producer (rskafka's producer has no lz4 nor zstd), in batches of up to 10,000
//! records per partition, every partition starting at offset 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use crate::BoxResult;

/// How long the producer may take to deliver what it still holds at the end.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);

/// A `compression.codec` of librdkafka's producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// Its name, as `compression.codec` spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// `a,b,c` into codecs (`off`: none at all, no codec rows).
    pub(crate) fn parse_list(s: &str) -> BoxResult<Vec<Self>> {
        if s == "off" {
            return Ok(Vec::new());
        }
        s.split(',')
            .map(|n| {
                Self::ALL
                    .into_iter()
                    .find(|c| c.name() == n.trim())
                    .ok_or_else(|| format!("unknown codec {n:?}").into())
            })
            .collect()
    }
}

/// Counts the producer's deliveries and keeps the first failure.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Writes `messages` records of `size` bytes round-robin over the `partitions` of
/// `topic` (which exists), compressed with `codec`.
pub(crate) fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    messages: u64,
    size: usize,
    codec: Codec,
) -> BoxResult<()> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.codec", codec.name())
        // Full batches: 10,000 records (1 MB at 100 B, librdkafka's batch.size) per
        // partition, as the uncompressed backlogs are written.
        .set("linger.ms", "100")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("enable.idempotence", "false")
        .set("acks", "1")
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("a producer with compression.codec={}: {e}", codec.name()))?;
    let bar = ProgressBar::new(messages).with_style(
        ProgressStyle::with_template(&format!(
            "producing {} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})",
            codec.name()
        ))?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut words = Words::new(0x9E37_79B9_7F4A_7C15);
    let partitions_u64 = u64::try_from(partitions.max(1))?;
    for seq in 0..messages {
        let payload = words.payload(seq, size);
        let partition = i32::try_from(seq % partitions_u64)?;
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(payload.as_slice())
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Its queue is full: serve deliveries until there is room.
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("producing to {topic}: {e}").into()),
            }
        }
        if seq % 10_000 == 0 {
            producer.poll(Duration::ZERO);
            bar.set_position(seq);
        }
    }
    producer.flush(FLUSH_TIMEOUT)?;
    bar.finish_and_clear();
    let context = producer.context();
    let (ok, failed) = (
        context.ok.load(Ordering::Relaxed),
        context.failed.load(Ordering::Relaxed),
    );
    if failed > 0 || ok != messages {
        let first = context
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        return Err(
            format!("{topic}: {ok} of {messages} delivered, {failed} failed: {first}").into(),
        );
    }
    eprintln!(
        "produced {messages} x {size} B ({}) over {partitions} partitions to {topic} in {:.1?}",
        codec.name(),
        started.elapsed()
    );
    Ok(())
}

/// Payloads that compress about as text does: a JSON-like event with a sequence
/// number, a user id and words drawn from a small vocabulary (a run of one byte
/// would make every codec look alike and decompression nearly free).
struct Words {
    state: u64,
}

impl Words {
    const VOCABULARY: [&'static str; 32] = [
        "click", "view", "cart", "order", "login", "logout", "search", "refund", "alpha", "bravo",
        "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
        "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform",
        "victor", "whiskey", "xray",
    ];

    fn new(seed: u64) -> Self {
        Self { state: seed | 1 }
    }

    /// xorshift64*: cheap, and the same backlog on every run.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn word(&mut self) -> &'static str {
        Self::VOCABULARY[(self.next() % 32) as usize]
    }

    /// Exactly `size` bytes.
    fn payload(&mut self, seq: u64, size: usize) -> Vec<u8> {
        let user = self.next() % 100_000;
        let event = self.word();
        let mut s = format!(r#"{{"seq":{seq},"user":"u{user:05}","event":"{event}","note":""#);
        while s.len() < size {
            s.push_str(self.word());
            s.push(' ');
        }
        let mut bytes = s.into_bytes();
        bytes.truncate(size);
        if size >= 2 {
            bytes[size - 2..].copy_from_slice(b"\"}");
        }
        bytes
    }
}
