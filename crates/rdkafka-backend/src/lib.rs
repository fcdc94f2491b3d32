//! The librdkafka backend of **kafka-thread-manager**: [`RdkafkaSource`], a
//! [`MessageSource`](ktm_core::MessageSource) over [rdkafka](https://docs.rs/rdkafka)'s
//! `StreamConsumer`.
//!
//! Build it from the settings every backend shares, so switching backends changes one
//! constructor, or from a ready rdkafka [`ClientConfig`](rdkafka::ClientConfig):
//!
//! ```no_run
//! use ktm_core::{Message, ThreadManager};
//! use ktm_rdkafka::RdkafkaSource;
//!
//! let source = RdkafkaSource::builder()
//!     .bootstrap_servers(["127.0.0.1:9092"])
//!     .topics(["orders"])
//!     .group_id("billing")
//!     .build()?;
//! let manager = ThreadManager::builder(source)
//!     .callback(|msg: &Message| -> Result<(), std::io::Error> {
//!         println!("{}[{}]@{}", msg.topic(), msg.partition(), msg.offset());
//!         Ok(())
//!     })
//!     .build()?;
//! manager.start()?;
//! manager.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Building needs a C and C++ compiler and `make`: librdkafka is compiled from source.

mod config;
mod context;
mod convert;
mod source;
mod worker;

pub use config::{RdkafkaSourceBuilder, DEFAULT_CLOSE_TIMEOUT};
pub use source::RdkafkaSource;

/// The rdkafka crate this backend is built on, for [`ClientConfig`](rdkafka::ClientConfig)
/// and the other types of its API.
pub use rdkafka;

/// The backend's name in errors and logs.
pub const BACKEND: &str = "rdkafka";
