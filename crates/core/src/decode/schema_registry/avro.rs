//! Avro datums in the schema-registry wire format (feature `avro`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;

use super::cache::IdCache;
use super::{Framed, SchemaLookup, SchemaType};
use crate::decode::{Decode, DecodeError};
use crate::Message;

const AVRO: &str = "Avro";

/// Avro in the schema-registry wire format, deserialized into `T` through serde.
///
/// The writer's schema is looked up by the id in the payload's header and parsed once per
/// id (clones share the parsed schemas); the datum is read with it and converted into `T`
/// (`apache_avro::from_value`). Bytes that do not read under the writer's schema, a `T`
/// they do not fit and a schema that is not Avro are [`DecodeError::Malformed`]; lookup
/// errors map as [`LookupError`](super::LookupError) says. Schema references (a schema
/// naming types of other subjects) are not resolved.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use ktm_core::decode::schema_registry::{AvroDecoder, RegisteredSchema, SchemaType};
/// use ktm_core::{Decode, Message};
/// #[derive(serde::Deserialize)]
/// struct Order { id: i64 }
/// let schema = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;
/// let schemas = HashMap::from([(7, Arc::new(RegisteredSchema::new(7, SchemaType::Avro, schema)))]);
/// let mut decoder = AvroDecoder::<Order>::new(schemas);
/// // Magic byte, schema id 7, then the datum: id 42 as a zigzag varint (84).
/// let msg = Message::builder("orders", 0, 0).payload(&[0u8, 0, 0, 0, 7, 84][..]).build();
/// assert_eq!(decoder.decode(&msg)?.id, 42);
/// # Ok::<(), ktm_core::DecodeError>(())
/// ```
pub struct AvroDecoder<T> {
    schemas: AvroSchemas,
    // fn() -> T: the decoder holds no T, so it is Send, Sync and Clone whatever T is.
    target: PhantomData<fn() -> T>,
}

impl<T> AvroDecoder<T> {
    /// Reads writer schemas from `lookup` (cache it: see [`SchemaLookup`]).
    pub fn new(lookup: impl SchemaLookup) -> Self {
        Self::with_shared(Arc::new(lookup))
    }

    /// Reads writer schemas from a lookup shared with other decoders.
    pub fn with_shared(lookup: Arc<dyn SchemaLookup>) -> Self {
        Self {
            schemas: AvroSchemas::new(lookup),
            target: PhantomData,
        }
    }
}

impl<T> Clone for AvroDecoder<T> {
    fn clone(&self) -> Self {
        Self {
            schemas: self.schemas.clone(),
            target: PhantomData,
        }
    }
}

impl<T> fmt::Debug for AvroDecoder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AvroDecoder<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned + 'static> Decode for AvroDecoder<T> {
    type Output = T;

    fn decode(&mut self, message: &Message) -> Result<T, DecodeError> {
        let value = self.schemas.read(message)?;
        apache_avro::from_value(&value).map_err(|e| DecodeError::malformed(AVRO, e))
    }
}

/// Avro in the schema-registry wire format, as apache-avro's generic [`Value`]: for
/// handlers that walk records of schemas they do not know in advance. Decodes as
/// [`AvroDecoder`] does, without the conversion.
#[derive(Clone)]
pub struct AvroValue {
    schemas: AvroSchemas,
}

impl AvroValue {
    /// Reads writer schemas from `lookup` (cache it: see [`SchemaLookup`]).
    pub fn new(lookup: impl SchemaLookup) -> Self {
        Self::with_shared(Arc::new(lookup))
    }

    /// Reads writer schemas from a lookup shared with other decoders.
    pub fn with_shared(lookup: Arc<dyn SchemaLookup>) -> Self {
        Self {
            schemas: AvroSchemas::new(lookup),
        }
    }
}

impl fmt::Debug for AvroValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AvroValue")
    }
}

impl Decode for AvroValue {
    type Output = Value;

    fn decode(&mut self, message: &Message) -> Result<Value, DecodeError> {
        self.schemas.read(message)
    }
}

/// The lookup and the writer schemas parsed so far, shared by clones.
#[derive(Clone)]
struct AvroSchemas {
    lookup: Arc<dyn SchemaLookup>,
    parsed: Arc<IdCache<Schema>>,
}

impl AvroSchemas {
    fn new(lookup: Arc<dyn SchemaLookup>) -> Self {
        Self {
            lookup,
            parsed: Arc::default(),
        }
    }

    /// The datum of `message`, read with its writer's schema.
    fn read(&self, message: &Message) -> Result<Value, DecodeError> {
        let payload = message.payload().ok_or(DecodeError::MissingPayload)?;
        let framed = Framed::parse(payload)?;
        let schema = self.writer_schema(framed.schema_id)?;
        let mut datum = framed.body;
        // The reader resolves the schema's named types each time: it borrows the schema,
        // so caching it would tie the cache to its own contents.
        GenericDatumReader::builder(&schema)
            .build()
            .and_then(|reader| reader.read_value(&mut datum))
            .map_err(|e| DecodeError::malformed(AVRO, e))
    }

    fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, DecodeError> {
        self.parsed.get_or_try(id, || self.parse_writer_schema(id))
    }

    fn parse_writer_schema(&self, id: u32) -> Result<Arc<Schema>, DecodeError> {
        let registered = self.lookup.schema(id)?;
        if registered.schema_type != SchemaType::Avro {
            return Err(DecodeError::malformed(
                AVRO,
                format!("schema id {id} is a {} schema", registered.schema_type),
            ));
        }
        // An unparseable registered schema never gets better: every message written with
        // it is undecodable.
        let schema = Schema::parse_str(&registered.text).map_err(|e| {
            DecodeError::malformed(AVRO, format!("schema id {id} does not parse: {e}"))
        })?;
        Ok(Arc::new(schema))
    }
}
