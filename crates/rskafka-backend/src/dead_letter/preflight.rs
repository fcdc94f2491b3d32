//! The dead-letter topic's partition count, for preflight.

use ktm_core::SourceError;

use super::{classify, RskafkaDeadLetterProducer};

impl RskafkaDeadLetterProducer {
    /// `topic`'s partition count from the metadata, `None` when the broker does not
    /// know it (or knows it without partitions).
    pub(super) async fn count_partitions(
        &mut self,
        topic: &str,
    ) -> Result<Option<i32>, SourceError> {
        let kept = self.client.is_some();
        let client = self.client().await?;
        let listed = client
            .list_topics()
            .await
            .map_err(|e| classify("reading the metadata", e));
        if !kept {
            // Preflight runs on a runtime of its own, gone afterwards, and with it the
            // tasks of the connections made there: `send`, on the consumer thread's
            // runtime, starts from a client of its own instead of from dead ones.
            self.client = None;
        }
        let count = listed?
            .iter()
            .find(|t| t.name == topic)
            .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
            .filter(|n| *n > 0);
        Ok(count)
    }
}
