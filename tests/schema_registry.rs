//! Schema-registry decoding end to end on the in-memory backend: payloads framed by
//! Confluent's own serializers (tests/fixtures/schema_registry, made by
//! make_fixtures.py), schemas served over HTTP by a registry inside the test, decode
//! failures dead-lettered without retries, and an outage retried until the registry
//! answers.
#![cfg(all(feature = "avro", feature = "protobuf", feature = "schema-registry"))]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
#[path = "schema_registry/protobuf.rs"]
mod protobuf;
#[path = "schema_registry/registry.rs"]
mod registry;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, header_number};
use kafka_thread_manager::decode::schema_registry::{
    AvroDecoder, AvroValue, HttpSchemaRegistry, LookupError, ProtobufDecoder, SchemaLookup,
    SchemaType, WIRE_FORMAT,
};
use kafka_thread_manager::mock::{MockCluster, Record};
use kafka_thread_manager::{
    CommitPolicy, DeadLetter, Decode, DecodeError, FailurePolicy, Message, RetryPolicy, StopReport,
    ThreadManager, Typed, HEADER_ATTEMPTS, HEADER_ERROR, HEADER_FAILURE_KIND,
};
use registry::{Mode, TestRegistry};

const PATIENCE: Duration = Duration::from_secs(20);
const SCHEMAS: &str = include_str!("fixtures/schema_registry/schemas.json");
const PAYLOADS: &str = include_str!("fixtures/schema_registry/payloads.json");
/// The ids the reference serializers were given by their registry (see schemas.json).
const AVRO_ID: u32 = 1;
const PROTOBUF_ID: u32 = 2;
const UNKNOWN_ID: u32 = 99;

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Order {
    id: i64,
    item: String,
    qty: i32,
}

/// One reference payload of payloads.json.
#[derive(serde::Deserialize)]
struct Fixture {
    name: String,
    schema_id: u32,
    hex: String,
    expect: serde_json::Value,
}

impl Fixture {
    fn bytes(&self) -> Vec<u8> {
        (0..self.hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&self.hex[i..i + 2], 16).unwrap())
            .collect()
    }
}

fn fixtures() -> Vec<Fixture> {
    serde_json::from_str(PAYLOADS).unwrap()
}

fn fixture(name: &str) -> Fixture {
    fixtures().into_iter().find(|f| f.name == name).unwrap()
}

fn avro_fixtures() -> Vec<(Vec<u8>, Order)> {
    fixtures()
        .into_iter()
        .filter(|f| f.name.starts_with("avro_"))
        .map(|f| {
            assert_eq!(f.schema_id, AVRO_ID);
            (f.bytes(), serde_json::from_value(f.expect.clone()).unwrap())
        })
        .collect()
}

fn serve() -> TestRegistry {
    TestRegistry::serve(&serde_json::from_str(SCHEMAS).unwrap())
}

fn msg(payload: Vec<u8>) -> Message {
    Message::builder("orders", 0, 0).payload(payload).build()
}

/// A manager on "orders" in group "g" handing decoded orders to `seen`, dead-lettering
/// to "failed".
fn avro_manager(
    cluster: &MockCluster,
    registry: HttpSchemaRegistry,
    seen: &Arc<Mutex<Vec<(i64, Order)>>>,
    retries: u32,
) -> ThreadManager {
    let sink = Arc::clone(seen);
    let source = cluster.consumer("g").subscribe(["orders"]).build().unwrap();
    ThreadManager::builder(source)
        .handler(Typed::new(
            AvroDecoder::<Order>::new(registry),
            move |order, m: &Message| sink.lock().unwrap().push((m.offset(), order)),
        ))
        .retry_policy(
            RetryPolicy::retries(retries)
                .backoff(Duration::from_millis(20), Duration::from_millis(20)),
        )
        .failure_policy(FailurePolicy::DeadLetter(
            DeadLetter::new(cluster.dead_letter_producer()).topic("failed"),
        ))
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .poll_timeout(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn run_until_committed(m: &ThreadManager, cluster: &MockCluster, end: i64) -> StopReport {
    m.start().unwrap();
    eventually(PATIENCE, "every offset committed", || {
        cluster.committed("g", "orders", 0) == Some(end)
    });
    m.stop().unwrap()
}

fn header(m: &Message, key: &str) -> String {
    let h = m.headers().iter().find(|h| h.key == key).unwrap();
    String::from_utf8(h.value.clone().unwrap().to_vec()).unwrap()
}

#[test]
fn reference_avro_payloads_reach_the_handler_and_bad_ones_are_dead_lettered_unretried() {
    let registry = serve();
    let cluster = MockCluster::new();
    cluster.create_topic("orders", 1).unwrap();
    cluster.create_topic("failed", 1).unwrap();
    let valid = avro_fixtures();
    let (longest, _) = valid.iter().max_by_key(|(b, _)| b.len()).unwrap();
    let mut wrong_magic = valid[0].0.clone();
    wrong_magic[0] = 1;
    let mut unknown_id = valid[0].0.clone();
    unknown_id[1..5].copy_from_slice(&UNKNOWN_ID.to_be_bytes());
    let invalid: Vec<(Vec<u8>, &str)> = vec![
        (wrong_magic, "magic byte 1"),
        (unknown_id, "schema id 99 is not registered"),
        (
            longest[..longest.len() / 2].to_vec(),
            "malformed payload (Avro)",
        ),
        (vec![0, 0, 0], "shorter than the 5-byte header"),
        (fixture("proto_order").bytes(), "is a PROTOBUF schema"),
    ];
    // Valid and invalid interleaved, so the good ones after a bad one prove it did not
    // hold up the partition.
    let mut expected_orders = Vec::new();
    let mut expected_errors = Vec::new();
    let mut valid_iter = valid.into_iter();
    for (bytes, error) in &invalid {
        let (good, order) = valid_iter
            .next()
            .unwrap_or_else(|| avro_fixtures().remove(0));
        let offset = cluster.produce("orders", 0, Record::new(good)).unwrap();
        expected_orders.push((offset, order));
        let offset = cluster
            .produce("orders", 0, Record::new(bytes.clone()))
            .unwrap();
        expected_errors.push((offset, *error));
    }
    let seen = Arc::default();
    let m = avro_manager(&cluster, HttpSchemaRegistry::new(registry.url()), &seen, 5);
    let report = run_until_committed(&m, &cluster, 10);

    assert_eq!(*seen.lock().unwrap(), expected_orders);
    let dead = cluster.records("failed", 0).unwrap();
    assert_eq!(dead.len(), invalid.len());
    for (d, (offset, error)) in dead.iter().zip(&expected_errors) {
        assert_eq!(header_number(d, "ktm.dlq.source.offset"), *offset);
        assert!(
            header(d, HEADER_ERROR).contains(error),
            "{}",
            header(d, HEADER_ERROR)
        );
        assert_eq!(header(d, HEADER_FAILURE_KIND), "undecodable");
        assert_eq!(header_number(d, HEADER_ATTEMPTS), 1);
    }
    let counts = report.counts;
    assert_eq!(
        (counts.decode_failures, counts.dead_lettered, counts.retries),
        (5, 5, 0)
    );
    assert_eq!(counts.messages_handled, 5);
    // One request for the Avro schema however many records used it; the unknown id and
    // the Protobuf id were each asked once (each appeared once).
    assert_eq!(registry.requests(AVRO_ID), 1);
    assert_eq!(registry.requests(UNKNOWN_ID), 1);
}

#[test]
fn a_registry_outage_is_retried_until_the_registry_answers() {
    let registry = serve();
    registry.set_mode(Mode::Dropping);
    let cluster = MockCluster::new();
    cluster.create_topic("orders", 1).unwrap();
    cluster.create_topic("failed", 1).unwrap();
    let (bytes, order) = avro_fixtures().remove(0);
    cluster.produce("orders", 0, Record::new(bytes)).unwrap();
    let seen = Arc::default();
    let m = avro_manager(
        &cluster,
        HttpSchemaRegistry::new(registry.url()),
        &seen,
        1000,
    );
    m.start().unwrap();
    eventually(PATIENCE, "retries while connections drop", || {
        m.stats().counts.retries >= 2
    });
    registry.set_mode(Mode::Failing);
    let before = registry.requests(AVRO_ID);
    eventually(PATIENCE, "retries while the registry fails", || {
        registry.requests(AVRO_ID) >= before + 2
    });
    assert!(seen.lock().unwrap().is_empty());
    registry.set_mode(Mode::Up);
    eventually(PATIENCE, "committed once the registry answers", || {
        cluster.committed("g", "orders", 0) == Some(1)
    });
    let report = m.stop().unwrap();
    assert_eq!(*seen.lock().unwrap(), [(0, order)]);
    let counts = report.counts;
    assert!(counts.retries >= 3, "{counts:?}");
    assert_eq!((counts.decode_failures, counts.dead_lettered), (0, 0));
    assert!(cluster.records("failed", 0).unwrap().is_empty());
}

#[test]
fn lookups_are_cached_by_id_and_failures_are_not() {
    let registry = serve();
    let http = HttpSchemaRegistry::new(format!("{}/", registry.url())).basic_auth("u", "p");
    let schema = http.schema(AVRO_ID).unwrap();
    assert_eq!((schema.id, schema.schema_type), (AVRO_ID, SchemaType::Avro));
    assert!(schema.text.contains("\"Order\""));
    // Clones, and decoders built on clones, share the cache.
    let decoder = AvroDecoder::<Order>::new(http.clone());
    let (bytes, order) = avro_fixtures().remove(0);
    assert_eq!(decoder.clone().decode(&msg(bytes)).unwrap(), order);
    assert_eq!(registry.requests(AVRO_ID), 1);
    assert_eq!(http.cached(), 1);
    // "u:p" in base64.
    assert_eq!(registry.last_authorization().as_deref(), Some("Basic dTpw"));

    for _ in 0..2 {
        assert!(matches!(
            http.schema(UNKNOWN_ID),
            Err(LookupError::Unknown { id: UNKNOWN_ID })
        ));
    }
    assert_eq!(
        registry.requests(UNKNOWN_ID),
        2,
        "unknown ids are asked again"
    );

    registry.set_mode(Mode::Failing);
    let err = http.schema(PROTOBUF_ID).unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    registry.set_mode(Mode::Up);
    assert_eq!(
        http.schema(PROTOBUF_ID).unwrap().schema_type,
        SchemaType::Protobuf
    );
    assert_eq!(
        registry.requests(PROTOBUF_ID),
        2,
        "the failure was not cached"
    );
}

#[test]
fn what_the_registry_answers_maps_to_permanent_or_transient() {
    let registry = serve();
    let fresh = || HttpSchemaRegistry::new(registry.url()).timeout(Duration::from_millis(300));
    let (bytes, _) = avro_fixtures().remove(0);
    let decode = |http: HttpSchemaRegistry| AvroValue::new(http).decode(&msg(bytes.clone()));

    registry.set_mode(Mode::NotARegistry);
    let err = decode(fresh()).unwrap_err();
    assert!(
        err.is_transient(),
        "a 404 page that is not the registry's: {err}"
    );
    registry.set_mode(Mode::Dropping);
    assert!(decode(fresh()).unwrap_err().is_transient());
    registry.set_mode(Mode::Hanging);
    let started = std::time::Instant::now();
    let err = decode(fresh()).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout bounds a lookup"
    );
    let closed = HttpSchemaRegistry::new("http://127.0.0.1:1");
    assert!(decode(closed).unwrap_err().is_transient());

    registry.set_mode(Mode::Up);
    let value = decode(fresh()).unwrap();
    assert!(
        matches!(value, kafka_thread_manager::decode::schema_registry::apache_avro::types::Value::Record(ref f) if f.len() == 3)
    );
    let mut unknown = bytes.clone();
    unknown[1..5].copy_from_slice(&UNKNOWN_ID.to_be_bytes());
    let err = AvroValue::new(fresh()).decode(&msg(unknown)).unwrap_err();
    assert!(
        matches!(err, DecodeError::UnknownSchema { id: UNKNOWN_ID }),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[test]
fn preflight_asks_the_registry_and_fails_while_it_does_not_answer() {
    let registry = serve();
    let cluster = MockCluster::new();
    cluster.create_topic("orders", 1).unwrap();
    let manager = |registry: &TestRegistry| {
        let http = HttpSchemaRegistry::new(registry.url()).timeout(Duration::from_millis(500));
        ThreadManager::builder(cluster.consumer("g").subscribe(["orders"]).build().unwrap())
            .handler(Typed::new(
                AvroDecoder::<Order>::new(http.clone()),
                |_, _| {},
            ))
            .preflight_check("schema registry", http)
            .build()
            .unwrap()
    };
    let report = manager(&registry).preflight().unwrap();
    let runbook = report.to_string();
    assert!(
        runbook.contains("schema registry") && runbook.contains("answers (2 subjects)"),
        "{runbook}"
    );
    registry.set_mode(Mode::Failing);
    match manager(&registry).preflight() {
        Err(kafka_thread_manager::PreflightError::CheckFailed { name, error }) => {
            assert_eq!(name, "schema registry");
            assert!(error.to_string().contains("HTTP 500"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}
