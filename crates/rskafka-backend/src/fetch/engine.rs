//! The source's handle on the fetch path: adds, removes, pauses and resumes partitions.

use std::sync::Arc;

use ktm_core::TopicPartition;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::leaders::find_leaders;
use super::owned::Owned;
use super::state::{Part, Position, Shared};
use super::{FetchItem, FetchSettings};
use crate::group::ControlClient;

/// The fetch path of one source. Dropping it ends every fetch task and connection.
#[derive(Debug)]
pub(crate) struct FetchEngine {
    shared: Arc<Shared>,
    leaders: JoinHandle<()>,
}

impl FetchEngine {
    /// Starts the leader lookup on the I/O thread `io`; broker tasks start as leaders
    /// are found. Items go to `tx`.
    pub(crate) fn start(
        io: &Handle,
        settings: Arc<FetchSettings>,
        control: Arc<tokio::sync::Mutex<ControlClient>>,
        tx: mpsc::UnboundedSender<FetchItem>,
    ) -> Self {
        let shared = Arc::new(Shared::new(settings, tx));
        let leaders = io.spawn(find_leaders(Arc::clone(&shared), control, io.clone()));
        Self { shared, leaders }
    }

    /// Starts fetching `tp` from its committed offset (`None`: the reset policy), as
    /// assignment `epoch`. The partition is fetched until the returned handle drops.
    pub(crate) fn add(&self, tp: TopicPartition, committed: Option<i64>, epoch: u64) -> Owned {
        let part = Part {
            epoch,
            position: Position::Start(committed),
            paused: false,
            leader: None,
            max_bytes: self.shared.settings.partition_max_bytes,
            reported_high_watermark: -1,
        };
        self.shared.lock().partitions.insert(tp.clone(), part);
        self.shared.leaders_wanted.notify_one();
        Owned::new(Arc::clone(&self.shared), tp, epoch)
    }
}

impl Drop for FetchEngine {
    fn drop(&mut self) {
        self.leaders.abort();
        // The broker slots abort their tasks when dropped.
        let mut state = self.shared.lock();
        state.brokers.clear();
        state.partitions.clear();
    }
}
