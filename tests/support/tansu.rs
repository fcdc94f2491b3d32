//! A Tansu broker of the test's own: a child process with SQLite storage in a
//! directory of its own, killed on drop (a failing test keeps the directory, logs and
//! database, and names it). It can be restarted on the same port and database, with
//! other options: SASL authentication on (`--authentication`), or another address
//! advertised in its metadata (a TLS proxy in front of it).
//!
//! Needs `tansu` on PATH (`scripts/tansu.sh install`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How a Tansu run is started.
#[derive(Clone, Debug, Default)]
pub struct TansuOptions {
    /// `--authentication`: every client must authenticate with SASL (PLAIN or SCRAM;
    /// Tansu 0.6 checks SCRAM passwords against the credentials stored with
    /// AlterUserScramCredentials, and accepts any PLAIN password).
    pub authentication: bool,
    /// The `host:port` advertised in metadata, when not the broker's own.
    pub advertised: Option<String>,
}

pub struct Tansu {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it has been started (names each run's log).
    starts: u32,
    options: TansuOptions,
}

impl Tansu {
    /// Starts one; `None` (with the reason printed) without `tansu` on PATH.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, TansuOptions::default())
    }

    /// Starts one with `options`; `None` (with the reason printed) without `tansu`.
    pub fn start_with(test: &str, options: TansuOptions) -> Option<Self> {
        if !on_path("tansu") {
            eprintln!("SKIP {test}: no `tansu` on PATH (scripts/tansu.sh install)");
            return None;
        }
        let dir = std::env::temp_dir().join(unique(&format!("ktm-tansu-{test}")));
        std::fs::create_dir_all(&dir).expect("broker directory");
        let mut tansu = Self {
            port: free_port(),
            dir,
            child: None,
            starts: 0,
            options,
        };
        tansu.spawn();
        Some(tansu)
    }

    /// The broker's own address (what it listens on).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process and waits for its "ready in" line.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        self.starts += 1;
        let log_path = self.dir.join(format!("broker-{}.log", self.starts));
        let log = std::fs::File::create(&log_path).expect("broker log");
        let listener = format!("tcp://{}", self.bootstrap());
        let advertised = match &self.options.advertised {
            Some(addr) => format!("tcp://{addr}"),
            None => listener.clone(),
        };
        let mut command = Command::new("tansu");
        command
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            // Tansu 0.6.0 opens the path of a `sqlite://` URL relative to its working
            // directory (`sqlite:///tmp/x.db` opens `$PWD/tmp/x.db`): run it in `dir`.
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if self.options.authentication {
            command.arg("--authentication");
        }
        let child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("ready in") {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "tansu (start {}) did not get ready (exit: {exited:?}); log:\n{text}",
                self.starts
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL: no orderly shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker, checks that its port is closed, and starts it again on the
    /// same port and the same database file.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            std::net::TcpStream::connect(self.bootstrap()).is_err(),
            "the killed broker's port still accepts connections"
        );
        self.spawn();
    }

    /// Restarts with other options (same port, same database).
    pub fn restart_with(&mut self, options: TansuOptions) {
        self.options = options;
        self.restart();
    }

    /// Stores SCRAM credentials for `user` with Tansu's own CLI (`tansu user create`,
    /// an AlterUserScramCredentials request). Run it before authentication is on:
    /// Tansu 0.6 serves nothing but SASL and ApiVersions to an unauthenticated client.
    /// `mechanism` is `scram256` or `scram512`.
    pub fn create_user(&self, user: &str, password: &str, mechanism: &str) {
        let output = Command::new("tansu")
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://{}", self.bootstrap()))
            .args([user, password, "--mechanism", mechanism])
            .current_dir(&self.dir)
            .output()
            .expect("run tansu user create");
        assert!(
            output.status.success(),
            "tansu user create {user} ({mechanism}) failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Every log the broker wrote, for a failure message.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let path = self.dir.join(format!("broker-{n}.log"));
                format!(
                    "--- {} ---\n{}",
                    path.display(),
                    std::fs::read_to_string(&path).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "broker directory kept: {}\n{}",
                self.dir.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `name` made unique to this process and moment (topics, groups, directories).
pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}
