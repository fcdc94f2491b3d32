//! Control batches: transaction markers, read as leniently as Java and librdkafka.

use super::encode::{TestBatch, TestRecord};
use super::single;
use crate::records::{Batch, ControlKind};

/// A transactional control batch of producer 7 whose record has this key.
fn control_batch(key: Option<&[u8]>) -> Batch {
    // The value: version 0, coordinator epoch 5.
    let record = TestRecord::new(0, key, Some(&[0, 0, 0, 0, 0, 5]));
    let mut batch = TestBatch::new(30, vec![record]);
    batch.attributes = 0x30;
    batch.producer_id = 7;
    single(batch.encode())
}

#[test]
fn commit_and_abort_markers() {
    let commit = control_batch(Some(&[0, 0, 0, 1]));
    assert_eq!(commit.control, Some(ControlKind::Commit));
    assert!(commit.records.is_empty());
    assert_eq!((commit.producer_id, commit.is_transactional), (7, true));
    assert_eq!((commit.base_offset, commit.last_offset), (30, 30));
    let abort = control_batch(Some(&[0, 0, 0, 0]));
    assert_eq!(abort.control, Some(ControlKind::Abort));
}

#[test]
fn an_unknown_type_is_unknown() {
    assert_eq!(
        control_batch(Some(&[0, 0, 0, 9])).control,
        Some(ControlKind::Unknown(9))
    );
}

#[test]
fn a_later_key_version_still_gives_its_type_as_java_reads_it() {
    // Tansu's markers carry versions rskafka refused; the type is read all the same.
    assert_eq!(
        control_batch(Some(&[0, 3, 0, 1])).control,
        Some(ControlKind::Commit)
    );
    // Bytes after the type are ignored.
    assert_eq!(
        control_batch(Some(&[0, 1, 0, 0, 9, 9])).control,
        Some(ControlKind::Abort)
    );
}

#[test]
fn a_negative_version_a_short_key_or_no_key_is_unknown_never_an_error() {
    assert_eq!(
        control_batch(Some(&[0xff, 0xff, 0, 1])).control,
        Some(ControlKind::Unknown(1))
    );
    assert_eq!(
        control_batch(Some(&[0, 0])).control,
        Some(ControlKind::Unknown(-1))
    );
    assert_eq!(control_batch(None).control, Some(ControlKind::Unknown(-1)));
}

#[test]
fn a_control_batch_without_records_is_unknown_and_still_moves_the_position() {
    let mut batch = TestBatch::new(40, Vec::new());
    batch.attributes = 0x30;
    batch.last_offset_delta = 2;
    let b = single(batch.encode());
    assert_eq!(b.control, Some(ControlKind::Unknown(-1)));
    assert_eq!(b.last_offset, 42);
}
