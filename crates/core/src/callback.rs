//! The user's per-message handler, sync or async, and how its failures are captured.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use async_trait::async_trait;
use futures_util::FutureExt;

use crate::error::BoxError;
use crate::{Message, SharedError};

/// Whether a failed message may succeed if handled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Another attempt may succeed (a timeout, a busy downstream). The default.
    Retryable,
    /// Another attempt will fail the same way (a malformed payload).
    Permanent,
    /// The message's payload could not be decoded into the handler's type (see
    /// [`Decode`](crate::Decode)): the handler never saw it. Permanent, and counted as
    /// [`Counts::decode_failures`](crate::Counts::decode_failures) rather than as a
    /// callback failure.
    Undecodable,
}

/// The error a callback returns.
///
/// Any `std::error::Error + Send + Sync`, `String` or `&str` converts into it (so `?`
/// works in a callback); the conversion marks it [`FailureKind::Retryable`]. Use
/// [`CallbackError::permanent`] to say retrying is pointless.
pub struct CallbackError {
    error: BoxError,
    kind: FailureKind,
}

impl CallbackError {
    /// A failure that may succeed on another attempt.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        Self {
            error: error.into(),
            kind: FailureKind::Retryable,
        }
    }

    /// A failure that will not succeed on another attempt.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self {
            error: error.into(),
            kind: FailureKind::Permanent,
        }
    }

    /// A message that could not be decoded (see [`Decode`](crate::Decode)): never
    /// retried, and counted apart from callback failures.
    pub fn undecodable(error: impl Into<BoxError>) -> Self {
        Self {
            error: error.into(),
            kind: FailureKind::Undecodable,
        }
    }

    /// Whether it may succeed on another attempt.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }
}

// No `std::error::Error` impl on purpose: it would make the blanket `From` below overlap
// with `From<T> for T` (the same trade anyhow makes).
impl<E: Into<BoxError>> From<E> for CallbackError {
    fn from(error: E) -> Self {
        Self::retryable(error)
    }
}

impl fmt::Debug for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackError")
            .field("kind", &self.kind)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// What a handler closure returns: `()` for a handler that cannot fail, or
/// `Result<(), E>` with `E: Into<CallbackError>`.
///
/// The closure setters take any closure returning one, so a closure needs no
/// annotations when its return type is known from its body: `()`, or an expression that
/// already has a `Result` type. `Ok(())` alone does not say what its error type is, so a
/// closure ending in it still names it (`-> Result<(), CallbackError>`).
///
/// ```
/// use ktm_core::{CallbackError, ThreadManagerBuilder, WorkerPool};
/// fn store(_: &[u8]) -> std::io::Result<()> {
///     Ok(())
/// }
/// fn set(a: ThreadManagerBuilder, b: ThreadManagerBuilder, c: ThreadManagerBuilder) {
///     // Cannot fail: returns `()`.
///     let _ = a.callback(|msg| println!("{}@{}", msg.topic(), msg.offset()));
///     // Fails when `store` does: the body is an `io::Result<()>`.
///     let _ = b.callback(|msg| store(msg.payload().unwrap_or_default()));
///     // Ends in `Ok(())`, so the error type is named.
///     let _ = c.parallel_callback(WorkerPool::new(2), |msg| -> Result<(), CallbackError> {
///         let body = msg.payload().ok_or(CallbackError::permanent("no payload"))?;
///         store(body)?;
///         Ok(())
///     });
/// }
/// ```
pub trait CallbackResult {
    /// The outcome as the manager sees it: `Ok` means handled.
    fn into_callback_result(self) -> Result<(), CallbackError>;
}

impl CallbackResult for () {
    #[inline]
    fn into_callback_result(self) -> Result<(), CallbackError> {
        Ok(())
    }
}

impl<E: Into<CallbackError>> CallbackResult for Result<(), E> {
    #[inline]
    fn into_callback_result(self) -> Result<(), CallbackError> {
        self.map_err(Into::into)
    }
}

/// A synchronous per-message handler.
///
/// Any `FnMut(&Message) -> R + Send + 'static` with `R:` [`CallbackResult`] (`()` or
/// `Result<(), E>`) is one. Returning `Ok` means the message is handled and its offset
/// may be committed.
pub trait Callback: Send + 'static {
    /// Handles one message.
    fn call(&mut self, message: &Message) -> Result<(), CallbackError>;
}

impl<F, R> Callback for F
where
    F: FnMut(&Message) -> R + Send + 'static,
    R: CallbackResult,
{
    fn call(&mut self, message: &Message) -> Result<(), CallbackError> {
        self(message).into_callback_result()
    }
}

/// A handler of batches: consecutive messages of **one partition**, in offset order, at
/// most [`WorkerPool::max_batch`](crate::WorkerPool::max_batch) of them (what the worker
/// has queued of the partition at the time); for handlers that write in bulk.
///
/// Any `FnMut(&[Message]) -> R + Send + 'static` with `R:` [`CallbackResult`] is one. `Ok` means every message of the batch is handled. An
/// error fails the batch as a whole: the [`RetryPolicy`](crate::RetryPolicy) retries the
/// same batch, and the [`FailurePolicy`](crate::FailurePolicy) then applies to each of its
/// messages (skipped, or dead-lettered one by one, or the manager stops before it).
pub trait BatchCallback: Send + 'static {
    /// Handles one batch.
    fn call(&mut self, batch: &[Message]) -> Result<(), CallbackError>;
}

impl<F, R> BatchCallback for F
where
    F: FnMut(&[Message]) -> R + Send + 'static,
    R: CallbackResult,
{
    fn call(&mut self, batch: &[Message]) -> Result<(), CallbackError> {
        self(batch).into_callback_result()
    }
}

/// An asynchronous per-message handler. Set with `async_handler` it runs on the consumer
/// thread's runtime; with `parallel_async_handler` each worker drives its own clone on
/// its own current-thread runtime, one message at a time.
#[async_trait]
pub trait AsyncCallback: Send + 'static {
    /// Handles one message.
    async fn call(&mut self, message: &Message) -> Result<(), CallbackError>;
}

/// Adapts an async closure taking an owned [`Message`] (cloning one is cheap).
#[derive(Clone)]
pub(crate) struct AsyncFn<F>(pub(crate) F);

#[async_trait]
impl<F, Fut, R> AsyncCallback for AsyncFn<F>
where
    F: FnMut(Message) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send,
    R: CallbackResult,
{
    async fn call(&mut self, message: &Message) -> Result<(), CallbackError> {
        (self.0)(message.clone()).await.into_callback_result()
    }
}

/// Why a message was not handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackFailure {
    /// The topic of the message.
    pub topic: String,
    /// The partition of the message.
    pub partition: i32,
    /// The offset of the message.
    pub offset: i64,
    /// The error's text, or the panic's message.
    pub reason: String,
    /// The callback's own error, with its type ([`SharedError::find`] downcasts it);
    /// `None` when the callback panicked.
    pub error: Option<SharedError>,
    /// Whether the callback panicked (rather than returning an error).
    pub panicked: bool,
    /// Whether the callback said retrying may help; a panic is permanent.
    pub kind: FailureKind,
}

impl CallbackFailure {
    /// The failure's kind as the dead letter's
    /// [`HEADER_FAILURE_KIND`](crate::HEADER_FAILURE_KIND) names it.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            _ if self.panicked => "panic",
            FailureKind::Retryable => "retryable",
            FailureKind::Permanent => "permanent",
            FailureKind::Undecodable => "undecodable",
        }
    }
}

impl fmt::Display for CallbackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.panicked { "panicked" } else { "failed" };
        write!(
            f,
            "callback {what} on {}[{}]@{}: {}",
            self.topic, self.partition, self.offset, self.reason
        )
    }
}

/// How the runner calls the user's handler. The runner is generic over it, so a sync
/// callback is inlined into the per-message loop rather than called through a vtable.
pub(crate) trait Handle: Send + 'static {
    /// Whether [`Handle::call_sync`] is the way to call it.
    const SYNC: bool;

    /// Calls a sync handler, catching a panic.
    fn call_sync(&mut self, message: &Message) -> Result<(), Box<CallbackFailure>>;

    /// Calls the handler, sync or async, catching a panic.
    fn call_async<'a>(
        &'a mut self,
        message: &'a Message,
    ) -> impl Future<Output = Result<(), Box<CallbackFailure>>> + Send + 'a;
}

/// A sync [`Callback`] as a [`Handle`].
#[derive(Clone)]
pub(crate) struct SyncHandler<C>(pub(crate) C);

/// An [`AsyncCallback`] as a [`Handle`].
#[derive(Clone)]
pub(crate) struct AsyncHandler<A>(pub(crate) A);

impl<C: Callback> Handle for SyncHandler<C> {
    const SYNC: bool = true;

    #[inline]
    fn call_sync(&mut self, message: &Message) -> Result<(), Box<CallbackFailure>> {
        match catch_unwind(AssertUnwindSafe(|| self.0.call(message))) {
            Ok(Ok(())) => Ok(()),
            outcome => Err(failure(message, outcome)),
        }
    }

    fn call_async<'a>(
        &'a mut self,
        message: &'a Message,
    ) -> impl Future<Output = Result<(), Box<CallbackFailure>>> + Send + 'a {
        std::future::ready(self.call_sync(message))
    }
}

impl<A: AsyncCallback> Handle for AsyncHandler<A> {
    const SYNC: bool = false;

    fn call_sync(&mut self, message: &Message) -> Result<(), Box<CallbackFailure>> {
        // The runner checks `SYNC` first.
        Err(misrouted(message, "an async handler called synchronously"))
    }

    async fn call_async(&mut self, message: &Message) -> Result<(), Box<CallbackFailure>> {
        match AssertUnwindSafe(self.0.call(message)).catch_unwind().await {
            Ok(Ok(())) => Ok(()),
            outcome => Err(failure(message, outcome)),
        }
    }
}

/// A handler called on a path it is not for. Should that ever happen, the message fails
/// (nothing is committed past it) rather than pass for handled.
#[cold]
fn misrouted(message: &Message, what: &str) -> Box<CallbackFailure> {
    failure(
        message,
        Ok(Err(CallbackError::permanent(format!(
            "internal error: {what}"
        )))),
    )
}

/// Boxed, so the per-message outcome type stays one word on the success path.
#[cold]
pub(crate) fn failure(
    message: &Message,
    outcome: Result<Result<(), CallbackError>, Box<dyn Any + Send>>,
) -> Box<CallbackFailure> {
    let (reason, error, panicked, kind) = match outcome {
        Ok(Ok(())) => (
            "callback succeeded".to_owned(),
            None,
            false,
            FailureKind::Retryable,
        ),
        Ok(Err(e)) => (
            e.to_string(),
            Some(SharedError::new(e.error)),
            false,
            e.kind,
        ),
        Err(panic) => (panic_message(&*panic), None, true, FailureKind::Permanent),
    };
    Box::new(CallbackFailure {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        reason,
        error,
        panicked,
        kind,
    })
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
