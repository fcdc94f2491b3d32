//! Feature `opentelemetry`: a producer's W3C trace context in a record's headers becomes
//! the parent of the consumer's `callback` spans (every attempt a child of the producer's
//! span, so retries are siblings), and a dead letter carries the trace on. Spans are
//! exported to an in-memory exporter through the `tracing-opentelemetry` layer.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::eventually;
use kafka_thread_manager::mock::{MockCluster, Record};
use kafka_thread_manager::{
    CallbackError, CommitPolicy, DeadLetter, FailurePolicy, Message, RetryPolicy, ThreadManager,
    ThreadManagerBuilder, WorkerPool,
};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanContext, SpanId, TraceContextExt, Tracer as _};
use opentelemetry::trace::{TraceId, TracerProvider as _};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const PATIENCE: Duration = Duration::from_secs(20);

struct Otel {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

/// One subscriber and propagator per process (spans are entered on the manager's
/// threads, so they must be global); each test reads only the spans of its own topic.
fn otel() -> &'static Otel {
    static OTEL: OnceLock<Otel> = OnceLock::new();
    OTEL.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_subscriber::registry()
            // The filter the README names: the callback spans are TRACE.
            .with(EnvFilter::new("info,ktm_core::callback=trace"))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("consumer")))
            .init();
        Otel { provider, exporter }
    })
}

/// A finished producer span and the W3C headers a producer would send with its record.
fn produced_span(name: &'static str) -> (SpanContext, HashMap<String, String>) {
    let mut span = otel().provider.tracer("producer").start(name);
    let cx = Context::new().with_remote_span_context(span.span_context().clone());
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    span.end();
    (cx.span().span_context().clone(), carrier)
}

fn traced_record(payload: &'static str, carrier: &HashMap<String, String>) -> Record {
    let mut record = Record::new(payload);
    for (key, value) in carrier {
        record = record.header(key.clone(), Some(value.clone()));
    }
    record
}

/// The exported spans named `name` whose `topic` attribute is `topic`.
fn spans(name: &str, topic: &str) -> Vec<SpanData> {
    let topic = Value::from(topic.to_owned());
    otel()
        .exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == name && attr(s, "topic") == Some(topic.clone()))
        .collect()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// An integer attribute (`tracing-opentelemetry` exports a `usize` field as text).
fn int_attr(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(n)) => n,
        Some(Value::String(text)) => text.as_str().parse().unwrap(),
        other => panic!("no integer attribute {key}: {other:?}"),
    }
}

fn offset_of(span: &SpanData) -> i64 {
    int_attr(span, "offset")
}

/// A callback failing twice (retryable) at offset 0, then succeeding.
fn fails_twice_at_zero() -> impl FnMut(&Message) -> Result<(), CallbackError> + Clone {
    let attempts = Arc::new(AtomicU32::new(0));
    move |m: &Message| {
        if m.offset() == 0 && attempts.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(CallbackError::retryable("not yet"));
        }
        Ok(())
    }
}

/// Offset 0 carries a producer's trace; offset 1 none. Offset 0 is attempted three
/// times: every attempt must be a child of the producer span (siblings, not nested).
fn retries_are_siblings_under_the_producer(
    topic: &str,
    with_callback: impl FnOnce(ThreadManagerBuilder) -> ThreadManagerBuilder,
) {
    let (producer, carrier) = produced_span("send");
    let cluster = MockCluster::new();
    cluster.create_topic(topic, 1).unwrap();
    cluster
        .produce(topic, 0, traced_record("traced", &carrier))
        .unwrap();
    cluster.produce(topic, 0, Record::new("untraced")).unwrap();
    let builder = ThreadManager::builder(cluster.consumer("g").subscribe([topic]).build().unwrap())
        .retry_policy(
            RetryPolicy::retries(2).backoff(Duration::from_millis(5), Duration::from_millis(5)),
        )
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None);
    let m = with_callback(builder).build().unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "both committed", || {
        cluster.committed("g", topic, 0) == Some(2)
    });
    m.stop().unwrap();

    let callbacks = spans("callback", topic);
    let (traced, untraced): (Vec<_>, Vec<_>) = callbacks.iter().partition(|s| offset_of(s) == 0);
    assert_eq!(traced.len(), 3, "two failed attempts and the success");
    for attempt in &traced {
        assert_eq!(attempt.span_context.trace_id(), producer.trace_id());
        assert_eq!(
            attempt.parent_span_id,
            producer.span_id(),
            "every attempt is a child of the producer span"
        );
        assert!(attempt.parent_span_is_remote);
    }
    let mut ids: Vec<SpanId> = traced.iter().map(|s| s.span_context.span_id()).collect();
    ids.sort_unstable_by_key(|id| u64::from_be_bytes(id.to_bytes()));
    ids.dedup();
    assert_eq!(ids.len(), 3, "each attempt is a span of its own");

    assert_eq!(untraced.len(), 1);
    let root = untraced[0];
    assert_eq!(
        root.parent_span_id,
        SpanId::INVALID,
        "no context: a new root"
    );
    assert_ne!(root.span_context.trace_id(), producer.trace_id());
    assert_ne!(root.span_context.trace_id(), TraceId::INVALID);
}

#[test]
fn callback_spans_are_children_of_the_producer_span() {
    retries_are_siblings_under_the_producer("inline", |b| b.callback(fails_twice_at_zero()));
}

#[test]
fn worker_pool_callback_spans_are_children_of_the_producer_span() {
    retries_are_siblings_under_the_producer("pooled", |b| {
        b.parallel_callback(WorkerPool::new(2), fails_twice_at_zero())
    });
}

#[test]
fn a_batch_span_has_its_first_message_as_parent_and_links_the_others() {
    let topic = "batched";
    let cluster = MockCluster::new();
    cluster.create_topic(topic, 1).unwrap();
    let mut producers = Vec::new();
    for payload in ["a", "b", "c"] {
        let (producer, carrier) = produced_span("send");
        cluster
            .produce(topic, 0, traced_record(payload, &carrier))
            .unwrap();
        producers.push(producer);
    }
    let m = ThreadManager::builder(cluster.consumer("g").subscribe([topic]).build().unwrap())
        .parallel_batch_callback(WorkerPool::new(1), |run: &[Message]| {
            if run.len() == 1 && run[0].offset() == 0 {
                // Lets the rest queue up, so at least one batch holds two messages.
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok::<(), CallbackError>(())
        })
        .thread_lifetime(None)
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "all committed", || {
        cluster.committed("g", topic, 0) == Some(3)
    });
    m.stop().unwrap();

    let batches = spans("callback", topic);
    let mut covered = 0;
    let mut linked = 0;
    for batch in &batches {
        let first = usize::try_from(offset_of(batch)).unwrap();
        let len = usize::try_from(int_attr(batch, "messages")).unwrap();
        assert_eq!(batch.parent_span_id, producers[first].span_id());
        assert_eq!(batch.span_context.trace_id(), producers[first].trace_id());
        let links: Vec<SpanId> = batch
            .links
            .iter()
            .map(|l| l.span_context.span_id())
            .collect();
        let others: Vec<SpanId> = producers[first + 1..first + len]
            .iter()
            .map(SpanContext::span_id)
            .collect();
        assert_eq!(links, others, "the batch links its other messages' spans");
        covered += len;
        linked += links.len();
    }
    assert_eq!(covered, 3, "{batches:?}");
    assert!(linked >= 1, "no batch of two or more: {batches:?}");
}

#[test]
fn a_dead_letter_carries_the_trace_on_from_a_consumer_span() {
    let topic = "doomed";
    let (producer, carrier) = produced_span("send");
    let cluster = MockCluster::new();
    cluster.create_topic(topic, 1).unwrap();
    cluster.create_topic("doomed.dlq", 1).unwrap();
    // Another header before, a stale repeat of traceparent after: the dead letter keeps
    // the first, and has one traceparent (the new one) where the original had its first.
    let record = Record::new("bad")
        .header("app", Some("before"))
        .header("traceparent", Some(carrier["traceparent"].clone()))
        .header("tracestate", Some("vendor=1"))
        .header("app2", None::<&str>)
        .header("traceparent", Some(carrier["traceparent"].clone()));
    cluster.produce(topic, 0, record).unwrap();
    let m = ThreadManager::builder(cluster.consumer("g").subscribe([topic]).build().unwrap())
        .callback(|_: &Message| Err::<(), _>(CallbackError::permanent("malformed")))
        .failure_policy(FailurePolicy::DeadLetter(DeadLetter::new(
            cluster.dead_letter_producer(),
        )))
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .build()
        .unwrap();
    m.start().unwrap();
    eventually(PATIENCE, "dead-lettered and committed", || {
        cluster.committed("g", topic, 0) == Some(1)
    });
    m.stop().unwrap();

    let dead = cluster.records("doomed.dlq", 0).unwrap();
    assert_eq!(dead.len(), 1);
    let headers = dead[0].headers();
    let keys: Vec<&str> = headers.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(
        &keys[..4],
        ["app", "traceparent", "tracestate", "app2"],
        "other headers kept, in order; one traceparent"
    );
    assert!(
        keys[4..].iter().all(|k| k.starts_with("ktm.dlq.")),
        "{keys:?}"
    );
    assert_eq!(headers[0].value.as_deref(), Some(&b"before"[..]));
    assert_eq!(headers[3].value, None);
    let text = |i: usize| String::from_utf8(headers[i].value.clone().unwrap().to_vec()).unwrap();
    assert_eq!(text(2), "vendor=1", "the trace state goes on");

    let carried = HashMap::from([
        ("traceparent".to_owned(), text(1)),
        ("tracestate".to_owned(), text(2)),
    ]);
    let carried = TraceContextPropagator::new().extract(&carried);
    let carried = carried.span().span_context().clone();
    assert_eq!(carried.trace_id(), producer.trace_id(), "same trace");
    assert_ne!(
        carried.span_id(),
        producer.span_id(),
        "the parent is a consumer-side span"
    );
    let dead_letter = spans("dead_letter", topic);
    assert_eq!(dead_letter.len(), 1);
    assert_eq!(dead_letter[0].span_context.span_id(), carried.span_id());
    assert_eq!(dead_letter[0].parent_span_id, producer.span_id());
    let callback = spans("callback", topic);
    assert_eq!(callback.len(), 1, "a permanent failure is not retried");
    assert_eq!(callback[0].parent_span_id, producer.span_id());
}
