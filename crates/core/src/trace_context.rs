//! Trace context across Kafka (feature `opentelemetry`): record headers as an
//! OpenTelemetry propagation carrier.
//!
//! With the feature on, the manager uses the propagator registered with
//! [`opentelemetry::global::set_text_map_propagator`] (W3C Trace Context, B3, ... as the
//! application chooses; none is registered by default, and then nothing is propagated):
//!
//! - the `callback` span of each message takes its parent from the record's headers
//!   (`traceparent`/`tracestate` with W3C), so every attempt at a message, retries
//!   included, is a child of the producer's span: the attempts are siblings. A record
//!   without a trace context starts a new trace. A batch's span (a
//!   [`BatchCallback`](crate::BatchCallback) on a [`WorkerPool`](crate::WorkerPool))
//!   takes its parent from its first message and links to the others' contexts.
//! - a dead letter is produced in a `dead_letter` span (a sibling of the callback spans),
//!   and [`DeadLetterRecord::new`](crate::DeadLetterRecord::new) writes the current
//!   span's context into the dead letter's headers, replacing the ones it had: the
//!   trace goes on from the consumer to whoever reads the dead-letter topic.
//!
//! The spans are TRACE-level with the target `ktm_core::callback`: the
//! `tracing-opentelemetry` layer only sees them where the subscriber's filter enables
//! `ktm_core::callback=trace`. Without that, no span is created, nothing is extracted,
//! and dead letters keep the record's own trace headers as they were.
//!
//! [`HeaderExtractor`] and [`HeaderInjector`] are public so producers of records (and
//! tests) can use the same header mapping.

use bytes::Bytes;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{global, Context};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{Header, Message};

/// Reads a propagation context out of Kafka record headers.
///
/// Kafka allows a key to repeat; [`get`](Extractor::get) returns the **last** value of
/// the key, as the Java consumer's OpenTelemetry instrumentation does
/// (`headers().lastHeader(key)`): a header appended on the way (by a proxy, or a retry
/// that re-produced the record) wins over the original. Keys match exactly (Kafka header
/// keys are case-sensitive). Null values and values that are not UTF-8 are ignored.
///
/// ```
/// use ktm_core::trace_context::HeaderExtractor;
/// use ktm_core::Header;
/// use opentelemetry::propagation::Extractor;
///
/// let headers = [Header::new("traceparent", Some("a")), Header::new("traceparent", Some("b"))];
/// assert_eq!(HeaderExtractor(&headers).get("traceparent"), Some("b"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HeaderExtractor<'a>(pub &'a [Header]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let header = self.0.iter().rev().find(|h| h.key == key)?;
        std::str::from_utf8(header.value.as_deref()?).ok()
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::with_capacity(self.0.len());
        for h in self.0 {
            if !keys.contains(&h.key.as_str()) {
                keys.push(&h.key);
            }
        }
        keys
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|h| h.key == key)
            .filter_map(|h| std::str::from_utf8(h.value.as_deref()?).ok())
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// Writes a propagation context into Kafka record headers.
///
/// [`set`](Injector::set) replaces the key's value where the key first appears and drops
/// its later repeats (so the value written is the one every reader sees, whichever of
/// first or last it takes); a new key is appended. Other headers keep their order.
///
/// ```
/// use ktm_core::trace_context::HeaderInjector;
/// use ktm_core::Header;
/// use opentelemetry::propagation::Injector;
///
/// let mut headers = vec![
///     Header::new("traceparent", Some("old")),
///     Header::new("app", Some("x")),
///     Header::new("traceparent", Some("older")),
/// ];
/// HeaderInjector(&mut headers).set("traceparent", "new".to_owned());
/// HeaderInjector(&mut headers).set("tracestate", "k=v".to_owned());
/// let keys: Vec<_> = headers.iter().map(|h| h.key.as_str()).collect();
/// assert_eq!(keys, ["traceparent", "app", "tracestate"]);
/// assert_eq!(headers[0].value.as_deref(), Some(&b"new"[..]));
/// ```
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut Vec<Header>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let mut value = Some(Bytes::from(value));
        let mut kept = false;
        self.0.retain_mut(|h| {
            if h.key != key {
                return true;
            }
            if kept {
                return false;
            }
            kept = true;
            h.value = value.take();
            true
        });
        if let Some(value) = value {
            self.0.push(Header {
                key: key.to_owned(),
                value: Some(value),
            });
        }
    }
}

/// The context the global propagator reads from `message`'s headers, on an empty base
/// (so a record without one starts a new trace, whatever is current on this thread).
fn extract(message: &Message) -> Context {
    global::get_text_map_propagator(|p| {
        p.extract_with_context(&Context::new(), &HeaderExtractor(message.headers()))
    })
}

/// Links a batch span takes at most: the OpenTelemetry SDK's default limit per span
/// (more would be dropped), so a large batch is not read to the end for nothing.
const MAX_LINKS: usize = 128;

/// Makes the record's trace context the parent of `span`, a span about to be entered
/// for `messages` (one message, or a batch of one partition: the first message is the
/// parent, the others' contexts become links, up to [`MAX_LINKS`]). Does nothing for a
/// disabled span.
pub(crate) fn adopt(span: &tracing::Span, messages: &[Message]) {
    let Some(first) = messages.first() else {
        return;
    };
    if span.is_disabled() {
        return;
    }
    let parent = extract(first);
    let parent_span = parent.span().span_context().clone();
    // Fails only without the OpenTelemetry layer (or once the span started): then there
    // is no OpenTelemetry span to parent, and nothing to report per message.
    let _ = span.set_parent(parent);
    let mut links = 0;
    for message in &messages[1..] {
        let cx = extract(message);
        let linked = cx.span().span_context().clone();
        if linked.is_valid() && linked != parent_span {
            span.add_link(linked);
            links += 1;
            if links == MAX_LINKS {
                break;
            }
        }
    }
}

/// Writes the current context (the current `tracing` span's, else OpenTelemetry's own
/// current context) into `headers` with the global propagator. Without a valid span in
/// that context the propagator writes nothing and the headers stay as they are.
pub(crate) fn inject_current(headers: &mut Vec<Header>) {
    let span = tracing::Span::current();
    let cx = if span.is_disabled() {
        Context::current()
    } else {
        span.context()
    };
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(key: &str, value: Option<&'static [u8]>) -> Header {
        Header::new(key, value)
    }

    #[test]
    fn extractor_takes_the_last_utf8_value_and_skips_null_and_binary() {
        let headers = [
            h("traceparent", Some(b"first")),
            h("other", Some(b"x")),
            h("traceparent", Some(b"last")),
            h("null", None),
            h("binary", Some(b"\xff\xfe")),
            h("Traceparent", Some(b"other case")),
        ];
        let ex = HeaderExtractor(&headers);
        assert_eq!(ex.get("traceparent"), Some("last"));
        assert_eq!(ex.get("null"), None);
        assert_eq!(ex.get("binary"), None);
        assert_eq!(ex.get("missing"), None);
        assert_eq!(
            ex.keys(),
            ["traceparent", "other", "null", "binary", "Traceparent"]
        );
        assert_eq!(ex.get_all("traceparent"), Some(vec!["first", "last"]));
        assert_eq!(ex.get_all("binary"), None);
    }

    #[test]
    fn a_later_binary_value_hides_an_earlier_text_one() {
        // The last header is the one that counts, even when it cannot be read.
        let headers = [h("k", Some(b"text")), h("k", Some(b"\xff"))];
        assert_eq!(HeaderExtractor(&headers).get("k"), None);
    }

    #[test]
    fn injector_replaces_in_place_drops_repeats_and_keeps_the_rest() {
        let mut headers = vec![
            h("a", Some(b"1")),
            h("traceparent", Some(b"old")),
            h("b", None),
            h("traceparent", Some(b"older")),
            h("c", Some(b"3")),
        ];
        HeaderInjector(&mut headers).set("traceparent", "new".to_owned());
        HeaderInjector(&mut headers).set("tracestate", "k=v".to_owned());
        let pairs: Vec<_> = headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", Some(&b"1"[..])),
                ("traceparent", Some(&b"new"[..])),
                ("b", None),
                ("c", Some(&b"3"[..])),
                ("tracestate", Some(&b"k=v"[..])),
            ]
        );
    }

    #[test]
    fn without_a_registered_propagator_nothing_is_written() {
        // The default global propagator is a no-op: headers stay as they are.
        let mut headers = vec![h("traceparent", Some(b"kept"))];
        inject_current(&mut headers);
        assert_eq!(headers, [h("traceparent", Some(b"kept"))]);
    }
}
