//! The broker the bench runs against: one given with `--brokers`, a Tansu broker
//! started here on a free loopback port (memory storage) and killed on drop, or (for
//! `--rebalance --mock-cluster`) librdkafka's in-process mock cluster.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::BoxResult;

/// How long Tansu gets to print `ready in`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running broker; a Tansu child process when the bench started it.
pub(crate) struct Broker {
    /// `host:port` to bootstrap from.
    pub(crate) address: String,
    /// What the report says about the broker.
    pub(crate) description: String,
    child: Option<Child>,
    /// The mock cluster, when the bench runs on one: neither `Send` nor `Sync`, so the
    /// broker stays on the thread that made it, and the cluster lives as long as it.
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
}

impl Broker {
    /// The broker at `address`, left as it is.
    pub(crate) fn given(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            description: format!("given with --brokers ({address})"),
            child: None,
            mock: None,
        }
    }

    /// Starts librdkafka's mock cluster (one broker) in this process.
    pub(crate) fn start_mock() -> BoxResult<Self> {
        let mock = MockCluster::new(1)?;
        let address = mock.bootstrap_servers();
        let (_, version) = rdkafka::util::get_rdkafka_version();
        eprintln!("mock cluster ready on {address}");
        Ok(Self {
            address,
            description: format!(
                "librdkafka {version}'s mock cluster (`rdkafka::mocking::MockCluster`, 1 broker, \
                 in process, served over TCP on loopback)"
            ),
            child: None,
            mock: Some(mock),
        })
    }

    /// The mock cluster, if the bench runs on one (it has no CreateTopics handler:
    /// topics are made through it).
    pub(crate) fn mock(&self) -> Option<&MockCluster<'static, DefaultProducerContext>> {
        self.mock.as_ref()
    }

    /// Starts `tansu` from PATH on a free port and waits until it says `ready in`.
    pub(crate) fn start_tansu() -> BoxResult<Self> {
        Self::start_tansu_advertising(None)
    }

    /// [`start_tansu`](Self::start_tansu), Tansu advertising `advertised` (a proxy in
    /// front of it) as its address when given; `address` is where it listens.
    pub(crate) fn start_tansu_advertising(advertised: Option<u16>) -> BoxResult<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
        let version = Command::new("tansu")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "tansu (version unknown)".to_owned());
        let mut child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start `tansu` (is it on PATH?): {e}"))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            drain(out, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, tx);
        }
        let broker = Self {
            address: format!("127.0.0.1:{port}"),
            description: format!("{version}, started by the bench, memory storage"),
            child: Some(child),
            mock: None,
        };
        rx.recv_timeout(READY_TIMEOUT)
            .map_err(|_| format!("tansu did not print `ready in` within {READY_TIMEOUT:?}"))?;
        eprintln!("tansu ready on {}", broker.address);
        Ok(broker)
    }
}

/// Reads the broker's output to the end (so it never blocks on a full pipe) and sends
/// once when a line says `ready in`.
fn drain(stream: impl Read + Send + 'static, ready: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains("ready in") {
                sent = ready.send(()).is_ok();
            }
        }
    });
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
