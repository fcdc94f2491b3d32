//! The analysis of one join's log and the `--rebalance` section of `docs/BENCHMARKS.md`.
//!
//! Pause of a partition in one join: the longest gap between two consecutive records of
//! that partition handled (by any member) with the gap ending after the 4th member
//! started and beginning before the window closed, counted only when it exceeds
//! [`STOPPED_FACTOR`] times the partition's median gap between records over the
//! [`STEADY`] before the join (else 0: the partition never stopped). A partition moved
//! when the member that handled its last record before the join is not the one that
//! handled its last record in the window.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::rebalance::{Log, Settings, Variant, STEADY};
use crate::sections;

/// A gap counts as a stop above this many steady inter-record gaps.
pub(crate) const STOPPED_FACTOR: f64 = 10.0;
/// The heading that starts the section; the main run keeps the section as it is.
const HEADING: &str = "## Rebalance: a 4th member joins a 3-member group";
/// The same against librdkafka's mock cluster (`--mock-cluster`): a section of its own.
const MOCK_HEADING: &str =
    "## Rebalance on librdkafka's mock cluster: a 4th member joins a 3-member group";

fn heading(mock: bool) -> &'static str {
    if mock {
        MOCK_HEADING
    } else {
        HEADING
    }
}

/// What one join measured, in milliseconds.
#[derive(Clone, Debug, Default)]
pub(crate) struct JoinOutcome {
    /// Pauses of partitions that moved to another member.
    pub(crate) moved: Vec<f64>,
    /// Pauses of partitions that stayed with their member.
    pub(crate) stayed: Vec<f64>,
    /// The longest gap of a stayed partition, stop or not.
    pub(crate) stayed_longest_gap: f64,
    /// The median over partitions of the steady inter-record gap.
    pub(crate) steady_gap: f64,
    /// The longest gap of any partition over the steady time before the join.
    pub(crate) steady_longest_gap: f64,
}

impl JoinOutcome {
    /// A progress line.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} moved (median pause {:.0} ms), {} stayed (median pause {:.0} ms, {} stopped, \
             longest gap {:.0} ms); steady gap {:.1} ms, longest {:.0} ms",
            self.moved.len(),
            median(&self.moved),
            self.stayed.len(),
            median(&self.stayed),
            self.stayed.iter().filter(|p| **p > 0.0).count(),
            self.stayed_longest_gap,
            self.steady_gap,
            self.steady_longest_gap
        )
    }
}

/// One row: every join of a backend and assignor.
pub(crate) struct Row {
    pub(crate) variant: Variant,
    pub(crate) joins: Vec<Result<JoinOutcome, String>>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median (mean of the middle two for an even count); 0 for none.
pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn max(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().fold(0.0, f64::max)
}

/// Analyses one join: the 4th member started at `join`, the window closed at `end`;
/// `period`: the time between two records written to a partition.
pub(crate) fn analyse(log: &Log, join: Instant, end: Instant, period: Duration) -> JoinOutcome {
    let mut out = JoinOutcome::default();
    let mut steady_gaps = Vec::new();
    for p in &log.partitions {
        let Ok(records) = p.lock().map(|v| v.clone()) else {
            continue;
        };
        let steady: Vec<f64> = records
            .windows(2)
            .filter(|w| w[0].0 + STEADY >= join && w[1].0 <= join)
            .map(|w| ms(w[1].0.duration_since(w[0].0)))
            .collect();
        let steady_gap = median(&steady);
        steady_gaps.push(steady_gap);
        let before = records.iter().rev().find(|(t, _)| *t <= join).map(|r| r.1);
        let after = records.iter().rev().find(|(t, _)| *t <= end).map(|r| r.1);
        let longest = max(records
            .windows(2)
            .filter(|w| w[1].0 > join && w[0].0 < end)
            .map(|w| ms(w[1].0.duration_since(w[0].0))));
        // Records fetched together are handled microseconds apart: the gap expected
        // between two records is at least the writer's period.
        // Nor is a gap no longer than twice the partition's longest before the join.
        let steady_longest = max(steady.iter().copied());
        let limit = (STOPPED_FACTOR * steady_gap.max(ms(period))).max(2.0 * steady_longest);
        let pause = if longest > limit { longest } else { 0.0 };
        out.steady_longest_gap = out.steady_longest_gap.max(steady_longest);
        if before == after {
            out.stayed.push(pause);
            out.stayed_longest_gap = out.stayed_longest_gap.max(longest);
        } else {
            out.moved.push(pause);
        }
    }
    out.steady_gap = median(&steady_gaps);
    out
}

/// The `--rebalance` section.
pub(crate) fn section(
    command: &str,
    broker: &str,
    s: &Settings,
    rows: &[Row],
    took: Duration,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{}\n", heading(s.mock_cluster));
    let _ = writeln!(
        md,
        "Generated by `ktm-bench --rebalance` (not part of the default run). For each row, \
         {} times: a fresh group of 3 managers consumes a {}-partition topic; once steady, a \
         4th member joins; per partition, how long consumption stopped.\n",
        s.joins, s.partitions
    );
    let _ = writeln!(md, "```sh\n{command}\n```\n");
    let _ = writeln!(
        md,
        "| consumer | assignor | joins ok | moved / stayed partitions | moved: median pause (ms) \
         | stayed: median pause (ms) | max pause (ms) | stayed: partitions stopped | stayed: longest gap (ms) | before the join: longest gap (ms) |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ok: Vec<&JoinOutcome> = r.joins.iter().filter_map(|j| j.as_ref().ok()).collect();
        let per = |f: fn(&JoinOutcome) -> f64| median(&ok.iter().map(|j| f(j)).collect::<Vec<_>>());
        let moved_n = per(|j| j.moved.len() as f64);
        let stayed_n = per(|j| j.stayed.len() as f64);
        let all = ok
            .iter()
            .flat_map(|j| j.moved.iter().chain(&j.stayed).copied());
        let stopped: usize = ok
            .iter()
            .map(|j| j.stayed.iter().filter(|p| **p > 0.0).count())
            .sum();
        let stayed_total: usize = ok.iter().map(|j| j.stayed.len()).sum();
        let _ = writeln!(
            md,
            "| {} | {} | {}/{} | {moved_n} / {stayed_n} | {:.0} | {:.0} | {:.0} | {stopped} of {stayed_total} | {:.0} | {:.0} |",
            r.variant.backend(),
            r.variant.assignor(),
            ok.len(),
            r.joins.len(),
            per(|j| median(&j.moved)),
            per(|j| median(&j.stayed)),
            max(all),
            max(ok.iter().map(|j| j.stayed_longest_gap)),
            max(ok.iter().map(|j| j.steady_longest_gap)),
        );
    }
    let steady = median(
        &rows
            .iter()
            .flat_map(|r| r.joins.iter().filter_map(|j| j.as_ref().ok()))
            .map(|j| j.steady_gap)
            .collect::<Vec<_>>(),
    );
    let _ = writeln!(md);
    let _ = writeln!(md, "- Broker: {broker}. The topic is written continuously, {} records/s on every partition, one record per produce request (every offset starts a batch), {} B each; every member starts at the end (offset reset latest), in a group of its own per join.", s.rate, 100);
    let _ = writeln!(md, "- Members: session.timeout.ms {}, heartbeat.interval.ms {}, fetch.max.wait.ms 5 (rdkafka also fetch.queue.backoff.ms 5), commits every 5 s (the default) and on every revoke; a callback that only notes, per partition, the `Instant` it handled each record and which member handled it. rskafka: `.assignor(Assignor::Range)` or `Assignor::CooperativeSticky`; rdkafka: `partition.assignment.strategy` `range` or `cooperative-sticky`.", s.session_timeout.as_millis(), s.heartbeat.as_millis());
    let _ = writeln!(md, "- A join: the 3 members start one after the other, each once the group before it is steady (every partition consumed, each member owning some, no partition changing member for {:.1} s); the 4th starts; the group has settled once the 4th consumes {} partitions and every partition had a record after the 4th's first; the window closes {:.1} s later, then all 4 stop.", STEADY.as_secs_f64(), s.partitions / 4, STEADY.as_secs_f64());
    let _ = writeln!(md, "- Pause of a partition: the longest gap between two consecutive records of it handled by any member, the gap ending after the 4th started and beginning before the window closed; counted only when longer than both {STOPPED_FACTOR} x the larger of the partition's median gap over the {:.1} s before the join and the writer's period ({:.0} ms; median steady gap in this run: {steady:.1} ms) and 2 x the partition's longest gap over that time, else 0: a stayed partition that kept being consumed at its usual pace counts 0. Moved: the member that handled the partition's last record before the join is not the one that handled its last record in the window; stayed otherwise.", STEADY.as_secs_f64(), 1000.0 / f64::from(s.rate));
    let _ = writeln!(md, "- Columns: moved/stayed partitions per join (median); the median pause of the moved (stayed) partitions in each join, then the median over the joins; max pause: the longest over every partition of every join; stayed partitions stopped: stayed partitions whose pause was not 0, over all joins; stayed longest gap: the longest gap of a stayed partition, stop or not, over all joins; before the join: the longest gap of any partition over the steady time before the join, for scale: under load the consumers' usual pace has gaps that long (a median steady gap of 0.0 ms means most records arrived several to a fetch).");
    if s.mock_cluster {
        let _ = writeln!(md, "{}", mock_note(s));
    } else {
        let _ = writeln!(md, "- Tansu 0.6's group coordinator sleeps 3 s before handling a JoinGroup from a known member that is not the group's leader (`PAUSE_MS`, `join_follower_pause` in tansu-broker's `coordinator/group/administrator.rs`). Seen with RUST_LOG=ktm_rskafka=debug (range, 3 members): a follower rejoins at t; the leader rejoins at t+0.46 s and is answered at once with a generation listing all 3 members and syncs; the follower's JoinGroup is answered at t+3.0 s with the next generation (handled only after the pause, as a new join), its SyncGroup fails with RebalanceInProgress, and the others have to rejoin: with 2 followers this can go on for ever. Every rejoin of a follower costs at least 3 s on Tansu, a group of 3 often never gets steady (a row gives up after 2 failed joins in a row; counted in joins ok), and a session timeout of 3 s expires followers during the pause (with 3 s / heartbeat 300 ms no row got a steady group of 3). The pauses here are mostly Tansu's; against Kafka they would be shorter.");
    }
    for r in rows {
        for (i, j) in r.joins.iter().enumerate() {
            if let Err(e) = j {
                let _ = writeln!(md, "- {} join {}: failed: {e}", r.variant.name(), i + 1);
            }
        }
    }
    let _ = writeln!(md, "- This run took {:.0} s.", took.as_secs_f64());
    md
}

/// What differs on the mock cluster.
fn mock_note(s: &Settings) -> String {
    format!(
        "- librdkafka's mock group coordinator (`rdkafka_mock_cgrp.c`) holds a group's first \
         join for its group.initial.rebalance.delay.ms (3 s) and any later rebalance for the \
         session timeout less 1 s ({:.1} s here), whether or not every member has rejoined, \
         then elects the leader and answers every JoinGroup; it has none of Tansu's defects \
         above. A cooperative join takes two such rebalances (the revoke, then the \
         assignment). The rdkafka cooperative stops of stayed partitions are the manager's \
         own: a member's periodic commit (every 5 s) sent while its JoinGroup is held \
         waits behind it on the coordinator connection (answered in order; OffsetCommit \
         rtt 2247 ms behind a JoinGroup of rtt 2681 ms in librdkafka's protocol debug), \
         and the consumer thread awaits the commit (`commit_periodically` in ktm-core's \
         runner) without handing out records meanwhile, so every stop of a stayed \
         partition ends when that member's JoinGroup is answered; rskafka showed none.",
        s.session_timeout
            .saturating_sub(std::time::Duration::from_secs(1))
            .as_secs_f64()
    )
}

/// The rebalance sections of an existing report (Tansu's, then the mock cluster's), if
/// it has any.
pub(crate) fn existing_section(report: &str) -> Option<String> {
    sections::existing(report, &[HEADING, MOCK_HEADING])
}

/// `report` with its rebalance section (the mock cluster's when `mock`) replaced by
/// `section` (appended when absent).
pub(crate) fn splice(report: &str, section: &str, mock: bool) -> String {
    sections::splice_at(report, section, heading(mock))
}
