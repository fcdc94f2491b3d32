//! A trace across Kafka, on the in-memory backend: a producer span's W3C context goes
//! into a record's headers, the consumer's `callback` spans (a failed attempt and its
//! retry) become its children, and the spans are printed as a tree.
//!
//! `cargo run --example opentelemetry --no-default-features --features mock,opentelemetry`

use std::collections::HashMap;
use std::time::Duration;

use kafka_thread_manager::mock::{MockCluster, Record};
use kafka_thread_manager::trace_context::HeaderInjector;
use kafka_thread_manager::{CallbackError, Header, RetryPolicy, ThreadManager};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{global, Context};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // W3C Trace Context; B3, Jaeger, ... work the same through their propagators.
    global::set_text_map_propagator(TraceContextPropagator::new());
    // An OTLP exporter in a real service; here the spans are kept in memory to print.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        // The callback spans are TRACE: enable them for the OpenTelemetry layer.
        .with(EnvFilter::new("info,ktm_core::callback=trace"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("billing")))
        .init();

    // The producing service: its span's context goes into the record's headers.
    let mut send = provider.tracer("checkout").start("orders send");
    let cx = Context::new().with_remote_span_context(send.span_context().clone());
    let mut headers: Vec<Header> = Vec::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(&mut headers)));
    send.end();
    let cluster = MockCluster::new();
    cluster.create_topic("orders", 1)?;
    let mut record = Record::new("order 1");
    for h in headers {
        record = record.header(h.key, h.value);
    }
    cluster.produce("orders", 0, record)?;

    // The consuming service: the first attempt fails, the retry succeeds.
    let mut failed = false;
    let manager =
        ThreadManager::builder(cluster.consumer("billing").subscribe(["orders"]).build()?)
            .callback(move |_msg| {
                if !std::mem::replace(&mut failed, true) {
                    return Err(CallbackError::retryable("payment service busy"));
                }
                Ok(())
            })
            .retry_policy(
                RetryPolicy::retries(1)
                    .backoff(Duration::from_millis(10), Duration::from_millis(10)),
            )
            .thread_lifetime(None)
            .build()?;
    manager.start()?;
    while manager.stats().counts.messages_handled < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    manager.stop()?;

    let spans = exporter.get_finished_spans()?;
    let names: HashMap<_, _> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s.name.as_ref()))
        .collect();
    for s in &spans {
        let parent = names.get(&s.parent_span_id).copied().unwrap_or("-");
        println!(
            "trace {} span {} {:<12} parent: {parent}",
            s.span_context.trace_id(),
            s.span_context.span_id(),
            s.name
        );
    }
    Ok(())
}
