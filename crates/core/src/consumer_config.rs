//! Kafka consumer settings shared by the real backends, validated once here so that
//! switching backends changes one constructor and nothing else.

use std::time::Duration;

use crate::{
    parse_bootstrap_servers, ConfigError, OffsetReset, Sasl, Security, SecurityProtocol, TlsConfig,
    TopicPartition,
};

/// What the consumer reads: topics through the group protocol, or fixed partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subscription {
    /// Join the group and share these topics' partitions with its other members.
    Topics(Vec<String>),
    /// Read exactly these partitions, with no group membership; offsets are still
    /// committed under the group id.
    Partitions(Vec<TopicPartition>),
}

/// Which records of transactions a consumer reads: Kafka's `isolation.level`.
///
/// The default is [`ReadCommitted`](Self::ReadCommitted), as librdkafka's; the Java
/// client defaults to `read_uncommitted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// `read_committed`: only records of committed transactions (and records written
    /// outside transactions), up to the last stable offset; records of aborted
    /// transactions are skipped.
    #[default]
    ReadCommitted,
    /// `read_uncommitted`: every record up to the high watermark, those of open and
    /// aborted transactions included.
    ReadUncommitted,
}

impl IsolationLevel {
    /// The value of Kafka's `isolation.level` property: `read_committed` or
    /// `read_uncommitted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadCommitted => "read_committed",
            Self::ReadUncommitted => "read_uncommitted",
        }
    }
}

impl std::fmt::Display for IsolationLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validated consumer settings. Build with [`ConsumerConfig::builder`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// `host:port` of at least one broker, one address per element (lists given to
    /// the builder are split at their commas).
    pub bootstrap_servers: Vec<String>,
    /// Topics or fixed partitions.
    pub subscription: Subscription,
    /// The consumer group, under which offsets are committed.
    pub group_id: String,
    /// Where to start without a committed offset.
    pub offset_reset: OffsetReset,
    /// Kafka's `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Kafka's `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// Kafka's `max.poll.interval.ms` (the rebalance timeout).
    pub max_poll_interval: Duration,
    /// Kafka's `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// Kafka's `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// Kafka's `max.partition.fetch.bytes`: also the prefetch bound per partition.
    pub max_partition_fetch_bytes: i32,
    /// Kafka's `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
    /// Kafka's `client.id`.
    pub client_id: String,
    /// Kafka's `group.instance.id` (static membership, KIP-345): a member that restarts
    /// with the same id within the session timeout gets its partitions back without a
    /// rebalance. `None`: a dynamic member.
    pub group_instance_id: Option<String>,
    /// Kafka's `isolation.level` (default [`IsolationLevel::ReadCommitted`]).
    pub isolation_level: IsolationLevel,
    /// `security.protocol`, SASL and TLS (default: plaintext).
    pub security: Security,
}

impl ConsumerConfig {
    /// Starts from Kafka's defaults (session 45 s, heartbeat 3 s, max poll 300 s, fetch
    /// max wait 500 ms, 1 MiB per partition, 50 MiB per fetch, reset `earliest`) and
    /// librdkafka's isolation level, `read_committed`.
    ///
    /// ```
    /// use ktm_core::{ConsumerConfig, ConfigError};
    /// let config = ConsumerConfig::builder()
    ///     .bootstrap_servers(["127.0.0.1:9092"])
    ///     .topics(["orders"])
    ///     .group_id("billing")
    ///     .build()?;
    /// assert_eq!(config.group_id, "billing");
    /// assert!(matches!(
    ///     ConsumerConfig::builder().topics(["orders"]).group_id("g").build(),
    ///     Err(ConfigError::NoBootstrapServers)
    /// ));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn builder() -> ConsumerConfigBuilder {
        ConsumerConfigBuilder {
            config: ConsumerConfig {
                bootstrap_servers: Vec::new(),
                subscription: Subscription::Topics(Vec::new()),
                group_id: String::new(),
                offset_reset: OffsetReset::Earliest,
                session_timeout: Duration::from_secs(45),
                heartbeat_interval: Duration::from_secs(3),
                max_poll_interval: Duration::from_secs(300),
                fetch_min_bytes: 1,
                fetch_max_bytes: 50 * 1024 * 1024,
                max_partition_fetch_bytes: 1024 * 1024,
                fetch_max_wait: Duration::from_millis(500),
                client_id: "kafka-thread-manager".to_owned(),
                group_instance_id: None,
                isolation_level: IsolationLevel::ReadCommitted,
                security: Security::default(),
            },
        }
    }

    /// The topics read, whichever the subscription kind.
    pub fn topics(&self) -> Vec<String> {
        match &self.subscription {
            Subscription::Topics(t) => t.clone(),
            Subscription::Partitions(p) => {
                let mut t: Vec<String> = p.iter().map(|tp| tp.topic().to_owned()).collect();
                t.sort();
                t.dedup();
                t
            }
        }
    }
}

/// Builds a [`ConsumerConfig`]; every setting is checked in [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use]
pub struct ConsumerConfigBuilder {
    config: ConsumerConfig,
}

impl ConsumerConfigBuilder {
    /// Brokers to bootstrap from, each `host:port`; an element may be a comma-separated
    /// list, as librdkafka's `bootstrap.servers` (see [`parse_bootstrap_servers`]).
    pub fn bootstrap_servers(
        mut self,
        servers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.config.bootstrap_servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Subscribe to these topics as a group member.
    pub fn topics(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.config.subscription =
            Subscription::Topics(topics.into_iter().map(Into::into).collect());
        self
    }

    /// Read exactly these partitions, without group membership.
    pub fn assign(mut self, partitions: impl IntoIterator<Item = TopicPartition>) -> Self {
        self.config.subscription = Subscription::Partitions(partitions.into_iter().collect());
        self
    }

    /// The consumer group id.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.config.group_id = group.into();
        self
    }

    /// Where to start without a committed offset.
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.config.offset_reset = reset;
        self
    }

    /// `session.timeout.ms`.
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.config.session_timeout = d;
        self
    }

    /// `heartbeat.interval.ms`.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat_interval = d;
        self
    }

    /// `max.poll.interval.ms`.
    pub fn max_poll_interval(mut self, d: Duration) -> Self {
        self.config.max_poll_interval = d;
        self
    }

    /// `fetch.min.bytes`.
    pub fn fetch_min_bytes(mut self, n: i32) -> Self {
        self.config.fetch_min_bytes = n;
        self
    }

    /// `fetch.max.bytes`.
    pub fn fetch_max_bytes(mut self, n: i32) -> Self {
        self.config.fetch_max_bytes = n;
        self
    }

    /// `max.partition.fetch.bytes`.
    pub fn max_partition_fetch_bytes(mut self, n: i32) -> Self {
        self.config.max_partition_fetch_bytes = n;
        self
    }

    /// `fetch.max.wait.ms`.
    pub fn fetch_max_wait(mut self, d: Duration) -> Self {
        self.config.fetch_max_wait = d;
        self
    }

    /// `client.id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client_id = id.into();
        self
    }

    /// `group.instance.id`: makes this consumer a static member of its group (KIP-345).
    /// Give each member of the group its own id, stable across restarts (say, the pod
    /// name). The same rules as topic names apply.
    pub fn group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.group_instance_id = Some(id.into());
        self
    }

    /// `isolation.level`: whether records of open and aborted transactions are read
    /// (default [`IsolationLevel::ReadCommitted`]).
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.config.isolation_level = level;
        self
    }

    /// `security.protocol` (default [`SecurityProtocol::Plaintext`]).
    pub fn security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.config.security.protocol = protocol;
        self
    }

    /// SASL authentication (with [`SecurityProtocol::SaslPlaintext`] or
    /// [`SecurityProtocol::SaslSsl`]).
    pub fn sasl(mut self, sasl: Sasl) -> Self {
        self.config.security.sasl = Some(sasl);
        self
    }

    /// TLS settings (with [`SecurityProtocol::Ssl`] or [`SecurityProtocol::SaslSsl`]).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.security.tls = tls;
        self
    }

    /// All security settings at once, replacing those given so far.
    pub fn security(mut self, security: Security) -> Self {
        self.config.security = security;
        self
    }

    /// Checks every setting, and splits the bootstrap lists into one address per
    /// element.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn build(self) -> Result<ConsumerConfig, ConfigError> {
        let mut c = self.config;
        c.bootstrap_servers = parse_bootstrap_servers(&c.bootstrap_servers)?;
        match &c.subscription {
            Subscription::Topics(t) if t.is_empty() => return Err(ConfigError::NoTopics),
            Subscription::Partitions(p) if p.is_empty() => return Err(ConfigError::NoTopics),
            Subscription::Topics(t) => t.iter().try_for_each(|n| check_topic_name(n))?,
            Subscription::Partitions(p) => {
                for tp in p {
                    check_topic_name(tp.topic())?;
                    if tp.partition() < 0 {
                        return Err(ConfigError::InvalidPartition {
                            topic: tp.topic().to_owned(),
                            partition: tp.partition(),
                        });
                    }
                }
            }
        }
        if c.group_id.is_empty() {
            return Err(ConfigError::EmptyGroupId);
        }
        c.security.check()?;
        if let Some(id) = &c.group_instance_id {
            check_name(id).map_err(|reason| ConfigError::InvalidGroupInstanceId {
                id: id.clone(),
                reason,
            })?;
        }
        for (which, d) in [
            ("session timeout", c.session_timeout),
            ("heartbeat interval", c.heartbeat_interval),
            ("max poll interval", c.max_poll_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { which });
            }
        }
        if c.heartbeat_interval >= c.session_timeout {
            return Err(ConfigError::HeartbeatNotBelowSession {
                heartbeat: c.heartbeat_interval,
                session: c.session_timeout,
            });
        }
        for (which, value) in [
            ("fetch.min.bytes", c.fetch_min_bytes),
            ("fetch.max.bytes", c.fetch_max_bytes),
            ("max.partition.fetch.bytes", c.max_partition_fetch_bytes),
        ] {
            if value < 1 {
                return Err(ConfigError::InvalidSize {
                    which,
                    value: i64::from(value),
                    max: i64::from(i32::MAX),
                });
            }
        }
        Ok(c)
    }
}

/// Kafka's topic name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// [`ConfigError::InvalidTopicName`] saying which rule.
pub fn check_topic_name(name: &str) -> Result<(), ConfigError> {
    check_name(name).map_err(|reason| ConfigError::InvalidTopicName {
        name: name.to_owned(),
        reason,
    })
}

/// Kafka's rules for topic names, which `group.instance.id` follows too; the rule broken.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.len() > 249 {
        Err("it is longer than 249 characters")
    } else if name == "." || name == ".." {
        Err("'.' and '..' are reserved")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Err("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[path = "consumer_config_tests.rs"]
mod tests;
