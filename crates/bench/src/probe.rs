//! A child's own resources, read from `/proc/self`: CPU time, and the TCP connections it
//! holds to the broker (sampled on a thread of its own while it consumes).

use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the child's own sockets are listed (`/proc/self/fd`: a few syscalls).
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often the TCP tables are read when the child's sockets did not change. Reading
/// `/proc/self/net/tcp` walks the kernel's whole connection hash table, however few
/// sockets there are: about 3 ms a read here, 4 % of a core every 100 ms, which the
/// CPU figures of the measured child would include.
const FULL_READ_EVERY: Duration = Duration::from_secs(1);

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`): 100 on every Linux ABI this
/// runs on (the bench forbids `unsafe`, so `sysconf(_SC_CLK_TCK)` is not asked).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time this process used so far, user and system, all threads (NaN if unknown).
pub(crate) fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_of_stat(&s))
        .unwrap_or(f64::NAN)
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds.
fn cpu_of_stat(stat: &str) -> Option<f64> {
    // The command name is in parentheses and may hold spaces: count fields after it.
    let (_, after) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3 (the state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// The inodes of this process's sockets (`/proc/self/fd/N -> socket:[inode]`).
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// ESTABLISHED connections this process holds to remote port `port`.
pub(crate) fn broker_connections(port: u16) -> u32 {
    connections_among(port, &own_socket_inodes())
}

/// ESTABLISHED connections to remote port `port` among the sockets `own`.
///
/// `/proc/self/net/tcp{,6}` list every socket of the network namespace (the broker's
/// end of a loopback connection too, and other processes'), so only those whose inode
/// is one of this process's descriptors count.
fn connections_among(port: u16, own: &HashSet<u64>) -> u32 {
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| count_in_table(&table, port, own))
        .sum()
}

/// The rows of one `/proc/net/tcp` table that are ESTABLISHED (state `01`), to remote
/// port `port`, with an inode in `own`.
fn count_in_table(table: &str, port: u16, own: &HashSet<u64>) -> u32 {
    let hits = table.lines().skip(1).filter(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        let (Some(rem), Some(st), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else {
            return false;
        };
        let remote_port = rem
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        *st == "01"
            && remote_port == Some(port)
            && inode.parse::<u64>().is_ok_and(|i| own.contains(&i))
    });
    u32::try_from(hits.count()).unwrap_or(u32::MAX)
}

/// The port of the first `host:port` of a bootstrap list.
pub(crate) fn port_of(brokers: &str) -> Option<u16> {
    brokers
        .split(',')
        .next()?
        .trim()
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

/// Counts the connections to the broker until finished; keeps the most. The tables are
/// read when the child's set of sockets changed since the last read (a connection
/// opened or closed) and at least every [`FULL_READ_EVERY`] (a socket changing state
/// without its descriptor changing, such as one still connecting when last read).
pub(crate) struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<u32>,
}

impl Sampler {
    /// Starts sampling connections to `port`.
    pub(crate) fn start(port: u16) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("conn-sampler".to_owned())
            .spawn(move || {
                let mut most = 0;
                let mut read: Option<(Instant, HashSet<u64>)> = None;
                loop {
                    let own = own_socket_inodes();
                    let due = read
                        .as_ref()
                        .is_none_or(|(at, seen)| *seen != own || at.elapsed() >= FULL_READ_EVERY);
                    if due {
                        most = most.max(connections_among(port, &own));
                        read = Some((Instant::now(), own));
                    }
                    match stopped.recv_timeout(SAMPLE_EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return most,
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops sampling; the most connections seen at once.
    pub(crate) fn finish(self) -> u32 {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_after_a_command_name_with_spaces() {
        let stat = "42 (a b) c) R 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_of_stat(stat), Some(3.0));
    }

    #[test]
    fn counts_only_own_established_rows_to_the_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
   1: 0100007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n\
   2: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 333 1\n\
   3: 0100007F:9C42 0100007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 444 1\n";
        let own: HashSet<u64> = [111, 333, 444].into_iter().collect();
        // 111: ours, established, to 8080. 222: not ours. 333: the broker's end.
        // 444: TIME_WAIT.
        assert_eq!(count_in_table(table, 8080, &own), 1);
    }

    #[test]
    fn port_of_the_first_bootstrap_server() {
        assert_eq!(port_of("127.0.0.1:9092,other:9093"), Some(9092));
        assert_eq!(port_of("localhost"), None);
    }

    #[test]
    fn this_process_has_cpu_time() {
        assert!(cpu_seconds() >= 0.0);
    }
}
