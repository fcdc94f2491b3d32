//! [`CrashSwitch`]: a simulated crash of the source, for tests only (the `test-util`
//! feature; without it the source has no switch and checks none).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::RskafkaSource;

/// Simulates a crash of the source, for tests: it stops heartbeating and committing,
/// without leaving the group. From [`RskafkaSource::crash_switch`].
#[derive(Clone, Debug)]
pub struct CrashSwitch(Arc<AtomicBool>);

impl CrashSwitch {
    /// Crashes the source (it notices at its next poll, commit or close).
    pub fn crash(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl RskafkaSource {
    /// A switch that crashes this source, for tests (the `test-util` feature).
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn crash_switch(&self) -> CrashSwitch {
        CrashSwitch(Arc::clone(&self.crashed))
    }

    /// Whether the crash switch was thrown; if so, drops everything without a word to
    /// the group.
    pub(super) fn check_crashed(&mut self) -> bool {
        if !self.crashed.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(g) = &mut self.group {
            g.abandon();
        }
        self.owned.clear();
        true
    }
}
