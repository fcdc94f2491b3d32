//! Handlers of decoded values: the decoder runs first, and only a message that decoded
//! reaches the handler.

use std::future::Future;

use async_trait::async_trait;

use super::{Decode, DecodeError};
use crate::{AsyncCallback, Callback, CallbackError, CallbackResult, Message};

/// A handler of decoded values: `handler(value, &message)` for each message that
/// `decoder` decodes. Give it to [`handler`](crate::ThreadManagerBuilder::handler), or to
/// [`parallel_handler`](crate::ThreadManagerBuilder::parallel_handler) when both parts
/// are `Clone`.
///
/// A message that does not decode never reaches `handler`; see the
/// [module](crate::decode) for how it is settled.
#[derive(Clone, Debug)]
pub struct Typed<D, F> {
    decoder: D,
    handler: F,
}

impl<D, F> Typed<D, F> {
    /// Decodes with `decoder`, then calls `handler` with the value and the message (for
    /// its key, headers and position). The handler returns `()` or `Result<(), E>`, as
    /// any callback.
    pub fn new<R>(decoder: D, handler: F) -> Self
    where
        D: Decode,
        F: FnMut(D::Output, &Message) -> R + Send + 'static,
        R: CallbackResult,
    {
        Self { decoder, handler }
    }
}

impl<D, F, R> Callback for Typed<D, F>
where
    D: Decode,
    F: FnMut(D::Output, &Message) -> R + Send + 'static,
    R: CallbackResult,
{
    #[inline]
    fn call(&mut self, message: &Message) -> Result<(), CallbackError> {
        let value = self.decoder.decode(message).map_err(decode_failure)?;
        (self.handler)(value, message).into_callback_result()
    }
}

/// An async handler of decoded values: `handler(value, message).await` for each message
/// that `decoder` decodes. Give it to
/// [`async_handler`](crate::ThreadManagerBuilder::async_handler), or to
/// [`parallel_async_handler`](crate::ThreadManagerBuilder::parallel_async_handler) when
/// both parts are `Clone`.
#[derive(Clone, Debug)]
pub struct TypedAsync<D, F> {
    decoder: D,
    handler: F,
}

impl<D, F> TypedAsync<D, F> {
    /// Decodes with `decoder`, then awaits `handler` with the value and the message.
    pub fn new<Fut, R>(decoder: D, handler: F) -> Self
    where
        D: Decode,
        F: FnMut(D::Output, Message) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send,
        R: CallbackResult,
    {
        Self { decoder, handler }
    }
}

#[async_trait]
impl<D, F, Fut, R> AsyncCallback for TypedAsync<D, F>
where
    D: Decode,
    D::Output: Send,
    F: FnMut(D::Output, Message) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send,
    R: CallbackResult,
{
    async fn call(&mut self, message: &Message) -> Result<(), CallbackError> {
        let value = self.decoder.decode(message).map_err(decode_failure)?;
        (self.handler)(value, message.clone())
            .await
            .into_callback_result()
    }
}

/// A decode failure as the failure policies see it: retried only when the decoder says
/// it may pass later; otherwise undecodable, settled at once.
#[cold]
fn decode_failure(error: DecodeError) -> CallbackError {
    if error.is_transient() {
        CallbackError::retryable(error)
    } else {
        CallbackError::undecodable(error)
    }
}
