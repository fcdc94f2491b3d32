//! Protobuf messages in the schema-registry wire format (feature `protobuf`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::{Framed, SchemaLookup, SchemaType};
use crate::decode::{Decode, DecodeError};
use crate::Message;

const PROTOBUF: &str = "Protobuf";

/// Protobuf in the schema-registry wire format, decoded into the prost message `M`.
///
/// The id in the header must name a registered Protobuf schema (an unknown id is
/// permanent, an unreachable registry transient); the message indexes after it are
/// skipped and the rest is decoded as `M`. The schema text is not compiled: `M` is the
/// reader's schema, and Protobuf's field numbering is what keeps writers and readers
/// compatible. Set [`expect_message`](Self::expect_message) when one schema holds several
/// messages and only one of them is `M`.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use ktm_core::decode::schema_registry::{ProtobufDecoder, RegisteredSchema, SchemaType};
/// use ktm_core::{Decode, Message};
/// let proto = "syntax = \"proto3\"; message Ping { int64 seq = 1; }";
/// let schemas = HashMap::from([(3, Arc::new(RegisteredSchema::new(3, SchemaType::Protobuf, proto)))]);
/// // The decoder takes any prost message; a bare `u64` field 1 stands in for Ping here.
/// let mut decoder = ProtobufDecoder::<u64>::new(schemas);
/// // Magic byte, schema id 3, message index [0] (the single byte 0), then field 1 = 5.
/// let msg = Message::builder("pings", 0, 0).payload(&[0u8, 0, 0, 0, 3, 0, 0x08, 5][..]).build();
/// assert_eq!(decoder.decode(&msg)?, 5);
/// # Ok::<(), ktm_core::DecodeError>(())
/// ```
pub struct ProtobufDecoder<M> {
    lookup: Arc<dyn SchemaLookup>,
    expected: Option<Arc<[i64]>>,
    // fn() -> M: the decoder holds no M, so it is Send, Sync and Clone whatever M is.
    target: PhantomData<fn() -> M>,
}

impl<M> ProtobufDecoder<M> {
    /// Checks schema ids with `lookup` (cache it: see [`SchemaLookup`]).
    pub fn new(lookup: impl SchemaLookup) -> Self {
        Self::with_shared(Arc::new(lookup))
    }

    /// Checks schema ids with a lookup shared with other decoders.
    pub fn with_shared(lookup: Arc<dyn SchemaLookup>) -> Self {
        Self {
            lookup,
            expected: None,
            target: PhantomData,
        }
    }

    /// Refuses (as [`DecodeError::Malformed`]) messages whose indexes name another
    /// message of the schema than `indexes` (`[0]`: the first top-level message;
    /// `[1, 0]`: the first message nested in the second). By default any is decoded as
    /// `M`.
    #[must_use]
    pub fn expect_message(mut self, indexes: &[i64]) -> Self {
        self.expected = Some(indexes.into());
        self
    }
}

impl<M> Clone for ProtobufDecoder<M> {
    fn clone(&self) -> Self {
        Self {
            lookup: Arc::clone(&self.lookup),
            expected: self.expected.clone(),
            target: PhantomData,
        }
    }
}

impl<M> fmt::Debug for ProtobufDecoder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufDecoder")
            .field("message", &std::any::type_name::<M>())
            .field("expected", &self.expected)
            .finish()
    }
}

impl<M: prost::Message + Default + 'static> Decode for ProtobufDecoder<M> {
    type Output = M;

    fn decode(&mut self, message: &Message) -> Result<M, DecodeError> {
        let payload = message.payload().ok_or(DecodeError::MissingPayload)?;
        let framed = Framed::parse(payload)?;
        let (indexes, encoded) = framed.message_indexes()?;
        let id = framed.schema_id;
        let registered = self.lookup.schema(id)?;
        if registered.schema_type != SchemaType::Protobuf {
            return Err(DecodeError::malformed(
                PROTOBUF,
                format!("schema id {id} is a {} schema", registered.schema_type),
            ));
        }
        if let Some(expected) = &self.expected {
            if **expected != *indexes {
                return Err(DecodeError::malformed(
                    PROTOBUF,
                    format!("message indexes {indexes:?}, expected {expected:?}"),
                ));
            }
        }
        M::decode(encoded).map_err(|e| DecodeError::malformed(PROTOBUF, e))
    }
}
