//! Connecting: the I/O thread, the rskafka client built on it, and the member task or
//! the static assignment that the first poll starts.

use std::sync::Arc;
use std::time::Duration;

use ktm_core::{SourceError, Subscription};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use tracing::info;

use super::{Pending, RskafkaSource};
use crate::fetch::to_source_error;
use crate::group::GroupHandle;
use crate::io::IoThread;
use crate::BACKEND;

impl RskafkaSource {
    pub(super) async fn client(&mut self) -> Result<Arc<Client>, SourceError> {
        if let Some(c) = &self.client {
            return Ok(Arc::clone(c));
        }
        if self.io.is_none() {
            self.io = Some(IoThread::start()?);
        }
        let c = &self.config;
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(c.connect_timeout),
        };
        let mut builder = ClientBuilder::new(c.consumer.bootstrap_servers.clone())
            .client_id(c.consumer.client_id.clone())
            .backoff_config(backoff);
        if let Some(sasl) = &c.sasl {
            builder = builder.sasl_config(sasl.to_rskafka());
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &c.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        // Built on the I/O thread, so that rskafka's connections live there.
        let limit = c.connect_timeout * 2;
        let built = self
            .io()?
            .run(async move { tokio::time::timeout(limit, builder.build()).await })
            .await?;
        let client = match built {
            Ok(Ok(client)) => Arc::new(client),
            Ok(Err(e)) => return Err(to_source_error("connecting to the brokers", e)),
            Err(_) => {
                return Err(SourceError::transient(
                    BACKEND,
                    format!(
                        "connecting to the brokers {:?} timed out",
                        c.consumer.bootstrap_servers
                    ),
                ))
            }
        };
        info!(brokers = ?c.consumer.bootstrap_servers, "connected");
        self.client = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Queues the static assignment, or starts the member task.
    pub(super) fn start(&mut self, client: &Arc<Client>) -> Result<(), SourceError> {
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
                self.group = Some(GroupHandle::spawn(io, settings, Arc::clone(client)));
            }
            _ => {}
        }
        Ok(())
    }
}
