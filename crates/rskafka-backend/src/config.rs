//! The source's builder: Kafka's consumer settings (validated by
//! [`ktm_core::ConsumerConfig`]) plus the settings only this backend has.

use std::fmt;
use std::time::Duration;

use ktm_core::{
    ConfigError, ConsumerConfig, ConsumerConfigBuilder, IsolationLevel, OffsetReset, Sasl,
    SecurityProtocol, TlsConfig, TopicPartition,
};

use crate::group::Assignor;
use crate::RskafkaSource;

use crate::BACKEND;

/// Kafka's default `metadata.max.age.ms`.
const DEFAULT_METADATA_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// librdkafka's `queued.max.messages.kbytes` is 64 MiB; half of it keeps a consumer of many
/// partitions lean while still holding seconds of backlog at 100 B records.
const DEFAULT_QUEUED_MAX_BYTES: i64 = 32 * 1024 * 1024;

/// Everything an [`RskafkaSource`] runs with. Built by [`RskafkaSourceBuilder`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RskafkaConfig {
    /// Kafka's consumer settings, shared with the other backends.
    pub consumer: ConsumerConfig,
    /// The assignor this member proposes (and runs when it leads the group).
    pub assignor: Assignor,
    /// Bytes of fetched records that may wait for the consumer thread, for all
    /// partitions together (librdkafka's `queued.max.messages.kbytes`): the memory
    /// bound of prefetching, with one Fetch response in flight per broker.
    pub queued_max_bytes: i64,
    /// How long connecting (and retrying a broker request) may take before the
    /// attempt fails with a transient error.
    pub connect_timeout: Duration,
    /// `metadata.max.age.ms`: how often the group leader re-reads the subscribed
    /// topics' metadata, and rejoins when a topic appeared, disappeared or changed its
    /// number of partitions.
    pub metadata_max_age: Duration,
    /// The rustls configuration of the broker connections, when
    /// [`ConsumerConfig::security`] uses TLS: made from its [`TlsConfig`], or the one
    /// given to [`RskafkaSourceBuilder::rustls_config`].
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for RskafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RskafkaConfig");
        d.field("consumer", &self.consumer)
            .field("assignor", &self.assignor)
            .field("queued_max_bytes", &self.queued_max_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("metadata_max_age", &self.metadata_max_age);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

/// Builds an [`RskafkaSource`]. Kafka's settings keep Kafka's names (those of
/// [`ConsumerConfigBuilder`]); every value is checked in [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use ktm_rskafka::RskafkaSource;
/// let source = RskafkaSource::builder()
///     .bootstrap_servers(["127.0.0.1:9092"])
///     .topics(["orders"])
///     .group_id("billing")
///     .session_timeout(Duration::from_secs(10))
///     .build()?;
/// # drop(source);
/// # Ok::<(), ktm_core::ConfigError>(())
/// ```
#[must_use]
pub struct RskafkaSourceBuilder {
    consumer: ConsumerConfigBuilder,
    from_config: Option<ConsumerConfig>,
    assignor: Assignor,
    queued_max_bytes: i64,
    connect_timeout: Duration,
    metadata_max_age: Duration,
    #[cfg(feature = "tls")]
    rustls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for RskafkaSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RskafkaSourceBuilder")
            .field("consumer", &self.consumer)
            .field("assignor", &self.assignor)
            .field("queued_max_bytes", &self.queued_max_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("metadata_max_age", &self.metadata_max_age)
            .finish_non_exhaustive()
    }
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($arg:ty);)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, value: $arg) -> Self {
            self.consumer = self.consumer.$name(value);
            self
        }
    )*};
}

impl RskafkaSourceBuilder {
    pub(crate) fn new() -> Self {
        Self {
            consumer: ConsumerConfig::builder(),
            from_config: None,
            assignor: Assignor::default(),
            queued_max_bytes: DEFAULT_QUEUED_MAX_BYTES,
            connect_timeout: Duration::from_secs(10),
            metadata_max_age: DEFAULT_METADATA_MAX_AGE,
            #[cfg(feature = "tls")]
            rustls_config: None,
        }
    }

    /// Starts from an already validated [`ConsumerConfig`], replacing every Kafka
    /// setting given so far (backend settings are kept).
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.from_config = Some(config);
        self
    }

    /// Brokers to bootstrap from, each `host:port`; an element may be a comma-separated
    /// list (split in `build`, one address per element of
    /// [`ConsumerConfig::bootstrap_servers`]).
    pub fn bootstrap_servers(
        mut self,
        servers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.consumer = self.consumer.bootstrap_servers(servers);
        self
    }

    /// Subscribe to these topics as a member of the group.
    pub fn topics(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.consumer = self.consumer.topics(topics);
        self
    }

    /// Read exactly these partitions, with no group membership (offsets are still
    /// fetched and committed under the group id).
    pub fn assign(mut self, partitions: impl IntoIterator<Item = TopicPartition>) -> Self {
        self.consumer = self.consumer.assign(partitions);
        self
    }

    /// The consumer group id.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.consumer = self.consumer.group_id(group);
        self
    }

    /// `client.id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.consumer = self.consumer.client_id(id);
        self
    }

    /// `group.instance.id`: a static member (KIP-345). A member restarted with the same
    /// id within the session timeout gets its partitions back without a rebalance; a
    /// second live member with the same id is fenced (a fatal error).
    pub fn group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.consumer = self.consumer.group_instance_id(id);
        self
    }

    forward! {
        /// Where to start without a committed offset (`auto.offset.reset`).
        offset_reset(OffsetReset);
        /// `session.timeout.ms`.
        session_timeout(Duration);
        /// `heartbeat.interval.ms`.
        heartbeat_interval(Duration);
        /// `max.poll.interval.ms` (the rebalance timeout).
        max_poll_interval(Duration);
        /// `fetch.min.bytes`.
        fetch_min_bytes(i32);
        /// `fetch.max.bytes`.
        fetch_max_bytes(i32);
        /// `max.partition.fetch.bytes`: the most one fetch of one partition returns.
        max_partition_fetch_bytes(i32);
        /// `fetch.max.wait.ms`.
        fetch_max_wait(Duration);
        /// `isolation.level` (default [`IsolationLevel::ReadCommitted`]).
        isolation_level(IsolationLevel);
    }

    /// The partition assignor (default [`Assignor::Range`]).
    pub fn assignor(mut self, assignor: Assignor) -> Self {
        self.assignor = assignor;
        self
    }

    /// Bytes of fetched records that may wait for the consumer thread, all partitions
    /// together (default 32 MiB, at least 1): as librdkafka's
    /// `queued.max.messages.kbytes`, no Fetch is sent while they are spent. Memory for
    /// prefetching stays within this plus one response per broker in flight (each at
    /// most `fetch.max.bytes`, and no more than the room left), whatever the number
    /// of partitions. Fetch sizes are in wire bytes: compressed batches take more
    /// room once decoded (`docs/BENCHMARKS.md` measures lz4 and zstd backlogs).
    pub fn queued_max_bytes(mut self, bytes: i64) -> Self {
        self.queued_max_bytes = bytes;
        self
    }

    /// How long connecting may take, retries included (default 10 s); past it `poll`
    /// reports a transient error and the next poll tries again.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// `metadata.max.age.ms` (default 5 minutes, as Kafka's): how often the group leader
    /// re-reads the subscribed topics' metadata. A topic created (or recreated, after a
    /// broker lost it) or given more partitions once the group formed is assigned at
    /// the leader's next look, when the leader rejoins the group.
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.metadata_max_age = age;
        self
    }

    forward! {
        /// `security.protocol` (default plaintext). TLS needs this crate's `tls`
        /// feature (the facade's `rskafka-tls`).
        security_protocol(SecurityProtocol);
        /// SASL: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER` (GSSAPI is
        /// refused by `build`).
        sasl(Sasl);
        /// TLS settings: CA, client certificate, host name check.
        tls(TlsConfig);
    }

    /// Uses this rustls configuration for TLS instead of one made from the
    /// [`TlsConfig`] (for settings it lacks: a custom certificate verifier, pinned
    /// keys, another crypto provider). The security protocol must still be `SSL` or
    /// `SASL_SSL`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn rustls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.rustls_config = Some(config);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn build_config(self) -> Result<RskafkaConfig, ConfigError> {
        let consumer = match self.from_config {
            Some(c) => c,
            None => self.consumer.build()?,
        };
        let bad = |message: String| ConfigError::Backend {
            backend: BACKEND,
            message,
        };
        if self.queued_max_bytes < 1 {
            return Err(bad("queued_max_bytes must be at least 1".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration {
                which: "connect timeout",
            });
        }
        if self.metadata_max_age.is_zero() {
            return Err(ConfigError::ZeroDuration {
                which: "metadata max age",
            });
        }
        crate::wire::security::check_supported(&consumer.security)?;
        if i32::try_from(consumer.fetch_max_wait.as_millis()).is_err() {
            return Err(bad(
                "fetch_max_wait does not fit in an i32 of milliseconds".into()
            ));
        }
        Ok(RskafkaConfig {
            assignor: self.assignor,
            queued_max_bytes: self.queued_max_bytes,
            connect_timeout: self.connect_timeout,
            metadata_max_age: self.metadata_max_age,
            #[cfg(feature = "tls")]
            tls: crate::wire::tls_config::for_security(&consumer.security, self.rustls_config)?,
            consumer,
        })
    }

    /// Checks the settings and builds the source. Nothing connects until its first
    /// `poll`.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn build(self) -> Result<RskafkaSource, ConfigError> {
        Ok(RskafkaSource::new(self.build_config()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RskafkaSourceBuilder {
        RskafkaSourceBuilder::new()
            .bootstrap_servers(["127.0.0.1:9092"])
            .topics(["t"])
            .group_id("g")
    }

    #[test]
    fn kafka_settings_are_checked_by_the_shared_config() {
        assert!(base().build_config().is_ok());
        assert!(matches!(
            base().bootstrap_servers(["nope"]).build_config(),
            Err(ConfigError::InvalidBootstrapAddress { .. })
        ));
        assert!(matches!(
            base().group_id("").build_config(),
            Err(ConfigError::EmptyGroupId)
        ));
        assert!(matches!(
            base()
                .session_timeout(Duration::from_secs(1))
                .heartbeat_interval(Duration::from_secs(2))
                .build_config(),
            Err(ConfigError::HeartbeatNotBelowSession { .. })
        ));
        assert!(matches!(
            base().max_partition_fetch_bytes(0).build_config(),
            Err(ConfigError::InvalidSize { .. })
        ));
    }

    #[test]
    fn isolation_level_and_bootstrap_lists_reach_the_shared_config() {
        let c = base().build_config().unwrap();
        assert_eq!(c.consumer.isolation_level, IsolationLevel::ReadCommitted);
        let c = base()
            .isolation_level(IsolationLevel::ReadUncommitted)
            .bootstrap_servers(["a:1,b:2", " c:3 "])
            .build_config()
            .unwrap();
        assert_eq!(c.consumer.isolation_level, IsolationLevel::ReadUncommitted);
        assert_eq!(c.consumer.bootstrap_servers, ["a:1", "b:2", "c:3"]);
    }

    #[test]
    fn backend_settings_are_checked() {
        assert!(matches!(
            base().queued_max_bytes(0).build_config(),
            Err(ConfigError::Backend {
                backend: "rskafka",
                ..
            })
        ));
        assert!(matches!(
            base().connect_timeout(Duration::ZERO).build_config(),
            Err(ConfigError::ZeroDuration { .. })
        ));
        assert!(matches!(
            base().metadata_max_age(Duration::ZERO).build_config(),
            Err(ConfigError::ZeroDuration {
                which: "metadata max age"
            })
        ));
        let no_user = Sasl::plain("", "pw");
        assert!(matches!(
            base()
                .security_protocol(SecurityProtocol::SaslPlaintext)
                .sasl(no_user)
                .build_config(),
            Err(ConfigError::Security { .. })
        ));
        let kerberos = Sasl::gssapi("kafka", "me");
        let e = base()
            .security_protocol(SecurityProtocol::SaslPlaintext)
            .sasl(kerberos)
            .build_config()
            .unwrap_err();
        assert!(e.to_string().contains("GSSAPI"), "{e}");
    }

    #[test]
    fn a_prebuilt_config_replaces_kafka_settings() {
        let consumer = ConsumerConfig::builder()
            .bootstrap_servers(["10.0.0.1:9092"])
            .topics(["x"])
            .group_id("other")
            .build()
            .unwrap();
        let c = RskafkaSourceBuilder::new()
            .config(consumer.clone())
            .assignor(Assignor::RoundRobin)
            .build_config()
            .unwrap();
        assert_eq!(c.consumer, consumer);
        assert_eq!(c.assignor, Assignor::RoundRobin);
    }

    #[test]
    fn passwords_never_appear_in_debug_output() {
        let creds = Sasl::scram_sha512("alice", "s3cr3t-pw");
        let builder = base()
            .security_protocol(SecurityProtocol::SaslPlaintext)
            .sasl(creds.clone());
        assert!(!format!("{builder:?}").contains("s3cr3t-pw"));
        let config = builder.build_config().unwrap();
        let shown = format!("{config:?} {config:#?} {creds:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("<redacted>"));
        let source = base()
            .security_protocol(SecurityProtocol::SaslPlaintext)
            .sasl(creds)
            .build()
            .unwrap();
        assert!(!format!("{source:?}").contains("s3cr3t-pw"));
    }
}
