//! The Kafka wire, spoken with `kafka-protocol` over connections of our own: one
//! request at a time per connection, API versions negotiated on connect, TLS and SASL
//! when configured. The group member, the control connection (offsets, metadata) and
//! the fetch path all use it.

pub(crate) mod conn;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod metadata;
pub(crate) mod sasl;
pub(crate) mod security;
#[cfg(feature = "tls")]
pub(crate) mod tls_config;
pub(crate) mod transport;

pub(crate) use conn::{Conn, ConnError};
pub(crate) use metadata::{cluster_metadata, ClusterMetadata, Leader};
pub(crate) use transport::Security;
