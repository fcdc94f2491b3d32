//! Validation at ingest: a [`Decode`] turns a [`Message`] into the handler's type before
//! the handler runs, so the handler gets typed values and never sees a payload it cannot
//! read.
//!
//! A message that does not decode is a permanent failure of that message
//! ([`FailureKind::Undecodable`](crate::FailureKind::Undecodable)): it is never retried,
//! the [`FailurePolicy`](crate::FailurePolicy) settles it (a dead letter with the decode
//! error in its headers, a skip, or a stop), and it is counted as
//! [`Counts::decode_failures`](crate::Counts::decode_failures). A decoder that could not
//! decode *now* (a schema registry that did not answer) says so with
//! [`DecodeError::is_transient`], and the message is retried under the
//! [`RetryPolicy`](crate::RetryPolicy) like a retryable callback error.
//!
//! ```
//! use ktm_core::{Message, ThreadManager, Typed, Utf8};
//! # use ktm_core::{MessageSource, Offsets, PollBatch, SourceError};
//! # use std::time::Duration;
//! # struct Idle;
//! # #[async_trait::async_trait]
//! # impl MessageSource for Idle {
//! #     fn backend(&self) -> &'static str { "idle" }
//! #     async fn poll(&mut self, t: Duration, _: &mut PollBatch) -> Result<(), SourceError> {
//! #         tokio::time::sleep(t).await; Ok(())
//! #     }
//! #     fn store(&mut self, _: &Offsets) {}
//! #     async fn commit(&mut self, _: &Offsets) -> Result<(), SourceError> { Ok(()) }
//! #     async fn close(&mut self) -> Result<(), SourceError> { Ok(()) }
//! # }
//! let manager = ThreadManager::builder(Idle)
//!     .handler(Typed::new(Utf8, |text: String, msg: &Message| {
//!         println!("{}@{}: {text}", msg.partition(), msg.offset());
//!     }))
//!     .build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "json")]
mod json;
pub mod schema_registry;
mod typed;

use std::fmt;

#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub use json::Json;
pub use typed::{Typed, TypedAsync};

use crate::{BoxError, Message};

/// Turns a [`Message`] into a handler's input; set next to the handler with [`Typed`]
/// (or [`TypedAsync`]). On a [`WorkerPool`](crate::WorkerPool) each worker decodes with
/// its own clone.
pub trait Decode: Send + 'static {
    /// What the handler receives.
    type Output;

    /// Decodes one message. A permanent error is settled by the failure policy without
    /// retries; a transient one ([`DecodeError::is_transient`]) is retried.
    fn decode(&mut self, message: &Message) -> Result<Self::Output, DecodeError>;
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record has no payload (a tombstone) where the decoder needs one.
    #[error("the record has no payload")]
    MissingPayload,
    /// The payload is not what the decoder reads.
    #[error("malformed payload ({format}): {source}")]
    Malformed {
        /// The format expected, such as `"JSON"`.
        format: &'static str,
        /// What the format's decoder said.
        source: BoxError,
    },
    /// The payload names a schema the registry does not know.
    #[error("schema id {id} is not registered")]
    UnknownSchema {
        /// The schema id from the payload.
        id: u32,
    },
    /// The schema could not be looked up now (the registry did not answer): transient.
    #[error("schema id {id} could not be looked up: {source}")]
    SchemaUnavailable {
        /// The schema id from the payload.
        id: u32,
        /// Why the lookup failed.
        source: BoxError,
    },
}

impl DecodeError {
    /// A payload that is not in `format`.
    pub fn malformed(format: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Malformed {
            format,
            source: source.into(),
        }
    }

    /// Whether decoding may succeed later (only a schema lookup that failed).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::SchemaUnavailable { .. })
    }
}

/// The payload as UTF-8 text.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8;

impl Decode for Utf8 {
    type Output = String;

    fn decode(&mut self, message: &Message) -> Result<String, DecodeError> {
        let payload = message.payload().ok_or(DecodeError::MissingPayload)?;
        std::str::from_utf8(payload)
            .map(str::to_owned)
            .map_err(|e| DecodeError::malformed("UTF-8", e))
    }
}

impl fmt::Display for Utf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UTF-8")
    }
}

#[cfg(test)]
mod tests;
