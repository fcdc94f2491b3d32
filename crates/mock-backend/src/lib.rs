//! An in-memory Kafka cluster for kafka-thread-manager: topics with partitions, consumer
//! groups with committed offsets and eager rebalances, session timeouts, retention, and
//! deterministic fault injection. For tests (yours too) and demos; no broker needed.
//!
//! ```
//! use ktm_core::{ThreadManager, CommitPolicy};
//! use ktm_mock::{MockCluster, Record};
//! use std::time::Duration;
//!
//! let cluster = MockCluster::new();
//! cluster.create_topic("orders", 3)?;
//! cluster.fill("orders", 30, 10)?;
//! let source = cluster.consumer("billing").subscribe(["orders"]).build()?;
//! let manager = ThreadManager::builder(source)
//!     .callback(|_msg| {})
//!     .commit_policy(CommitPolicy::EveryMessage)
//!     .build()?;
//! manager.start()?;
//! while manager.stats().counts.messages_handled < 30 {
//!     std::thread::sleep(Duration::from_millis(5));
//! }
//! let report = manager.stop()?;
//! assert_eq!(cluster.committed("billing", "orders", 0), Some(10));
//! assert_eq!(report.counts.messages_handled, 30);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
mod cluster;
mod dead_letter;
mod error;
mod faults;
mod group;
mod preflight;
mod source;

pub use cluster::{MockCluster, Record};
pub use dead_letter::MockDeadLetterProducer;
pub use error::MockError;
pub use faults::{Fault, FaultCounts, FaultPlan, Faulty};
pub use group::CommitRecord;
pub use source::{MockSource, MockSourceBuilder};
