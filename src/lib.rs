#![forbid(unsafe_code)]
// The README's examples use the default backend, so it is the crate doc (and its examples
// doctests) when that backend is compiled in.
#![cfg_attr(feature = "rskafka", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "rskafka"),
    doc = "Run a Kafka consumer on a managed background thread, with at-least-once commits. See the README."
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use ktm_core::*;

/// The in-memory backend: a scriptable cluster for tests and demos.
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock {
    pub use ktm_mock::*;
}

/// The pure-Rust backend over rskafka (no C compiler needed).
#[cfg(feature = "rskafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "rskafka")))]
pub mod rskafka {
    pub use ktm_rskafka::*;
}

/// The librdkafka backend.
#[cfg(feature = "rdkafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "rdkafka")))]
pub mod rdkafka {
    pub use ktm_rdkafka::*;
}
