//! [`RskafkaDeadLetterProducer`]: dead letters produced with rskafka, over the same
//! connection settings as the source.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ktm_core::{async_trait, ConfigError, DeadLetterProducer, DeadLetterRecord, SourceError};
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use tracing::{debug, info, warn};

use crate::config::RskafkaConfig;
use crate::BACKEND;
use ktm_core::{Sasl, Security, SecurityProtocol, TlsConfig};

/// How long one [`send`](DeadLetterProducer::send) may take by default, retries
/// included.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

mod preflight;

/// The connection settings a producer runs with.
#[derive(Clone)]
struct Settings {
    bootstrap_servers: Vec<String>,
    client_id: String,
    security: Security,
    /// Made from `security` in `build` (or given whole).
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    send_timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Settings");
        d.field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("security", &self.security)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

/// Produces dead letters with rskafka: a [`DeadLetterProducer`] for
/// [`FailurePolicy::DeadLetter`](ktm_core::FailurePolicy::DeadLetter).
///
/// - Each dead letter is produced alone, uncompressed, with `acks=all`; `send` returns
///   once the broker acknowledged it.
/// - It goes to partition *source partition modulo the dead-letter topic's partition
///   count*, so the dead letters of one source partition keep their order. The count is
///   read from the cluster's metadata once per topic.
/// - The key, the payload (a null one stays null), the timestamp (as create time) and
///   the headers are kept. rskafka keeps headers in a map: a null header value is sent
///   empty, and of duplicate keys the last one wins (so the `ktm.dlq.*` headers win over
///   an original header of the same name).
/// - Errors: connection failures, timeouts and a dead-letter topic that does not exist
///   (yet) are transient (the manager retries, the source offset stays uncommitted);
///   refused authentication or authorization, an invalid topic, and a record the broker
///   refuses (too large, invalid) are fatal: retrying cannot help.
///
/// Nothing connects until the first `send`, which runs on the consumer thread.
///
/// ```no_run
/// use ktm_core::{DeadLetter, FailurePolicy};
/// use ktm_rskafka::RskafkaDeadLetterProducer;
///
/// let producer = RskafkaDeadLetterProducer::builder()
///     .bootstrap_servers(["127.0.0.1:9092"])
///     .client_id("billing-dlq")
///     .build()?;
/// let policy = FailurePolicy::DeadLetter(DeadLetter::new(producer).topic("orders.failed"));
/// # drop(policy);
/// # Ok::<(), ktm_core::ConfigError>(())
/// ```
pub struct RskafkaDeadLetterProducer {
    settings: Settings,
    client: Option<Arc<Client>>,
    /// Partition count per dead-letter topic, read once.
    partition_counts: HashMap<String, i32>,
    /// One client per partition produced to; each follows its leader by itself.
    partitions: HashMap<(String, i32), PartitionClient>,
}

impl fmt::Debug for RskafkaDeadLetterProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RskafkaDeadLetterProducer")
            .field("settings", &self.settings)
            .field("connected", &self.client.is_some())
            .field("partition_counts", &self.partition_counts)
            .finish_non_exhaustive()
    }
}

/// Builds an [`RskafkaDeadLetterProducer`]; see there for an example.
#[must_use]
pub struct RskafkaDeadLetterProducerBuilder {
    settings: Settings,
}

impl fmt::Debug for RskafkaDeadLetterProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RskafkaDeadLetterProducerBuilder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl RskafkaDeadLetterProducerBuilder {
    /// Brokers to bootstrap from, each `host:port`.
    pub fn bootstrap_servers(
        mut self,
        servers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.settings.bootstrap_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// `client.id` (default `kafka-thread-manager`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.settings.client_id = id.into();
        self
    }

    /// `security.protocol` (default plaintext), as the source's.
    pub fn security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.settings.security.protocol = protocol;
        self
    }

    /// SASL, as the source's [`sasl`](crate::RskafkaSourceBuilder::sasl).
    pub fn sasl(mut self, sasl: Sasl) -> Self {
        self.settings.security.sasl = Some(sasl);
        self
    }

    /// TLS settings, as the source's [`tls`](crate::RskafkaSourceBuilder::tls).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.settings.security.tls = tls;
        self
    }

    /// Uses this rustls configuration for TLS instead of one made from the
    /// [`TlsConfig`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn rustls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.settings.tls = Some(config);
        self
    }

    /// How long connecting may take, retries included (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long one `send` may take, connecting and retries included (default
    /// [`DEFAULT_SEND_TIMEOUT`]); past it, `send` fails with a transient error.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.settings.send_timeout = timeout;
        self
    }

    /// Checks the settings and builds the producer. Nothing connects until the first
    /// `send`.
    ///
    /// # Errors
    /// [`ConfigError::NoBootstrapServers`], [`ConfigError::InvalidBootstrapAddress`],
    /// [`ConfigError::ZeroDuration`], [`ConfigError::Security`] for security settings
    /// that do not fit together, or [`ConfigError::Backend`] for what this backend
    /// cannot do (GSSAPI, TLS without the `tls` feature).
    pub fn build(mut self) -> Result<RskafkaDeadLetterProducer, ConfigError> {
        // One address per element, as the consumer's: "h1:9092,h2:9092" is two brokers.
        self.settings.bootstrap_servers =
            ktm_core::parse_bootstrap_servers(&self.settings.bootstrap_servers)?;
        let s = &self.settings;
        for (which, d) in [
            ("connect timeout", s.connect_timeout),
            ("send timeout", s.send_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { which });
            }
        }
        s.security.check()?;
        crate::wire::security::check_supported(&s.security)?;
        #[cfg(feature = "tls")]
        {
            self.settings.tls =
                crate::wire::tls_config::for_security(&self.settings.security, self.settings.tls)?;
        }
        Ok(RskafkaDeadLetterProducer::new(self.settings))
    }
}

impl RskafkaDeadLetterProducer {
    /// Starts building a producer.
    pub fn builder() -> RskafkaDeadLetterProducerBuilder {
        RskafkaDeadLetterProducerBuilder {
            settings: Settings {
                bootstrap_servers: Vec::new(),
                client_id: "kafka-thread-manager".to_owned(),
                security: Security::default(),
                #[cfg(feature = "tls")]
                tls: None,
                connect_timeout: Duration::from_secs(10),
                send_timeout: DEFAULT_SEND_TIMEOUT,
            },
        }
    }

    /// A producer with the connection settings of a source (bootstrap servers, client
    /// id, SASL, TLS, connect timeout), already validated there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ktm_rskafka::{RskafkaDeadLetterProducer, RskafkaSource};
    ///
    /// let config = RskafkaSource::builder()
    ///     .bootstrap_servers(["127.0.0.1:9092"])
    ///     .topics(["orders"])
    ///     .group_id("billing")
    ///     .build_config()?;
    /// let producer = RskafkaDeadLetterProducer::from_config(&config)
    ///     .with_send_timeout(Duration::from_secs(10));
    /// let source = RskafkaSource::builder().config(config.consumer.clone()).build()?;
    /// # drop((producer, source));
    /// # Ok::<(), ktm_core::ConfigError>(())
    /// ```
    pub fn from_config(config: &RskafkaConfig) -> Self {
        Self::new(Settings {
            bootstrap_servers: config.consumer.bootstrap_servers.clone(),
            client_id: config.consumer.client_id.clone(),
            security: config.consumer.security.clone(),
            #[cfg(feature = "tls")]
            tls: config.tls.clone(),
            connect_timeout: config.connect_timeout,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        })
    }

    /// Sets how long one `send` may take (default [`DEFAULT_SEND_TIMEOUT`]); zero is
    /// ignored. For a producer made [`from_config`](Self::from_config).
    #[must_use]
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        if !timeout.is_zero() {
            self.settings.send_timeout = timeout;
        }
        self
    }

    fn new(settings: Settings) -> Self {
        Self {
            settings,
            client: None,
            partition_counts: HashMap::new(),
            partitions: HashMap::new(),
        }
    }

    async fn client(&mut self) -> Result<Arc<Client>, SourceError> {
        if let Some(c) = &self.client {
            return Ok(Arc::clone(c));
        }
        let s = &self.settings;
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(s.connect_timeout),
        };
        let mut builder = ClientBuilder::new(s.bootstrap_servers.clone())
            .client_id(s.client_id.clone())
            .backoff_config(backoff);
        if let Some(sasl) = &s.security.sasl {
            builder = builder.sasl_config(rskafka_sasl(sasl)?);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &s.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        let client = builder
            .build()
            .await
            .map_err(|e| classify("connecting to the brokers", e))?;
        info!(brokers = ?s.bootstrap_servers, "dead-letter producer connected");
        let client = Arc::new(client);
        self.client = Some(Arc::clone(&client));
        Ok(client)
    }

    /// The partition count of `topic`, from the metadata once.
    async fn partition_count(&mut self, client: &Client, topic: &str) -> Result<i32, SourceError> {
        if let Some(&n) = self.partition_counts.get(topic) {
            return Ok(n);
        }
        let topics = client
            .list_topics()
            .await
            .map_err(|e| classify("reading the metadata", e))?;
        let count = topics
            .iter()
            .find(|t| t.name == topic)
            .map_or(0, |t| t.partitions.len());
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        if count == 0 {
            // Maybe being created (or auto-created by a first produce elsewhere): worth
            // retrying, and the source offset stays uncommitted meanwhile.
            return Err(SourceError::transient(
                BACKEND,
                format!("dead-letter topic {topic:?} does not exist"),
            ));
        }
        debug!(topic, partitions = count, "dead-letter topic found");
        self.partition_counts.insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn produce(&mut self, record: &DeadLetterRecord) -> Result<(), SourceError> {
        let client = self.client().await?;
        let topic = record.topic.as_str();
        let count = self.partition_count(&client, topic).await?;
        let partition = record.source.partition().rem_euclid(count);
        let key = (topic.to_owned(), partition);
        if !self.partitions.contains_key(&key) {
            // `Error`: a missing topic fails at once rather than after the backoff deadline.
            let pc = client
                .partition_client(topic, partition, UnknownTopicHandling::Error)
                .await
                .map_err(|e| {
                    classify(
                        &format!("connecting to the leader of {topic}[{partition}]"),
                        e,
                    )
                })?;
            self.partitions.insert(key.clone(), pc);
        }
        let Some(pc) = self.partitions.get(&key) else {
            return Err(SourceError::transient(BACKEND, "partition client missing"));
        };
        let produced = pc
            .produce(vec![to_record(record)], Compression::NoCompression)
            .await;
        match produced {
            Ok(offsets) => {
                debug!(topic, partition, offset = ?offsets.first(), source = %record.source, source_offset = record.offset, "dead letter produced");
                Ok(())
            }
            Err(e) => {
                if is_unknown_topic(&e) {
                    // Recreated with another partition count, maybe: read it again.
                    self.partition_counts.remove(topic);
                    self.partitions.retain(|(t, _), _| t != topic);
                }
                Err(classify(
                    &format!("producing a dead letter to {topic}[{partition}]"),
                    e,
                ))
            }
        }
    }
}

#[async_trait]
impl DeadLetterProducer for RskafkaDeadLetterProducer {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn send(&mut self, record: &DeadLetterRecord) -> Result<(), SourceError> {
        let limit = self.settings.send_timeout;
        match tokio::time::timeout(limit, self.produce(record)).await {
            Ok(result) => result,
            Err(_) => {
                warn!(topic = %record.topic, ?limit, "producing a dead letter timed out");
                // The connection may be stuck half-open: start afresh next time.
                self.client = None;
                self.partitions.clear();
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
        self.partitions.clear();
        self.client = None;
        Ok(())
    }

    async fn partition_count(&mut self, topic: &str) -> Result<Option<i32>, SourceError> {
        self.count_partitions(topic).await
    }
}

/// The rskafka record for a dead letter.
fn to_record(r: &DeadLetterRecord) -> Record {
    let mut headers = BTreeMap::new();
    for h in &r.headers {
        // A map: later entries win, and a null value can only be sent empty.
        headers.insert(
            h.key.clone(),
            h.value.as_ref().map(|v| v.to_vec()).unwrap_or_default(),
        );
    }
    let millis = r.timestamp.map(|t| t.millis()).unwrap_or_else(now_millis);
    Record {
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.payload.as_ref().map(|v| v.to_vec()),
        headers,
        timestamp: DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default(),
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn is_unknown_topic(e: &RsError) -> bool {
    matches!(
        e,
        RsError::ServerError {
            protocol_error: ProtocolError::UnknownTopicOrPartition,
            ..
        }
    )
}

/// A source error for a failed produce: fatal when retrying cannot help.
fn classify(context: &str, e: RsError) -> SourceError {
    let fatal = matches!(
        &e,
        RsError::ServerError {
            protocol_error: ProtocolError::TopicAuthorizationFailed
                | ProtocolError::ClusterAuthorizationFailed
                | ProtocolError::SaslAuthenticationFailed
                | ProtocolError::UnsupportedSaslMechanism
                | ProtocolError::InvalidTopicException
                | ProtocolError::MessageTooLarge
                | ProtocolError::RecordListTooLarge
                | ProtocolError::InvalidRecord
                | ProtocolError::InvalidTimestamp
                | ProtocolError::PolicyViolation
                | ProtocolError::UnsupportedForMessageFormat
                | ProtocolError::InvalidRequiredAcks,
            ..
        }
    );
    crate::source_error(fatal, format!("{context}: {e}")).with_source(e)
}

/// `sasl` as rskafka's client takes it. `OAUTHBEARER` tokens come from the user's
/// provider on the blocking pool, at each connection.
fn rskafka_sasl(sasl: &Sasl) -> Result<rskafka::client::SaslConfig, SourceError> {
    use rskafka::client::{Credentials, OauthBearerCredentials, SaslConfig};
    let credentials = |user: &str, password: &ktm_core::Secret| {
        Credentials::new(user.to_owned(), password.expose().to_owned())
    };
    Ok(match sasl {
        Sasl::Plain { username, password } => SaslConfig::Plain(credentials(username, password)),
        Sasl::ScramSha256 { username, password } => {
            SaslConfig::ScramSha256(credentials(username, password))
        }
        Sasl::ScramSha512 { username, password } => {
            SaslConfig::ScramSha512(credentials(username, password))
        }
        Sasl::OAuthBearer(provider) => {
            let provider = provider.clone();
            SaslConfig::Oauthbearer(OauthBearerCredentials {
                callback: Arc::new(move || {
                    let provider = provider.clone();
                    Box::pin(async move {
                        let token = tokio::task::spawn_blocking(move || provider.token()).await??;
                        Ok(token.value.expose().to_owned())
                    })
                }),
                authz_id: None,
                bearer_kvs: Vec::new(),
            })
        }
        other => {
            return Err(crate::source_error(
                true,
                format!(
                    "SASL {} is not supported by the rskafka backend",
                    other.mechanism()
                ),
            ))
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;
    use ktm_core::{Message, Timestamp};

    use super::*;

    #[test]
    fn the_builder_checks_its_settings() {
        let base = || RskafkaDeadLetterProducer::builder().bootstrap_servers(["127.0.0.1:9092"]);
        assert!(base().build().is_ok());
        assert!(matches!(
            RskafkaDeadLetterProducer::builder().build(),
            Err(ConfigError::NoBootstrapServers)
        ));
        assert!(matches!(
            base().bootstrap_servers(["nope"]).build(),
            Err(ConfigError::InvalidBootstrapAddress { .. })
        ));
        assert!(matches!(
            base().send_timeout(Duration::ZERO).build(),
            Err(ConfigError::ZeroDuration {
                which: "send timeout"
            })
        ));
        let sasl = || base().security_protocol(SecurityProtocol::SaslPlaintext);
        assert!(matches!(
            sasl().sasl(Sasl::plain("", "pw")).build(),
            Err(ConfigError::Security { .. })
        ));
        assert!(matches!(
            sasl().sasl(Sasl::gssapi("kafka", "me")).build(),
            Err(ConfigError::Backend { .. })
        ));
        let p = sasl().sasl(Sasl::plain("u", "s3cr3t")).build().unwrap();
        assert!(!format!("{p:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_comma_separated_bootstrap_list_is_several_brokers() {
        let p = RskafkaDeadLetterProducer::builder()
            .bootstrap_servers(["h1:9092, h2:9092", "h3:9092"])
            .build()
            .unwrap();
        assert_eq!(
            p.settings.bootstrap_servers,
            ["h1:9092", "h2:9092", "h3:9092"]
        );
    }

    #[test]
    fn a_record_keeps_key_payload_timestamp_and_headers() {
        let m = Message::builder("orders", 2, 7)
            .key("k")
            .timestamp(Timestamp::CreateTime(1_700_000_000_123))
            .header("trace", Some("t1"))
            .header("empty", None::<Bytes>)
            .build();
        let r = to_record(&DeadLetterRecord::new("orders.dlq", &m, 3, "boom"));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value, None, "a null payload stays null");
        assert_eq!(r.timestamp.timestamp_millis(), 1_700_000_000_123);
        assert_eq!(r.headers["trace"], b"t1");
        assert_eq!(r.headers["empty"], b"", "null is sent empty");
        assert_eq!(r.headers[ktm_core::HEADER_SOURCE_OFFSET], b"7");
        assert_eq!(r.headers[ktm_core::HEADER_ERROR], b"boom");
    }

    #[test]
    fn refusals_that_retrying_cannot_fix_are_fatal() {
        let server = |protocol_error| RsError::ServerError {
            protocol_error,
            error_message: None,
            request: rskafka::client::error::RequestContext::Topic("t".into()),
            response: None,
            is_virtual: false,
        };
        assert!(!classify("x", server(ProtocolError::MessageTooLarge)).is_transient());
        assert!(!classify("x", server(ProtocolError::TopicAuthorizationFailed)).is_transient());
        assert!(classify("x", server(ProtocolError::UnknownTopicOrPartition)).is_transient());
        assert!(classify("x", server(ProtocolError::NotLeaderOrFollower)).is_transient());
        assert!(classify("x", RsError::Timeout).is_transient());
    }
}
