//! `ktm-bench --rebalance`: how long each partition of a 3-member group stops being
//! consumed when a 4th member joins, eager (`range`) against cooperative
//! (`cooperative-sticky`), on both backends.
//!
//! One topic is written continuously (one record per produce request, so that every
//! offset starts a batch: Tansu 0.6 answers a fetch that starts inside a batch wrongly),
//! `rate` records/s on every partition. For each join, a fresh group of 3 managers
//! (offset reset latest) consumes it with a callback that notes, per partition, when
//! each record was handled and by which member. Once the 3 are steady, a 4th starts;
//! once it consumes its share and every partition is consumed again, all 4 stop and
//! the log is analysed (`rebalance_report`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ktm_core::{ConsumerConfig, Message as CoreMessage, OffsetReset, ThreadManager};
use ktm_rdkafka::RdkafkaSource;
use ktm_rskafka::{Assignor, RskafkaSource};

use crate::broker::Broker;
use crate::produce::{self, TopicSpec};
use crate::rebalance_report::{analyse, section, splice, Row};
pub(crate) use crate::rebalance_settings::{Settings, Variant};
use crate::BoxResult;

/// How long the 3 members must consume every partition, with no partition changing
/// member, before the 4th starts; also the tail kept after the group settled.
pub(crate) const STEADY: Duration = Duration::from_millis(1500);
/// A partition counts as consumed "now" when it had a record this recently.
const FRESH: Duration = Duration::from_millis(500);
/// How long a group may take to get steady, or to settle after the join.
const DEADLINE: Duration = Duration::from_secs(30);
/// A row stops after this many failed joins in a row.
const GIVE_UP: usize = 2;
/// Records of 100 bytes, as the throughput rows.
const SIZE: usize = 100;

/// Every handled record: per partition, when it was handled and by which member.
pub(crate) struct Log {
    pub(crate) partitions: Vec<Mutex<Vec<(Instant, u8)>>>,
}

impl Log {
    fn new(partitions: i32, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            partitions: (0..partitions)
                .map(|_| Mutex::new(Vec::with_capacity(capacity)))
                .collect(),
        })
    }

    #[inline]
    fn record(&self, partition: i32, member: u8) {
        if let Some(p) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.partitions.get(p))
        {
            if let Ok(mut v) = p.lock() {
                v.push((Instant::now(), member));
            }
        }
    }

    /// Per partition: the last record's time and member.
    fn last(&self) -> Vec<Option<(Instant, u8)>> {
        self.partitions
            .iter()
            .map(|p| p.lock().ok().and_then(|v| v.last().copied()))
            .collect()
    }

    /// The first time `member` handled a record, if it did.
    fn first_of(&self, member: u8) -> Option<Instant> {
        self.partitions
            .iter()
            .filter_map(|p| {
                let v = p.lock().ok()?;
                v.iter().find(|(_, m)| *m == member).map(|(t, _)| *t)
            })
            .min()
    }
}

/// Runs every row `joins` times against a Tansu started here (or `brokers`, or the mock
/// cluster), prints the
/// section and writes it into `out` (replacing an earlier one).
pub(crate) fn run(s: &Settings, brokers: Option<&str>, out: &Path, command: &str) -> BoxResult<()> {
    let started = Instant::now();
    let broker = match brokers {
        Some(address) => Broker::given(address),
        None if s.mock_cluster => Broker::start_mock()?,
        None => Broker::start_tansu()?,
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let topic = format!("ktm-bench-rebalance-{nanos}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let spec = TopicSpec {
        name: &topic,
        partitions: s.partitions,
        messages: 0,
        batch: 1,
    };
    match broker.mock() {
        Some(mock) => mock.create_topic(&topic, s.partitions, 1)?,
        None => rt.block_on(produce::produce(&broker.address, &[spec], SIZE))?,
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = rt.spawn(produce::write_continuously(
        broker.address.clone(),
        topic.clone(),
        s.partitions,
        s.rate,
        SIZE,
        Arc::clone(&stop),
    ));
    let mut rows = Vec::new();
    let mut result = Ok(());
    for &variant in &s.rows {
        let mut joins = Vec::new();
        for i in 0..s.joins {
            let group = format!("{topic}-{}-{i}", variant.name());
            let outcome = one_join(variant, &broker.address, &topic, &group, s)
                .map(|log| analyse(&log.0, log.1, log.2, Duration::from_secs(1) / s.rate));
            match &outcome {
                Ok(j) => eprintln!(
                    "{}: join {}/{}: {}",
                    variant.name(),
                    i + 1,
                    s.joins,
                    j.line()
                ),
                Err(e) => eprintln!(
                    "{}: join {}/{}: FAILED: {e}",
                    variant.name(),
                    i + 1,
                    s.joins
                ),
            }
            joins.push(outcome.map_err(|e| e.to_string()));
            if joins.len() >= GIVE_UP && joins.iter().rev().take(GIVE_UP).all(Result::is_err) {
                eprintln!(
                    "{}: {GIVE_UP} failed joins in a row: giving up",
                    variant.name()
                );
                break;
            }
        }
        rows.push(Row { variant, joins });
    }
    stop.store(true, Ordering::Relaxed);
    match rt.block_on(writer) {
        Ok(Err(e)) => result = Err(format!("the writer failed: {e}").into()),
        Err(e) => result = Err(format!("the writer panicked: {e}").into()),
        Ok(Ok(())) => {}
    }
    let md = section(command, &broker.description, s, &rows, started.elapsed());
    println!("{md}");
    let existing = std::fs::read_to_string(out).unwrap_or_default();
    std::fs::write(out, splice(&existing, &md, s.mock_cluster))?;
    println!("wrote the rebalance section into {}", out.display());
    drop(broker);
    result
}

/// A group member: a manager whose callback notes each record in `log` as `member`.
fn member(
    variant: Variant,
    brokers: &str,
    topic: &str,
    group: &str,
    member: u8,
    log: &Arc<Log>,
    s: &Settings,
) -> BoxResult<ThreadManager> {
    // The settings both backends share, validated once (fetch.wait.max.ms 5 included).
    let consumer = ConsumerConfig::builder()
        .bootstrap_servers([brokers])
        .topics([topic])
        .group_id(group)
        .client_id(format!("{group}-m{member}"))
        .offset_reset(OffsetReset::Latest)
        .session_timeout(s.session_timeout)
        .heartbeat_interval(s.heartbeat)
        .fetch_max_wait(Duration::from_millis(5))
        .build()?;
    let builder = match variant {
        Variant::RskafkaEager | Variant::RskafkaCooperative => {
            let assignor = if variant.cooperative() {
                Assignor::CooperativeSticky
            } else {
                Assignor::Range
            };
            ThreadManager::builder(
                RskafkaSource::builder()
                    .config(consumer)
                    .assignor(assignor)
                    .build()?,
            )
        }
        Variant::RdkafkaEager | Variant::RdkafkaCooperative => {
            let strategy = if variant.cooperative() {
                "cooperative-sticky"
            } else {
                "range"
            };
            ThreadManager::builder(
                RdkafkaSource::builder()
                    .config(consumer)
                    .set("fetch.queue.backoff.ms", "5")
                    .set("partition.assignment.strategy", strategy)
                    .build()?,
            )
        }
    };
    let log = Arc::clone(log);
    Ok(builder
        .thread_lifetime(None)
        .thread_name(format!("m{member}"))
        .callback(move |m: &CoreMessage| -> Result<(), std::io::Error> {
            log.record(m.partition(), member);
            Ok(())
        })
        .build()?)
}

/// One join in a fresh group: the log, when the 4th started, when the window closed.
fn one_join(
    variant: Variant,
    brokers: &str,
    topic: &str,
    group: &str,
    s: &Settings,
) -> BoxResult<(Arc<Log>, Instant, Instant)> {
    let per_partition = (s.rate as usize) * (DEADLINE.as_secs() as usize) * 3;
    let log = Log::new(s.partitions, per_partition);
    let mut managers = Vec::new();
    let outcome = (|| -> BoxResult<(Instant, Instant)> {
        // One at a time: each joins a steady group, as the 4th will.
        for m in 0..3 {
            managers.push(member(variant, brokers, topic, group, m, &log, s)?);
            managers[usize::from(m)].start()?;
            wait_steady(&log, m + 1)?;
        }
        let join = Instant::now();
        managers.push(member(variant, brokers, topic, group, 3, &log, s)?);
        managers[3].start()?;
        let share = usize::try_from(s.partitions / 4)?;
        let settled = wait_settled(&log, share, join)?;
        std::thread::sleep(STEADY);
        eprintln!(
            "{}: settled {:.2} s after the join",
            variant.name(),
            settled.duration_since(join).as_secs_f64()
        );
        Ok((join, Instant::now()))
    })();
    for m in &managers {
        if let Err(e) = m.stop() {
            eprintln!("{group}: stop: {e}");
        }
    }
    let (join, end) = outcome?;
    Ok((log, join, end))
}

/// Waits until every partition is consumed, by members `0..members` each owning some,
/// and no partition changed member for [`STEADY`].
fn wait_steady(log: &Log, members: u8) -> BoxResult<()> {
    let deadline = Instant::now() + DEADLINE;
    let mut owners: Vec<Option<u8>> = Vec::new();
    let mut since = Instant::now();
    loop {
        let now = Instant::now();
        let last = log.last();
        let current: Vec<Option<u8>> = last
            .iter()
            .map(|l| {
                l.filter(|(t, _)| now.duration_since(*t) < FRESH)
                    .map(|(_, m)| m)
            })
            .collect();
        let all_members = (0..members).all(|m| current.contains(&Some(m)));
        if current != owners || current.contains(&None) || !all_members {
            owners = current;
            since = now;
        } else if now.duration_since(since) >= STEADY {
            return Ok(());
        }
        if now > deadline {
            return Err(format!("the group was not steady after {DEADLINE:?}: {owners:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the 4th member (3) consumes `share` partitions and every partition had a
/// record after the 4th member's first; returns when.
fn wait_settled(log: &Log, share: usize, join: Instant) -> BoxResult<Instant> {
    let deadline = join + DEADLINE;
    loop {
        let now = Instant::now();
        if let Some(first) = log.first_of(3) {
            let last = log.last();
            let fourth = last.iter().filter(|l| matches!(l, Some((_, 3)))).count();
            if fourth >= share && last.iter().all(|l| matches!(l, Some((t, _)) if *t > first)) {
                return Ok(now);
            }
        }
        if now > deadline {
            return Err(format!(
                "not settled {DEADLINE:?} after the join (last per partition: {:?})",
                log.last()
                    .iter()
                    .map(|l| l.map(|(t, m)| (m, now.duration_since(t).as_millis())))
                    .collect::<Vec<_>>()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
