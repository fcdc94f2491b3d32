//! [`RdkafkaDeadLetterProducer`]: dead letters produced with librdkafka's
//! `FutureProducer`.

use std::collections::HashMap;
use std::time::Duration;

use ktm_core::{
    async_trait, parse_bootstrap_servers, ConfigError, DeadLetterProducer, DeadLetterRecord,
    OAuthTokenProvider, Sasl, Security, SecurityProtocol, SourceError, Timestamp, TlsConfig,
};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext};
use tracing::{debug, info, warn};

use crate::config::config_error;
use crate::error::source_error;
use crate::BACKEND;

/// How long one [`send`](DeadLetterProducer::send) may take by default, delivery
/// report included (librdkafka's `message.timeout.ms`, unless set).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Properties the producer sets unless the user set them: a dead letter counts as
/// delivered only once every in-sync replica has it, and librdkafka's retries must not
/// duplicate it.
const DEFAULTS: [(&str, &str); 2] = [("acks", "all"), ("enable.idempotence", "true")];

/// Routes librdkafka's producer logs to `tracing`, and hands it `OAUTHBEARER` tokens.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProducerLogContext {
    oauth: Option<OAuthTokenProvider>,
}

impl ClientContext for ProducerLogContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        crate::security::oauth_token(self.oauth.as_ref())
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::context::log_to_tracing(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Failed deliveries reach `send`, which reports them; keep this quiet.
        debug!(target: "librdkafka", %error, reason, "producer client error");
    }
}

type Inner = FutureProducer<ProducerLogContext>;

/// Produces dead letters with librdkafka: a [`DeadLetterProducer`] for
/// [`FailurePolicy::DeadLetter`](ktm_core::FailurePolicy::DeadLetter).
///
/// - `acks=all` and `enable.idempotence=true` unless set otherwise with
///   [`set`](RdkafkaDeadLetterProducerBuilder::set); `send` awaits the delivery report.
/// - The partition is the source partition modulo the dead-letter topic's partition
///   count (read from the metadata once per topic), so the dead letters of one source
///   partition keep their order.
/// - The key, the payload (a null one stays null), the headers (null values stay null)
///   and the timestamp (as create time) are kept.
/// - Errors: a broker that cannot be reached, a delivery timeout and an unknown topic are
///   transient (the manager retries; the source offset stays uncommitted); refused
///   authentication or authorization, an invalid topic and a record too large are fatal.
///
/// The librdkafka producer is created by the first `send`, on the consumer thread.
///
/// ```no_run
/// use ktm_core::{DeadLetter, FailurePolicy};
/// use ktm_rdkafka::RdkafkaDeadLetterProducer;
///
/// let producer = RdkafkaDeadLetterProducer::builder()
///     .bootstrap_servers(["127.0.0.1:9092"])
///     .client_id("billing-dlq")
///     .set("socket.timeout.ms", "10000")
///     .build()?;
/// let policy = FailurePolicy::DeadLetter(DeadLetter::new(producer).topic("orders.failed"));
/// # drop(policy);
/// # Ok::<(), ktm_core::ConfigError>(())
/// ```
pub struct RdkafkaDeadLetterProducer {
    config: ClientConfig,
    context: ProducerLogContext,
    send_timeout: Duration,
    producer: Option<Inner>,
    /// Partition count per dead-letter topic, read once.
    partition_counts: HashMap<String, i32>,
}

impl std::fmt::Debug for RdkafkaDeadLetterProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdkafkaDeadLetterProducer")
            .field("send_timeout", &self.send_timeout)
            .field("created", &self.producer.is_some())
            .field("partition_counts", &self.partition_counts)
            .finish_non_exhaustive()
    }
}

/// Builds an [`RdkafkaDeadLetterProducer`]: the connection settings of
/// [`RdkafkaSourceBuilder`](crate::RdkafkaSourceBuilder), plus any librdkafka property.
#[derive(Clone)]
#[must_use]
pub struct RdkafkaDeadLetterProducerBuilder {
    bootstrap_servers: Vec<String>,
    client_id: String,
    security: Security,
    extra: Vec<(String, String)>,
    send_timeout: Duration,
}

impl std::fmt::Debug for RdkafkaDeadLetterProducerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdkafkaDeadLetterProducerBuilder")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("security", &self.security)
            .field("extra", &crate::security::Redacted(&self.extra))
            .field("send_timeout", &self.send_timeout)
            .finish()
    }
}

impl RdkafkaDeadLetterProducerBuilder {
    /// Brokers to bootstrap from, each `host:port` (`bootstrap.servers`); an element may
    /// be a comma-separated list.
    pub fn bootstrap_servers(
        mut self,
        servers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.bootstrap_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// `client.id` (default `kafka-thread-manager`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// `security.protocol`, as the source's
    /// [`security_protocol`](crate::RdkafkaSourceBuilder::security_protocol).
    pub fn security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.security.protocol = protocol;
        self
    }

    /// SASL, as the source's [`sasl`](crate::RdkafkaSourceBuilder::sasl).
    pub fn sasl(mut self, sasl: Sasl) -> Self {
        self.security.sasl = Some(sasl);
        self
    }

    /// TLS settings, as the source's [`tls`](crate::RdkafkaSourceBuilder::tls).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.security.tls = tls;
        self
    }

    /// Any librdkafka producer property (`acks`, ...), passed through as is; it
    /// overrides the settings above.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// How long one `send` may take (default [`DEFAULT_SEND_TIMEOUT`]); it is also
    /// librdkafka's `message.timeout.ms` unless that is set.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// Checks the settings (the shared rules, then librdkafka's own) and builds the
    /// producer. Nothing connects until the first `send`.
    ///
    /// # Errors
    /// [`ConfigError::NoBootstrapServers`], [`ConfigError::InvalidBootstrapAddress`],
    /// [`ConfigError::ZeroDuration`], or [`ConfigError::Backend`] with librdkafka's
    /// message for a property it rejects.
    pub fn build(self) -> Result<RdkafkaDeadLetterProducer, ConfigError> {
        let bootstrap_servers = parse_bootstrap_servers(&self.bootstrap_servers)?;
        if self.send_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration {
                which: "send timeout",
            });
        }
        self.security.check()?;
        let mut config = ClientConfig::new();
        crate::security::apply(&self.security, &mut config)?;
        config
            .set("bootstrap.servers", bootstrap_servers.join(","))
            .set("client.id", &self.client_id)
            .set(
                "message.timeout.ms",
                self.send_timeout
                    .as_millis()
                    .min(i32::MAX as u128)
                    .to_string(),
            );
        for (key, value) in DEFAULTS {
            config.set(key, value);
        }
        for (key, value) in self.extra {
            config.set(key, value);
        }
        config.set_log_level(crate::config::log_level());
        validate(&config)?;
        Ok(RdkafkaDeadLetterProducer {
            config,
            context: ProducerLogContext {
                oauth: crate::security::oauth_provider(&self.security),
            },
            send_timeout: self.send_timeout,
            producer: None,
            partition_counts: HashMap::new(),
        })
    }
}

/// Lets librdkafka check every property now: a producer without bootstrap servers
/// connects nowhere, and dropping it is immediate.
fn validate(config: &ClientConfig) -> Result<(), ConfigError> {
    let mut probe = config.clone();
    probe.remove("bootstrap.servers");
    probe.set("log_level", "0");
    match probe.create::<BaseProducer>() {
        Ok(producer) => {
            drop(producer);
            Ok(())
        }
        Err(e) => Err(config_error(&e)),
    }
}

impl RdkafkaDeadLetterProducer {
    /// Starts building a producer.
    pub fn builder() -> RdkafkaDeadLetterProducerBuilder {
        RdkafkaDeadLetterProducerBuilder {
            bootstrap_servers: Vec::new(),
            client_id: "kafka-thread-manager".to_owned(),
            security: Security::default(),
            extra: Vec::new(),
            send_timeout: DEFAULT_SEND_TIMEOUT,
        }
    }

    /// The librdkafka configuration the producer is created with.
    pub fn client_config(&self) -> &ClientConfig {
        &self.config
    }

    fn producer(&mut self) -> Result<Inner, SourceError> {
        if let Some(p) = &self.producer {
            return Ok(p.clone());
        }
        let producer: Inner = self
            .config
            .create_with_context(self.context.clone())
            .map_err(|e| source_error("creating the dead-letter producer", e))?;
        info!(
            brokers = self.config.get("bootstrap.servers").unwrap_or_default(),
            "dead-letter producer created"
        );
        self.producer = Some(producer.clone());
        Ok(producer)
    }

    /// The partition count of `topic`, from the metadata once. The request blocks, so
    /// it runs on tokio's blocking pool, not on the consumer thread.
    async fn partition_count(&mut self, producer: &Inner, topic: &str) -> Result<i32, SourceError> {
        if let Some(&n) = self.partition_counts.get(topic) {
            return Ok(n);
        }
        let (p, name, timeout) = (producer.clone(), topic.to_owned(), self.send_timeout);
        let fetched = tokio::task::spawn_blocking(move || {
            let metadata = p.client().fetch_metadata(Some(&name), timeout)?;
            let found = metadata.topics().iter().find(|t| t.name() == name);
            Ok::<_, KafkaError>(found.map(|t| (t.error(), t.partitions().len())))
        })
        .await
        .map_err(|e| SourceError::transient(BACKEND, format!("reading the metadata: {e}")))?
        .map_err(|e| source_error("reading the dead-letter topic's metadata", e))?;
        let count = match fetched {
            Some((None, n)) if n > 0 => i32::try_from(n).unwrap_or(i32::MAX),
            Some((Some(code), _)) => {
                let e = KafkaError::MetadataFetch(code.into());
                return Err(dead_letter_error(
                    &format!("dead-letter topic {topic:?}"),
                    e,
                ));
            }
            _ => {
                // Maybe being created: worth retrying, the source offset stays
                // uncommitted meanwhile.
                return Err(SourceError::transient(
                    BACKEND,
                    format!("dead-letter topic {topic:?} does not exist"),
                ));
            }
        };
        debug!(topic, partitions = count, "dead-letter topic found");
        self.partition_counts.insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn produce(&mut self, record: &DeadLetterRecord) -> Result<(), SourceError> {
        let producer = self.producer()?;
        let topic = record.topic.as_str();
        let count = self.partition_count(&producer, topic).await?;
        let partition = record.source.partition().rem_euclid(count);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for h in &record.headers {
            headers = headers.insert(Header {
                key: h.key.as_str(),
                value: h.value.as_deref(),
            });
        }
        let mut out = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .headers(headers);
        if let Some(key) = record.key.as_deref() {
            out = out.key(key);
        }
        if let Some(payload) = record.payload.as_deref() {
            out = out.payload(payload);
        }
        if let Some(ts) = record.timestamp {
            out = out.timestamp(Timestamp::millis(ts));
        }
        let context = format!("producing a dead letter to {topic}[{partition}]");
        let delivery = producer
            .send_result(out)
            .map_err(|(e, _)| dead_letter_error(&context, e))?;
        match delivery.await {
            Ok(Ok(d)) => {
                debug!(topic, partition, offset = d.offset, source = %record.source, source_offset = record.offset, "dead letter produced");
                Ok(())
            }
            Ok(Err((e, _))) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                    // Recreated with another partition count, maybe: read it again.
                    self.partition_counts.remove(topic);
                }
                Err(dead_letter_error(&context, e))
            }
            Err(_) => Err(SourceError::transient(
                BACKEND,
                format!("{context}: the producer went away before the delivery report"),
            )),
        }
    }
}

/// A source error for a failed produce: fatal when retrying cannot help (on top of the
/// codes that are fatal for every client).
fn dead_letter_error(context: &str, e: KafkaError) -> SourceError {
    use RDKafkaErrorCode as C;
    let refused = e.rdkafka_error_code().is_some_and(|code| {
        matches!(
            code,
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidTopic
                | C::InvalidRecord
                | C::InvalidTimestamp
                | C::PolicyViolation
                | C::UnsupportedForMessageFormat
                | C::InvalidRequiredAcks
        )
    });
    let message = format!("{context}: {e}");
    if refused {
        return SourceError::fatal(BACKEND, message).with_source(e);
    }
    source_error(context, e)
}

#[async_trait]
impl DeadLetterProducer for RdkafkaDeadLetterProducer {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn partition_count(&mut self, topic: &str) -> Result<Option<i32>, SourceError> {
        let producer = self.producer()?;
        // Every topic's metadata, not this topic's: a producer's request for a topic
        // makes a broker with `auto.create.topics.enable` create it, and preflight
        // must find out whether it exists, not make it exist.
        crate::describe::partition_count(topic, move |timeout| {
            producer.client().fetch_metadata(None, timeout)
        })
        .await
    }

    async fn send(&mut self, record: &DeadLetterRecord) -> Result<(), SourceError> {
        // librdkafka gives up at `message.timeout.ms`; this bounds the metadata request
        // and a delivery report that never comes as well.
        let limit = self.send_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.produce(record)).await {
            Ok(result) => result,
            Err(_) => {
                warn!(topic = %record.topic, ?limit, "producing a dead letter timed out");
                Err(SourceError::transient(
                    BACKEND,
                    format!(
                        "producing a dead letter to {:?} took longer than {limit:?}",
                        record.topic
                    ),
                ))
            }
        }
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        let Some(producer) = self.producer.take() else {
            return Ok(());
        };
        // Every send awaited its report, so there is at most a timed-out one left;
        // flushing blocks, so on the blocking pool, and bounded.
        let flush = tokio::task::spawn_blocking(move || {
            let flushed = producer.flush(Duration::from_secs(1));
            drop(producer);
            flushed
        });
        match tokio::time::timeout(Duration::from_secs(3), flush).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(source_error("flushing the dead-letter producer", e)),
            Ok(Err(e)) => Err(SourceError::transient(BACKEND, format!("closing: {e}"))),
            Err(_) => Err(SourceError::transient(
                BACKEND,
                "the dead-letter producer did not close in time",
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn base() -> RdkafkaDeadLetterProducerBuilder {
        RdkafkaDeadLetterProducer::builder().bootstrap_servers(["127.0.0.1:9092"])
    }

    #[test]
    fn settings_are_checked_by_the_shared_rules_then_by_librdkafka() {
        let p = base().build().unwrap();
        assert_eq!(p.client_config().get("acks"), Some("all"));
        assert_eq!(p.client_config().get("enable.idempotence"), Some("true"));
        assert_eq!(p.client_config().get("message.timeout.ms"), Some("30000"));
        // librdkafka checks combinations: idempotence needs acks=all.
        let e = base().set("acks", "1").build().unwrap_err();
        assert!(
            matches!(&e, ConfigError::Backend { message, .. } if message.contains("enable.idempotence")),
            "{e}"
        );
        let p = base()
            .set("enable.idempotence", "false")
            .set("acks", "1")
            .build()
            .unwrap();
        assert_eq!(p.client_config().get("acks"), Some("1"), "the user's wins");
        assert_eq!(
            RdkafkaDeadLetterProducer::builder().build().unwrap_err(),
            ConfigError::NoBootstrapServers
        );
        assert!(matches!(
            base().bootstrap_servers(["nope"]).build(),
            Err(ConfigError::InvalidBootstrapAddress { .. })
        ));
        let p = base()
            .bootstrap_servers(["a:1, b:2", ",[::1]:3 "])
            .build()
            .unwrap();
        assert_eq!(
            p.client_config().get("bootstrap.servers"),
            Some("a:1,b:2,[::1]:3"),
            "the lists split, each address checked"
        );
        assert!(matches!(
            base().bootstrap_servers(["a:1,b"]).build(),
            Err(ConfigError::InvalidBootstrapAddress { address, .. }) if address == "b"
        ));
        assert!(matches!(
            base().send_timeout(Duration::ZERO).build(),
            Err(ConfigError::ZeroDuration { .. })
        ));
        assert_eq!(
            base().set("no.such.property", "1").build().unwrap_err(),
            ConfigError::Backend {
                backend: "rdkafka",
                message: "No such configuration property: \"no.such.property\"".into()
            }
        );
    }

    #[test]
    fn refusals_that_retrying_cannot_fix_are_fatal() {
        let fatal =
            |code| !dead_letter_error("x", KafkaError::MessageProduction(code)).is_transient();
        assert!(fatal(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(fatal(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(!fatal(RDKafkaErrorCode::MessageTimedOut));
        assert!(!fatal(RDKafkaErrorCode::UnknownTopicOrPartition));
        assert!(!fatal(RDKafkaErrorCode::AllBrokersDown));
    }
}
