//! The Python original (`seed_thread_manager.py`, confluent-kafka), run on the same
//! topic. It prints one JSON line with its steady-state messages/s and its stop
//! latencies; its peak RSS is read here by polling `/proc/<pid>/status` (VmHWM).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::meter::hwm_of;
use crate::BoxResult;

/// How long the script may run (its first group join on Tansu alone can take long).
const DEADLINE: Duration = Duration::from_secs(40 * 60);

/// What the original measured.
#[derive(Clone, Debug)]
pub(crate) struct PythonRun {
    pub(crate) messages: u64,
    pub(crate) steady_per_s: f64,
    pub(crate) stops_ms: Vec<f64>,
    pub(crate) peak_rss_kib: u64,
    /// From the script's start to its first message, in seconds.
    pub(crate) first_message_s: Option<f64>,
}

/// Why the original has no numbers, or what it measured.
pub(crate) type PythonOutcome = Result<PythonRun, String>;

/// The measured consumer's settings in the original, as shipped.
const SHIPPED_SETTINGS: &str = r#""enable.auto.commit": True}"#;

/// A copy of `script` whose measured consumer also gets `settings` (librdkafka
/// properties, `"key": value` pairs): the original given the fetch settings the Rust
/// consumers of the bench use, so config and library can be told apart. Written to the
/// temporary directory; the caller removes it.
pub(crate) fn with_settings(script: &str, settings: &str) -> Result<std::path::PathBuf, String> {
    let text = std::fs::read_to_string(script).map_err(|e| format!("cannot read {script}: {e}"))?;
    if text.matches(SHIPPED_SETTINGS).count() != 1 {
        return Err(format!(
            "the script's consumer settings are not the expected ones ({SHIPPED_SETTINGS})"
        ));
    }
    let patched = text.replace(
        SHIPPED_SETTINGS,
        &format!(r#""enable.auto.commit": True, {settings}}}"#),
    );
    let path = std::env::temp_dir().join(format!("ktm-bench-{}-seed.py", std::process::id()));
    std::fs::write(&path, patched).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Checks that `python` can import confluent_kafka.
fn check(python: &str) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-c", "import confluent_kafka"])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{python} cannot import confluent_kafka (pip install confluent-kafka)"
        ))
    }
}

/// Runs `script` with `--brokers --topic --count --stops`.
pub(crate) fn run(
    python: &str,
    script: &str,
    brokers: &str,
    topic: &str,
    count: u64,
    stops: usize,
) -> PythonOutcome {
    check(python)?;
    if !std::path::Path::new(script).is_file() {
        return Err(format!("the script {script} does not exist"));
    }
    measure(python, script, brokers, topic, count, stops).map_err(|e| e.to_string())
}

fn measure(
    python: &str,
    script: &str,
    brokers: &str,
    topic: &str,
    count: u64,
    stops: usize,
) -> BoxResult<PythonRun> {
    eprintln!("python original: consuming {count} messages, then {stops} stop runs...");
    let mut child = Command::new(python)
        .arg(script)
        .args(["--brokers", brokers, "--topic", topic])
        .args(["--count", &count.to_string(), "--stops", &stops.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        peak = peak.max(hwm_of(&status_path));
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the script did not finish within {DEADLINE:?}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout)?;
    }
    if !status.success() {
        return Err(format!("the script failed ({status})").into());
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("the script printed no JSON line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let stops_ms = v["stop_latency_ms"]
        .as_array()
        .ok_or("no stop_latency_ms")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    Ok(PythonRun {
        messages: v["count"].as_u64().unwrap_or(0),
        steady_per_s: v["steady_msgs_per_s"]
            .as_f64()
            .ok_or("no steady_msgs_per_s")?,
        stops_ms,
        peak_rss_kib: peak,
        first_message_s: v["first_message_s"].as_f64(),
    })
}
