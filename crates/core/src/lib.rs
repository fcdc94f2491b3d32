//! Core of **kafka-thread-manager**: run a Kafka consumer on a managed background thread,
//! with at-least-once commits.
//!
//! - [`MessageSource`]: a Kafka consumer, implemented by the backends (`ktm-rskafka`,
//!   `ktm-rdkafka`, `ktm-mock`).
//! - [`Callback`] / [`AsyncCallback`]: the per-message handler; a closure returns `()` or
//!   `Result<(), E>` ([`CallbackResult`]). [`ThreadManagerBuilder`] lists the setters.
//! - [`ThreadManager`]: owns the consumer thread and its lifecycle ([`State`]).
//! - [`WorkerPool`]: optional worker threads for slow callbacks, in partition (or key)
//!   order, with bounded queues that pause partitions at the source; also the home of
//!   [`BatchCallback`].
//!
//! Delivery is at-least-once: a position is committed only after every message before
//! it was settled: handled (its callback returned `Ok`, perhaps after retries under the
//! [`RetryPolicy`]), or deliberately disposed of by the [`FailurePolicy`] (skipped, or
//! dead-lettered through a [`DeadLetterProducer`] and acknowledged by the broker).
//! [`telemetry`] lists the metrics published through the `metrics` facade; with the
//! `opentelemetry` feature, `trace_context` carries traces across Kafka.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod bootstrap;
mod builder;
mod callback;
mod callback_time;
mod config;
mod config_error;
mod consumer_config;
mod dead_letter;
pub mod decode;
mod error;
mod launch;
pub mod lifecycle;
mod manager;
mod message;
mod offsets;
mod pool;
mod preflight;
mod progress;
mod runner;
mod security;
mod shared;
#[cfg(all(unix, feature = "signals"))]
mod shutdown;
mod source;
mod stats;
mod stop_signal;
pub mod telemetry;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod trace_context;

pub use bootstrap::parse_bootstrap_servers;
pub use builder::{ThreadManagerBuilder, DEFAULT_THREAD_LIFETIME};
pub use callback::{
    AsyncCallback, BatchCallback, Callback, CallbackError, CallbackFailure, CallbackResult,
    FailureKind,
};
pub use callback_time::CallbackTime;
pub use config::{CommitPolicy, FailurePolicy, RetryBackoff, RetryPolicy};
pub use config_error::ConfigError;
pub use consumer_config::{
    check_topic_name, ConsumerConfig, ConsumerConfigBuilder, IsolationLevel, Subscription,
};
pub use dead_letter::{
    DeadLetter, DeadLetterProducer, DeadLetterRecord, HEADER_ATTEMPTS, HEADER_ERROR,
    HEADER_FAILURE_KIND, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub use decode::Json;
pub use decode::{Decode, DecodeError, Typed, TypedAsync, Utf8};
pub use error::{BoxError, BuildError, Error, Result, SharedError, SourceError, SourceErrorKind};
pub use lifecycle::{State, StateChange, Trigger};
pub use manager::ThreadManager;
pub use message::{Header, Message, MessageBuilder, Timestamp, TopicPartition};
pub use offsets::{OffsetReset, Offsets};
pub use pool::{ProcessingOrder, WorkerPool};
pub use preflight::{
    GroupStatus, PreflightCheck, PreflightError, PreflightItem, PreflightReport, SourceDescription,
    Subscribed, TopicDescription, DEFAULT_PREFLIGHT_TIMEOUT, LAG_METRICS,
};
pub use security::{
    OAuthToken, OAuthTokenProvider, PemSource, Sasl, Secret, Security, SecurityProtocol, TlsConfig,
};
#[cfg(all(unix, feature = "signals"))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "signals"))))]
pub use shutdown::{ShutdownOutcome, ShutdownSignal};
pub use source::{MessageSource, PollBatch, SourceEvent};
pub use stats::{Counts, Health, PartitionStats, Stats, StopReason, StopReport};

/// Re-exported so backends and users implement [`MessageSource`] and [`AsyncCallback`]
/// with the same macro version.
pub use async_trait::async_trait;
