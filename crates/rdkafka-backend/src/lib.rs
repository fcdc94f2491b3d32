//! The librdkafka backend of **kafka-thread-manager**: [`RdkafkaSource`], a
//! [`MessageSource`](ktm_core::MessageSource) over [rdkafka](https://docs.rs/rdkafka)'s
//! `StreamConsumer`.
//!
//! Build it from the settings every backend shares, so switching backends changes one
//! constructor, or from a ready rdkafka [`ClientConfig`](rdkafka::ClientConfig):
//!
//! ```no_run
//! use ktm_core::ThreadManager;
//! use ktm_rdkafka::RdkafkaSource;
//!
//! let source = RdkafkaSource::builder()
//!     .bootstrap_servers(["127.0.0.1:9092"])
//!     .topics(["orders"])
//!     .group_id("billing")
//!     .build()?;
//! let manager = ThreadManager::builder(source)
//!     .callback(|msg| {
//!         println!("{}[{}]@{}", msg.topic(), msg.partition(), msg.offset());
//!     })
//!     .build()?;
//! manager.start()?;
//! manager.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`pause`](ktm_core::MessageSource::pause) and `resume` use librdkafka's own: it
//!   stops fetching the partition and drops what it had prefetched, and the resume
//!   fetches from the last record returned + 1. A revoked partition's pause is
//!   forgotten (librdkafka would keep it for a later assignment).
//! - High watermarks (for lag in the manager's stats) come from librdkafka's
//!   statistics, every second unless `statistics.interval.ms` is set (0 turns them off).
//! - [`RdkafkaDeadLetterProducer`] produces dead letters for
//!   [`FailurePolicy::DeadLetter`](ktm_core::FailurePolicy::DeadLetter).
//!
//! - Security comes from the shared settings ([`ktm_core::Security`]), mapped onto
//!   librdkafka's `security.protocol`, `sasl.*` and `ssl.*` properties; `OAUTHBEARER`
//!   tokens come from the user's [`OAuthTokenProvider`](ktm_core::OAuthTokenProvider)
//!   through librdkafka's refresh callback. A refused authentication (`__AUTHENTICATION`)
//!   or certificate (`__SSL`, or a TLS alert refusing this client's certificate) ends
//!   the manager at once, as Java's consumer, instead of librdkafka's endless retries.
//!   Secrets never appear in `Debug` output.
//!
//! Building needs a C and C++ compiler and `make`: librdkafka is compiled from source.
//!
//! # Cargo features
//! - `ssl`: TLS and SASL SCRAM, with the system's OpenSSL (found through pkg-config).
//! - `ssl-vendored`: the same with OpenSSL built from source and linked statically.
//! - `gssapi`: SASL GSSAPI (Kerberos), with the system's Cyrus SASL (libsasl2).

mod config;
mod context;
mod convert;
mod dead_letter;
mod describe;
mod error;
mod fetch_queue;
mod passed;
mod security;
mod source;
mod worker;

pub use config::{RdkafkaSourceBuilder, DEFAULT_CLOSE_TIMEOUT};
pub use dead_letter::{
    RdkafkaDeadLetterProducer, RdkafkaDeadLetterProducerBuilder, DEFAULT_SEND_TIMEOUT,
};
pub use error::PartitionError;
pub use source::RdkafkaSource;

/// The rdkafka crate this backend is built on, for [`ClientConfig`](rdkafka::ClientConfig)
/// and the other types of its API.
pub use rdkafka;

/// The backend's name in errors and logs.
pub const BACKEND: &str = "rdkafka";
