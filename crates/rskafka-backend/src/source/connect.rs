//! Starting: the I/O thread, the fetch path on it, and the member task or the static
//! assignment that the first poll starts.

use std::sync::Arc;

use ktm_core::{SourceError, Subscription};
use tracing::info;

use super::{Pending, RskafkaSource};
use crate::fetch::FetchEngine;
use crate::group::GroupHandle;
use crate::io::IoThread;

impl RskafkaSource {
    /// Starts the I/O thread and the fetch path (connections open as they are needed),
    /// then queues the static assignment or starts the member task.
    pub(super) fn start(&mut self) -> Result<(), SourceError> {
        if self.io.is_none() {
            self.io = Some(IoThread::start()?);
        }
        if self.engine.is_none() {
            let engine = FetchEngine::start(
                self.io()?.handle(),
                Arc::clone(&self.fetch_settings),
                Arc::clone(&self.control),
                self.tx.clone(),
            );
            info!(brokers = ?self.config.consumer.bootstrap_servers, "started");
            self.engine = Some(engine);
        }
        match &self.config.consumer.subscription {
            Subscription::Partitions(p) if !self.static_queued => {
                self.static_queued = true;
                self.pending = Some(Pending::Assign {
                    identity: self.identity.clone(),
                    partitions: p.clone(),
                    done: None,
                });
            }
            Subscription::Topics(_) if self.group.is_none() => {
                let settings = Arc::clone(&self.group_settings);
                let io = self.io()?.handle();
                self.group = Some(GroupHandle::spawn(io, settings, Arc::clone(&self.control)));
            }
            _ => {}
        }
        Ok(())
    }
}
