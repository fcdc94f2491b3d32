//! Building an [`RdkafkaSource`]: from the shared [`ConsumerConfig`] fields, or from a
//! ready rdkafka [`ClientConfig`].

use std::time::Duration;

use ktm_core::{
    ConfigError, ConsumerConfig, ConsumerConfigBuilder, IsolationLevel, OffsetReset, Sasl,
    SecurityProtocol, Subscription, TlsConfig, TopicPartition,
};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use crate::{RdkafkaSource, BACKEND};

/// How long [`close`](ktm_core::MessageSource::close) waits for librdkafka to leave the
/// group before it lets the consumer finish closing in the background.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often librdkafka reports statistics, which carry each partition's high watermark
/// (for lag in the manager's stats), unless `statistics.interval.ms` is set.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// Properties the source sets itself, whatever the user gave: the manager decides what
/// is stored and committed, and when.
/// End-of-partition markers are off too: the manager has no use for them, and reading
/// one in a batch moves librdkafka 2.12's position past it (librdkafka#4844), so a pause
/// and resume right after would skip the partition's next record.
const FORCED: [(&str, &str); 3] = [
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
];

/// Builds an [`RdkafkaSource`] from the same settings as the other backends, plus any
/// librdkafka property ([`set`](Self::set)).
///
/// ```no_run
/// use ktm_rdkafka::RdkafkaSource;
/// let source = RdkafkaSource::builder()
///     .bootstrap_servers(["127.0.0.1:9092"])
///     .topics(["orders"])
///     .group_id("billing")
///     .set("socket.timeout.ms", "10000")
///     .build()?;
/// # Ok::<(), ktm_core::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct RdkafkaSourceBuilder {
    common: ConsumerConfigBuilder,
    from_config: Option<ConsumerConfig>,
    extra: Vec<(String, String)>,
    close_timeout: Duration,
    read_headers: bool,
}

impl std::fmt::Debug for RdkafkaSourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdkafkaSourceBuilder")
            .field("common", &self.common)
            .field("from_config", &self.from_config)
            .field("extra", &crate::security::Redacted(&self.extra))
            .field("close_timeout", &self.close_timeout)
            .field("read_headers", &self.read_headers)
            .finish()
    }
}

impl RdkafkaSourceBuilder {
    pub(crate) fn new() -> Self {
        Self {
            common: ConsumerConfig::builder(),
            from_config: None,
            extra: Vec::new(),
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            read_headers: true,
        }
    }

    fn common(mut self, f: impl FnOnce(ConsumerConfigBuilder) -> ConsumerConfigBuilder) -> Self {
        self.common = f(self.common);
        self
    }

    /// Starts from an already validated [`ConsumerConfig`], replacing every shared
    /// setting given so far (`.set(..)` properties and the close timeout are kept).
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.from_config = Some(config);
        self
    }

    /// Brokers to bootstrap from, each `host:port` (`bootstrap.servers`); an element may
    /// be a comma-separated list.
    pub fn bootstrap_servers(self, servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.common(|c| c.bootstrap_servers(servers))
    }

    /// Subscribe to these topics as a group member.
    pub fn topics(self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.common(|c| c.topics(topics))
    }

    /// Read exactly these partitions, without group membership (offsets are still
    /// committed under the group id).
    pub fn assign(self, partitions: impl IntoIterator<Item = TopicPartition>) -> Self {
        self.common(|c| c.assign(partitions))
    }

    /// The consumer group id (`group.id`).
    pub fn group_id(self, group: impl Into<String>) -> Self {
        self.common(|c| c.group_id(group))
    }

    /// Where to start without a committed offset (`auto.offset.reset`).
    pub fn offset_reset(self, reset: OffsetReset) -> Self {
        self.common(|c| c.offset_reset(reset))
    }

    /// `session.timeout.ms`.
    pub fn session_timeout(self, d: Duration) -> Self {
        self.common(|c| c.session_timeout(d))
    }

    /// `heartbeat.interval.ms`.
    pub fn heartbeat_interval(self, d: Duration) -> Self {
        self.common(|c| c.heartbeat_interval(d))
    }

    /// `max.poll.interval.ms`.
    pub fn max_poll_interval(self, d: Duration) -> Self {
        self.common(|c| c.max_poll_interval(d))
    }

    /// `group.instance.id`: a static member (KIP-345).
    pub fn group_instance_id(self, id: impl Into<String>) -> Self {
        self.common(|c| c.group_instance_id(id))
    }

    /// `fetch.min.bytes`.
    pub fn fetch_min_bytes(self, n: i32) -> Self {
        self.common(|c| c.fetch_min_bytes(n))
    }

    /// `fetch.max.bytes`.
    pub fn fetch_max_bytes(self, n: i32) -> Self {
        self.common(|c| c.fetch_max_bytes(n))
    }

    /// `max.partition.fetch.bytes`.
    pub fn max_partition_fetch_bytes(self, n: i32) -> Self {
        self.common(|c| c.max_partition_fetch_bytes(n))
    }

    /// `fetch.wait.max.ms` (Kafka's `fetch.max.wait.ms`).
    pub fn fetch_max_wait(self, d: Duration) -> Self {
        self.common(|c| c.fetch_max_wait(d))
    }

    /// `client.id`.
    pub fn client_id(self, id: impl Into<String>) -> Self {
        self.common(|c| c.client_id(id))
    }

    /// `isolation.level` (default [`IsolationLevel::ReadCommitted`], as librdkafka's).
    pub fn isolation_level(self, level: IsolationLevel) -> Self {
        self.common(|c| c.isolation_level(level))
    }

    /// `security.protocol` (default plaintext). `ssl` and `sasl_ssl` need the
    /// `rdkafka-ssl` feature.
    pub fn security_protocol(self, protocol: SecurityProtocol) -> Self {
        self.common(|c| c.security_protocol(protocol))
    }

    /// SASL: `PLAIN`, `SCRAM-SHA-256`/`512` (with `rdkafka-ssl`), `OAUTHBEARER`, or
    /// `GSSAPI` (with `rdkafka-gssapi`).
    pub fn sasl(self, sasl: Sasl) -> Self {
        self.common(|c| c.sasl(sasl))
    }

    /// TLS settings: CA, client certificate, host name check (librdkafka's `ssl.*`).
    pub fn tls(self, tls: TlsConfig) -> Self {
        self.common(|c| c.tls(tls))
    }

    /// Any librdkafka property, passed through as is; it overrides the settings above.
    /// `enable.auto.commit` and `enable.auto.offset.store` are always `false` (the
    /// manager decides what is committed), and so is `enable.partition.eof`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// How long closing waits for librdkafka to leave the group (default 5 s) before it
    /// lets the consumer close in the background.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Whether records' headers are read (default `true`); see
    /// [`RdkafkaSource::with_read_headers`] for what turning it off saves.
    pub fn read_headers(mut self, read: bool) -> Self {
        self.read_headers = read;
        self
    }

    /// Checks the settings (the shared rules, then librdkafka's own, by creating a
    /// client) and builds the source. Nothing connects until the first poll.
    ///
    /// # Errors
    /// The shared [`ConfigError`]s, and [`ConfigError::Backend`] with librdkafka's message
    /// for a property it rejects.
    pub fn build(self) -> Result<RdkafkaSource, ConfigError> {
        let common = match self.from_config {
            Some(config) => config,
            None => self.common.build()?,
        };
        let mut client = client_config(&common);
        crate::security::apply(&common.security, &mut client)?;
        for (key, value) in self.extra {
            client.set(key, value);
        }
        let oauth = crate::security::oauth_provider(&common.security);
        Ok(
            RdkafkaSource::from_parts(client, common.subscription, self.close_timeout, oauth)?
                .with_read_headers(self.read_headers),
        )
    }
}

/// The librdkafka properties for the shared settings.
pub(crate) fn client_config(c: &ConsumerConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", c.bootstrap_servers.join(","))
        .set("group.id", &c.group_id)
        .set("auto.offset.reset", offset_reset(c.offset_reset))
        .set("session.timeout.ms", millis(c.session_timeout))
        .set("heartbeat.interval.ms", millis(c.heartbeat_interval))
        .set("max.poll.interval.ms", millis(c.max_poll_interval))
        .set("fetch.min.bytes", c.fetch_min_bytes.to_string())
        .set("fetch.max.bytes", c.fetch_max_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            c.max_partition_fetch_bytes.to_string(),
        )
        .set("fetch.wait.max.ms", millis(c.fetch_max_wait))
        .set("client.id", &c.client_id)
        .set("isolation.level", c.isolation_level.as_str());
    if let Some(id) = &c.group_instance_id {
        client.set("group.instance.id", id);
    }
    client
}

/// Applies the forced properties and checks the configuration with librdkafka itself.
pub(crate) fn finish_client_config(mut client: ClientConfig) -> Result<ClientConfig, ConfigError> {
    match client.get("group.id") {
        Some(g) if !g.is_empty() => {}
        _ => return Err(ConfigError::EmptyGroupId),
    }
    for (key, value) in FORCED {
        if client.get(key).is_some_and(|v| v != value) {
            tracing::warn!(
                key,
                value,
                "overriding a librdkafka property: the manager decides what is committed"
            );
        }
        client.set(key, value);
    }
    // The high watermarks come from librdkafka's statistics; a user's own interval
    // (0 turns them off) is kept.
    if client.get("statistics.interval.ms").is_none() {
        client.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    client.set_log_level(log_level());
    validate(&client)?;
    Ok(client)
}

/// Creates (and drops) a client with this configuration, so librdkafka checks every
/// property and their combinations now rather than at the first poll. The probe has no
/// group id and no bootstrap servers: it joins nothing and connects nowhere, so dropping
/// it is immediate.
fn validate(client: &ClientConfig) -> Result<(), ConfigError> {
    let mut probe = client.clone();
    probe.remove("group.id").remove("bootstrap.servers");
    probe.set("log_level", "0");
    match probe
        .create_with_context::<_, BaseConsumer<DefaultConsumerContext>>(DefaultConsumerContext)
    {
        Ok(consumer) => {
            drop(consumer);
            Ok(())
        }
        Err(e) => Err(config_error(&e)),
    }
}

/// librdkafka's own message for a configuration error.
pub(crate) fn config_error(e: &KafkaError) -> ConfigError {
    let message = match e {
        KafkaError::ClientConfig(_, description, _, _) => description.trim_end().to_owned(),
        KafkaError::ClientCreation(message) => message.trim_end().to_owned(),
        other => other.to_string(),
    };
    ConfigError::Backend {
        backend: BACKEND,
        message,
    }
}

/// The most verbose librdkafka level that tracing would record (rdkafka otherwise takes
/// it from the `log` crate, which is off under tracing).
pub(crate) fn log_level() -> RDKafkaLogLevel {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF | LevelFilter::ERROR => RDKafkaLogLevel::Error,
        LevelFilter::WARN => RDKafkaLogLevel::Warning,
        LevelFilter::INFO => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

fn offset_reset(reset: OffsetReset) -> &'static str {
    match reset {
        OffsetReset::Earliest => "earliest",
        OffsetReset::Latest => "latest",
        // `OffsetReset` is non-exhaustive; failing is the safe reading of anything new.
        _ => "error",
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().min(i32::MAX as u128).to_string()
}

/// The subscription as given with a ready [`ClientConfig`].
pub(crate) fn check_subscription(subscription: &Subscription) -> Result<(), ConfigError> {
    match subscription {
        Subscription::Topics(t) if t.is_empty() => Err(ConfigError::NoTopics),
        Subscription::Partitions(p) if p.is_empty() => Err(ConfigError::NoTopics),
        Subscription::Topics(t) => t.iter().try_for_each(|n| ktm_core::check_topic_name(n)),
        Subscription::Partitions(p) => p.iter().try_for_each(|tp| {
            ktm_core::check_topic_name(tp.topic())?;
            if tp.partition() < 0 {
                return Err(ConfigError::InvalidPartition {
                    topic: tp.topic().to_owned(),
                    partition: tp.partition(),
                });
            }
            Ok(())
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::RdkafkaSource;

    fn base() -> RdkafkaSourceBuilder {
        RdkafkaSource::builder()
            .bootstrap_servers(["127.0.0.1:9092"])
            .topics(["t"])
            .group_id("g")
    }

    #[test]
    fn isolation_level_becomes_the_librdkafka_property() {
        let source = base().build().unwrap();
        assert_eq!(
            source.client_config().get("isolation.level"),
            Some("read_committed")
        );
        let source = base()
            .isolation_level(IsolationLevel::ReadUncommitted)
            .build()
            .unwrap();
        assert_eq!(
            source.client_config().get("isolation.level"),
            Some("read_uncommitted")
        );
        let shared = ConsumerConfig::builder()
            .bootstrap_servers(["127.0.0.1:9092"])
            .topics(["t"])
            .group_id("g")
            .isolation_level(IsolationLevel::ReadUncommitted)
            .build()
            .unwrap();
        let client = client_config(&shared);
        assert_eq!(client.get("isolation.level"), Some("read_uncommitted"));
        let source = RdkafkaSource::builder().config(shared).build().unwrap();
        assert_eq!(
            source.client_config().get("isolation.level"),
            Some("read_uncommitted")
        );
        // A property set by hand wins, as every other.
        let source = base()
            .set("isolation.level", "read_uncommitted")
            .build()
            .unwrap();
        assert_eq!(
            source.client_config().get("isolation.level"),
            Some("read_uncommitted")
        );
    }

    #[test]
    fn bootstrap_lists_are_joined_one_address_each() {
        let source = base()
            .bootstrap_servers(["host1:9092,host2:9092", " host3:9092 ", "[::1]:9093,"])
            .build()
            .unwrap();
        assert_eq!(
            source.client_config().get("bootstrap.servers"),
            Some("host1:9092,host2:9092,host3:9092,[::1]:9093")
        );
        assert!(matches!(
            base().bootstrap_servers(["host1:9092,host2"]).build(),
            Err(ConfigError::InvalidBootstrapAddress { address, .. }) if address == "host2"
        ));
    }
}
