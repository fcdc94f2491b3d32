//! JSON payloads through serde (feature `json`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use super::{Decode, DecodeError};
use crate::Message;

/// The payload as JSON, deserialized into `T` with `serde_json`.
///
/// ```
/// use ktm_core::{Decode, Json, Message};
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64 }
/// let msg = Message::builder("orders", 0, 7).payload(r#"{"id": 42}"#).build();
/// let order: Order = Json::<Order>::new().decode(&msg)?;
/// assert_eq!(order.id, 42);
/// # Ok::<(), ktm_core::DecodeError>(())
/// ```
pub struct Json<T> {
    // fn() -> T: the decoder holds no T, so it is Send, Sync and Clone whatever T is.
    target: PhantomData<fn() -> T>,
}

impl<T> Json<T> {
    /// A JSON decoder into `T`.
    pub fn new() -> Self {
        Self {
            target: PhantomData,
        }
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned + 'static> Decode for Json<T> {
    type Output = T;

    fn decode(&mut self, message: &Message) -> Result<T, DecodeError> {
        let payload = message.payload().ok_or(DecodeError::MissingPayload)?;
        serde_json::from_slice(payload).map_err(|e| DecodeError::malformed("JSON", e))
    }
}
