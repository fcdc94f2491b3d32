//! Failures keep their type in stop reasons and reports: the source's `SourceError`, the
//! callback's own error and the dead-letter producer's error are reachable through
//! `SharedError::find`, not only as text.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::cluster_with;
use kafka_thread_manager::mock::{Fault, FaultPlan, Faulty};
use kafka_thread_manager::{
    CallbackError, DeadLetter, FailurePolicy, Message, SourceError, SourceErrorKind, State,
    StopReason, StopReport, ThreadManager,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// Starts the manager and waits for it to end by itself.
fn run(m: &ThreadManager) -> StopReport {
    m.start().unwrap();
    m.wait(Some(PATIENCE)).unwrap()
}

/// A handler's own error type.
#[derive(Debug, thiserror::Error)]
#[error("payload at {offset} is not an order")]
struct NotAnOrder {
    offset: i64,
}

/// A callback refusing the message at `offset` with the handler's own error type.
fn not_an_order_at(offset: i64) -> impl FnMut(&Message) -> Result<(), CallbackError> {
    move |m| {
        if m.offset() == offset {
            return Err(CallbackError::permanent(NotAnOrder { offset }));
        }
        Ok(())
    }
}

#[test]
fn a_fatal_source_error_is_reachable_with_its_kind_and_backend() {
    let cluster = cluster_with("t", 1, 10);
    let source = cluster.consumer("g").subscribe(["t"]).build().unwrap();
    let m = ThreadManager::builder(Faulty::new(
        source,
        FaultPlan::new().on_poll(2, Fault::Fatal),
    ))
    .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
    .build()
    .unwrap();
    let report = run(&m);
    assert_eq!(report.final_state, State::Failed);
    let StopReason::SourceFailed(error) = &report.reason else {
        panic!("{:?}", report.reason);
    };
    let source = error.find::<SourceError>().expect("the SourceError itself");
    assert_eq!(source.kind(), SourceErrorKind::Fatal);
    assert_eq!(source.backend(), "mock");
    assert_eq!(error.to_string(), source.to_string());
    assert!(error.find::<std::io::Error>().is_none());
}

#[test]
fn the_callbacks_own_error_is_reachable_by_its_type() {
    let cluster = cluster_with("t", 1, 10);
    let source = cluster.consumer("g").subscribe(["t"]).build().unwrap();
    let m = ThreadManager::builder(source)
        .callback(not_an_order_at(3))
        .build()
        .unwrap();
    let report = run(&m);
    let StopReason::CallbackFailed(failure) = &report.reason else {
        panic!("{:?}", report.reason);
    };
    let error = failure.error.as_ref().expect("an error, not a panic");
    assert_eq!(error.find::<NotAnOrder>().unwrap().offset, 3);
    assert_eq!(failure.reason, "payload at 3 is not an order");
    assert!(!failure.panicked);
}

#[test]
fn a_panic_has_a_message_and_no_error() {
    let cluster = cluster_with("t", 1, 10);
    let source = cluster.consumer("g").subscribe(["t"]).build().unwrap();
    let m = ThreadManager::builder(source)
        .callback(|m: &Message| -> Result<(), std::io::Error> {
            assert_ne!(m.offset(), 4, "offset 4 is poison");
            Ok(())
        })
        .build()
        .unwrap();
    let report = run(&m);
    let StopReason::CallbackFailed(failure) = &report.reason else {
        panic!("{:?}", report.reason);
    };
    assert!(failure.panicked && failure.error.is_none(), "{failure:?}");
    assert!(failure.reason.contains("offset 4 is poison"), "{failure:?}");
}

#[test]
fn the_dead_letter_producers_error_is_reachable() {
    let cluster = cluster_with("t", 1, 10);
    cluster.create_topic("t.dlq", 1).unwrap();
    let producer = cluster
        .dead_letter_producer()
        .with_faults(FaultPlan::new().on_send(1, Fault::Fatal));
    let source = cluster.consumer("g").subscribe(["t"]).build().unwrap();
    let m = ThreadManager::builder(source)
        .callback(not_an_order_at(2))
        .failure_policy(FailurePolicy::DeadLetter(DeadLetter::new(producer)))
        .build()
        .unwrap();
    let report = run(&m);
    let StopReason::DeadLetterFailed { failure, error } = &report.reason else {
        panic!("{:?}", report.reason);
    };
    let produce = error
        .find::<SourceError>()
        .expect("the producer's SourceError");
    assert!(!produce.is_transient());
    assert_eq!(
        failure
            .error
            .as_ref()
            .and_then(|e| e.find::<NotAnOrder>())
            .map(|e| e.offset),
        Some(2)
    );
    assert_eq!(cluster.committed("g", "t", 0), Some(2));
}
