//! Payloads in the schema-registry wire format (magic byte 0, a 4-byte schema id, then
//! the datum), as Confluent's serializers write them: `AvroDecoder` and `AvroValue`
//! (feature `avro`), `ProtobufDecoder` (feature `protobuf`), with schemas found through a
//! [`SchemaLookup`] such as `HttpSchemaRegistry` (feature `schema-registry`, cached by
//! id) or a [`CachedLookup`] around your own.
//!
//! Errors follow the [module](crate::decode) rules: a payload that is not in the wire
//! format, bytes that do not read under the writer's schema and an id the registry does
//! not know are permanent ([`FailureKind::Undecodable`](crate::FailureKind::Undecodable):
//! dead-lettered, skipped or stopping the manager as the failure policy says); a registry
//! that did not answer is transient
//! ([`DecodeError::SchemaUnavailable`](crate::DecodeError::SchemaUnavailable)) and the
//! message is retried under the retry policy.
//!
//! ```no_run
//! # #[cfg(all(feature = "avro", feature = "schema-registry"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ktm_core::decode::schema_registry::{AvroDecoder, HttpSchemaRegistry};
//! use ktm_core::{Message, Typed};
//! #[derive(serde::Deserialize)]
//! struct Order { id: i64, item: String, qty: i32 }
//! let registry = HttpSchemaRegistry::new("http://registry:8081");
//! let handler = Typed::new(AvroDecoder::<Order>::new(registry), |order: Order, _: &Message| {
//!     println!("{} x {}", order.qty, order.item);
//! });
//! # let _ = handler;
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "avro", feature = "schema-registry")))]
//! # fn main() {}
//! ```

#[cfg(feature = "avro")]
mod avro;
mod cache;
#[cfg(feature = "schema-registry")]
mod http;
mod lookup;
#[cfg(feature = "protobuf")]
mod protobuf;
mod wire;

#[cfg(feature = "avro")]
#[cfg_attr(docsrs, doc(cfg(feature = "avro")))]
pub use avro::{AvroDecoder, AvroValue};
pub use cache::CachedLookup;
#[cfg(feature = "schema-registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema-registry")))]
pub use http::{HttpSchemaRegistry, DEFAULT_TIMEOUT};
pub use lookup::{LookupError, RegisteredSchema, SchemaLookup, SchemaType};
#[cfg(feature = "protobuf")]
#[cfg_attr(docsrs, doc(cfg(feature = "protobuf")))]
pub use protobuf::ProtobufDecoder;
pub use wire::{Framed, WIRE_FORMAT};

/// The Avro crate the decoders read with, for its [`Value`](apache_avro::types::Value)
/// and to match versions.
#[cfg(feature = "avro")]
#[cfg_attr(docsrs, doc(cfg(feature = "avro")))]
pub use apache_avro;
/// The Protobuf crate `ProtobufDecoder` decodes with: derive messages with this version.
#[cfg(feature = "protobuf")]
#[cfg_attr(docsrs, doc(cfg(feature = "protobuf")))]
pub use prost;
