use super::*;
use std::sync::{Arc, Mutex};

use crate::{Callback, CallbackError, CallbackResult, FailureKind};

fn msg(payload: Option<&'static [u8]>) -> Message {
    let b = Message::builder("t", 0, 3);
    match payload {
        Some(p) => b.payload(p).build(),
        None => b.build(),
    }
}

#[test]
fn utf8_decodes_text_and_refuses_other_bytes_permanently() {
    assert_eq!(Utf8.decode(&msg(Some(b"h\xc3\xa9"))).unwrap(), "hé");
    let bad = Utf8.decode(&msg(Some(b"\xff\xfe"))).unwrap_err();
    assert!(
        matches!(
            bad,
            DecodeError::Malformed {
                format: "UTF-8",
                ..
            }
        ),
        "{bad:?}"
    );
    assert!(!bad.is_transient());
    assert!(matches!(
        Utf8.decode(&msg(None)),
        Err(DecodeError::MissingPayload)
    ));
}

#[test]
fn a_typed_handler_never_sees_an_undecodable_message() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    // No annotations: the decoder fixes the value's type.
    let mut typed = Typed::new(Utf8, move |text, _| sink.lock().unwrap().push(text));
    assert!(Callback::call(&mut typed, &msg(Some(b"ok"))).is_ok());
    let err = Callback::call(&mut typed, &msg(Some(b"\xff"))).unwrap_err();
    assert_eq!(err.kind(), FailureKind::Undecodable);
    assert!(err.to_string().contains("UTF-8"), "{err}");
    assert_eq!(*seen.lock().unwrap(), ["ok"]);
}

/// A decoder whose schema lookup fails: the failure is retryable, not undecodable.
struct Unavailable;

impl Decode for Unavailable {
    type Output = ();
    fn decode(&mut self, _: &Message) -> Result<(), DecodeError> {
        Err(DecodeError::SchemaUnavailable {
            id: 7,
            source: "connection refused".into(),
        })
    }
}

#[test]
fn a_lookup_that_failed_is_retryable_and_an_unknown_schema_is_not() {
    let mut typed = Typed::new(Unavailable, |(), _| {});
    let err = Callback::call(&mut typed, &msg(Some(b"x"))).unwrap_err();
    assert_eq!(err.kind(), FailureKind::Retryable);
    assert!(!DecodeError::UnknownSchema { id: 7 }.is_transient());
}

#[test]
fn the_handler_error_keeps_its_own_kind() {
    let mut typed = Typed::new(
        Utf8,
        |_: String, _: &Message| -> Result<(), CallbackError> {
            Err(CallbackError::permanent("downstream refused"))
        },
    );
    let err = Callback::call(&mut typed, &msg(Some(b"ok"))).unwrap_err();
    assert_eq!(err.kind(), FailureKind::Permanent);
    let _ = ().into_callback_result();
}
