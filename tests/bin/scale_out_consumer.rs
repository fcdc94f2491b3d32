//! `ktm-scale-out-consumer`: one member of a consumer group, for the scale-out test
//! (`tests/scale_out.rs`), which runs several of these in containers and kills one.
//!
//! It runs a [`ThreadManager`] over the rskafka backend and reports on stdout, one
//! flushed line each:
//! - `STARTED` once the manager runs;
//! - `HANDLED <partition> <offset>` for every message, from the callback, so a message
//!   is reported before its position can be committed;
//! - `ASSIGNED <p>,<p>,...` when the assignment changes, `COMMITTED <partition>
//!   <position>` when a committed position changes and `COMMIT_ERRORS <n>` when failed
//!   commits are counted (all sampled from the manager's stats every 20 ms, so they may
//!   lag what happened);
//! - `STOPPED <handled>` when the lifetime ran out.
//!
//! Settings, as `--name value` arguments or `KTM_*` environment variables:
//! `--bootstrap` (`KTM_BOOTSTRAP`, required), `--topic` (`KTM_TOPIC`, required),
//! `--group` (`KTM_GROUP`, required), `--commit-every` (`KTM_COMMIT_EVERY`, default 5),
//! `--lifetime-secs` (`KTM_LIFETIME_SECS`, default 0: run until killed),
//! `--session-timeout-ms` (`KTM_SESSION_TIMEOUT_MS`, default 6000).

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::time::Duration;

use kafka_thread_manager::rskafka::RskafkaSource;
use kafka_thread_manager::{CommitPolicy, Message, State, ThreadManager};

/// The settings, from the command line and the environment.
struct Settings {
    bootstrap: String,
    topic: String,
    group: String,
    commit_every: u64,
    lifetime: Duration,
    session_timeout: Duration,
}

impl Settings {
    fn parse() -> Result<Self, Box<dyn Error>> {
        let mut given = BTreeMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}; expected --name value").into());
            };
            let value = args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            given.insert(name.to_owned(), value);
        }
        let get = |name: &str| -> Option<String> {
            given.get(name).cloned().or_else(|| {
                let var = format!("KTM_{}", name.replace('-', "_").to_uppercase());
                std::env::var(var).ok().filter(|v| !v.is_empty())
            })
        };
        let required = |name: &str| -> Result<String, Box<dyn Error>> {
            get(name).ok_or_else(|| format!("--{name} is required").into())
        };
        let number = |name: &str, default: u64| -> Result<u64, Box<dyn Error>> {
            match get(name) {
                Some(v) => v
                    .parse()
                    .map_err(|e| format!("--{name} {v:?} is not a number: {e}").into()),
                None => Ok(default),
            }
        };
        Ok(Self {
            bootstrap: required("bootstrap")?,
            topic: required("topic")?,
            group: required("group")?,
            commit_every: number("commit-every", 5)?,
            lifetime: Duration::from_secs(number("lifetime-secs", 0)?),
            session_timeout: Duration::from_millis(number("session-timeout-ms", 6_000)?),
        })
    }
}

/// Writes one line to stdout and flushes it, so `docker logs` has it at once.
fn report(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn main() -> Result<(), Box<dyn Error>> {
    let settings = Settings::parse()?;
    let source = RskafkaSource::builder()
        .bootstrap_servers([settings.bootstrap.clone()])
        .topics([settings.topic.clone()])
        .group_id(settings.group.clone())
        .session_timeout(settings.session_timeout)
        .heartbeat_interval(Duration::from_secs(1))
        .fetch_max_wait(Duration::from_millis(100))
        .build()?;
    let manager = ThreadManager::builder(source)
        .callback(|msg: &Message| -> std::io::Result<()> {
            report(format_args!("HANDLED {} {}", msg.partition(), msg.offset()))
        })
        .thread_lifetime(settings.lifetime)
        .commit_policy(CommitPolicy::EveryN(settings.commit_every))
        .build()?;
    manager.start()?;
    report(format_args!("STARTED"))?;

    let mut assignment = Vec::new();
    let mut committed = BTreeMap::new();
    let mut commit_errors = 0;
    loop {
        let stats = manager.stats();
        let now: Vec<i32> = stats.assignment.iter().map(|tp| tp.partition()).collect();
        if now != assignment {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            report(format_args!("ASSIGNED {}", list.join(",")))?;
            assignment = now;
        }
        for (tp, position) in stats.committed.iter() {
            if committed.insert(tp.partition(), position) != Some(position) {
                report(format_args!("COMMITTED {} {position}", tp.partition()))?;
            }
        }
        if stats.counts.commit_errors != commit_errors {
            commit_errors = stats.counts.commit_errors;
            report(format_args!("COMMIT_ERRORS {commit_errors}"))?;
        }
        if !matches!(stats.state, State::Created | State::Running) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = manager.wait(None)?;
    report(format_args!("STOPPED {}", stopped.counts.messages_handled))?;
    if stopped.reason.is_failure() {
        return Err(format!("the consumer failed: {:?}", stopped.reason).into());
    }
    Ok(())
}
