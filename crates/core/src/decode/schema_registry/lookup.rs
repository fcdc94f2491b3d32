//! Where decoders find a schema by id: the [`SchemaLookup`] trait and what it returns.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::super::DecodeError;
use crate::BoxError;

/// The kind of a registered schema (the registry's `schemaType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchemaType {
    /// An Avro schema (JSON text); the registry's default when `schemaType` is absent.
    Avro,
    /// A Protobuf schema (`.proto` text).
    Protobuf,
    /// A JSON Schema.
    Json,
}

impl SchemaType {
    /// The name the registry uses: `AVRO`, `PROTOBUF` or `JSON`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Json => "JSON",
        }
    }

    /// The type named `name` by the registry, if it is one of ours.
    ///
    /// ```
    /// use ktm_core::decode::schema_registry::SchemaType;
    /// assert_eq!(SchemaType::from_registry_name("PROTOBUF"), Some(SchemaType::Protobuf));
    /// assert_eq!(SchemaType::from_registry_name("XML"), None);
    /// ```
    pub fn from_registry_name(name: &str) -> Option<Self> {
        [Self::Avro, Self::Protobuf, Self::Json]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A schema as the registry holds it under an id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisteredSchema {
    /// The id payloads carry in their header.
    pub id: u32,
    /// What kind of schema `text` is.
    pub schema_type: SchemaType,
    /// The schema's text: Avro JSON, `.proto` source or a JSON Schema.
    pub text: String,
}

impl RegisteredSchema {
    /// The schema `text` of `schema_type` under `id`.
    pub fn new(id: u32, schema_type: SchemaType, text: impl Into<String>) -> Self {
        Self {
            id,
            schema_type,
            text: text.into(),
        }
    }
}

/// Why a schema lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The registry answered that it has no schema under this id: permanent, a message
    /// naming it is undecodable ([`DecodeError::UnknownSchema`]).
    #[error("schema id {id} is not registered")]
    Unknown {
        /// The id looked up.
        id: u32,
    },
    /// The registry did not answer usefully (refused, timed out, failed with a 5xx): the
    /// lookup may succeed later, and the message is retried
    /// ([`DecodeError::SchemaUnavailable`]).
    #[error("schema id {id} could not be looked up: {source}")]
    Unavailable {
        /// The id looked up.
        id: u32,
        /// What went wrong.
        source: BoxError,
    },
}

impl From<LookupError> for DecodeError {
    fn from(error: LookupError) -> Self {
        match error {
            LookupError::Unknown { id } => DecodeError::UnknownSchema { id },
            LookupError::Unavailable { id, source } => {
                DecodeError::SchemaUnavailable { id, source }
            }
        }
    }
}

/// Finds the schema registered under an id. Decoders call it on the consumer thread (or
/// a pool worker) for every message, so an implementation that asks a server should cache
/// what it found ([`CachedLookup`](super::CachedLookup); `HttpSchemaRegistry` does).
///
/// A map is a lookup, handy in tests and for schemas known in advance:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use ktm_core::decode::schema_registry::{LookupError, RegisteredSchema, SchemaLookup, SchemaType};
/// let mut schemas = HashMap::new();
/// schemas.insert(1, Arc::new(RegisteredSchema::new(1, SchemaType::Avro, r#""string""#)));
/// assert_eq!(schemas.schema(1)?.schema_type, SchemaType::Avro);
/// assert!(matches!(schemas.schema(2), Err(LookupError::Unknown { id: 2 })));
/// # Ok::<(), LookupError>(())
/// ```
pub trait SchemaLookup: Send + Sync + 'static {
    /// The schema under `id`. [`LookupError::Unknown`] is permanent,
    /// [`LookupError::Unavailable`] transient.
    fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, LookupError>;
}

impl<L: SchemaLookup + ?Sized> SchemaLookup for Arc<L> {
    fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, LookupError> {
        (**self).schema(id)
    }
}

impl<S: std::hash::BuildHasher + Send + Sync + 'static> SchemaLookup
    for HashMap<u32, Arc<RegisteredSchema>, S>
{
    fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, LookupError> {
        self.get(&id).cloned().ok_or(LookupError::Unknown { id })
    }
}
