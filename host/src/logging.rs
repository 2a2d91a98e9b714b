//! Logs: human text by default, or JSON records in the shape the web app's `LogRecord` has.
//!
//! Why a layer of our own rather than `tracing-subscriber`'s JSON formatter: that one nests
//! event fields under `fields` and span fields under `spans`, so a command's `traceId` (kept
//! on its span) is not where log pipelines look for it. Here every record is one line:
//!
//! ```json
//! {"timestamp":"2026-11-22T04:10:20.123456Z","level":"info","event":"command.delivered",
//!  "message":"command delivered","traceId":"0c3f…","latencyMs":0.4,"target":"gateway_host::commands::dispatcher",
//!  "metadata":{"requestId":"…","kind":"send-message","attempts":1}}
//! ```
//!
//! `traceId`, `event` and `latencyMs` are lifted to the top level from the record's fields or
//! its spans (innermost wins; `trace_id`/`latency_ms` spellings are accepted); every other
//! field goes into `metadata`. A record without an `event` field gets its target's module
//! path, so the key is always there.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Fields recorded on a span, kept in its extensions.
struct SpanFields(Map<String, Value>);

/// The JSON record layer, writing one line per record to `W`.
pub struct JsonLogLayer<W> {
    make_writer: W,
}

impl<W> JsonLogLayer<W> {
    /// A layer writing to `make_writer` (e.g. `std::io::stderr`).
    pub fn new(make_writer: W) -> Self {
        JsonLogLayer { make_writer }
    }
}

struct FieldsVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Value::from(format!("{value:?}")));
    }
}

impl<S, W> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut FieldsVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut FieldsVisitor(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    fields.extend(f.0.clone());
                }
            }
        }
        event.record(&mut FieldsVisitor(&mut fields));
        let mut line = serde_json::to_vec(&record(event, fields)).unwrap_or_default();
        line.push(b'\n');
        let _ = self.make_writer.make_writer().write_all(&line);
    }
}

/// The record: top-level keys lifted from `fields`, the rest as `metadata`.
fn record(event: &Event<'_>, mut fields: Map<String, Value>) -> Value {
    let meta = event.metadata();
    let mut out = Map::new();
    let mut timestamp = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    out.insert("timestamp".into(), timestamp.into());
    out.insert(
        "level".into(),
        meta.level().as_str().to_ascii_lowercase().into(),
    );
    let event_name = take(&mut fields, &["event"])
        .unwrap_or_else(|| Value::from(meta.module_path().unwrap_or(meta.target())));
    out.insert("event".into(), event_name);
    if let Some(message) = take(&mut fields, &["message"]) {
        out.insert("message".into(), message);
    }
    if let Some(trace_id) = take(&mut fields, &["traceId", "trace_id"]) {
        out.insert("traceId".into(), trace_id);
    }
    if let Some(latency) = take(&mut fields, &["latencyMs", "latency_ms"]) {
        out.insert("latencyMs".into(), latency);
    }
    out.insert("target".into(), meta.target().into());
    out.insert("metadata".into(), Value::Object(fields));
    Value::Object(out)
}

fn take(fields: &mut Map<String, Value>, names: &[&str]) -> Option<Value> {
    names.iter().find_map(|n| fields.remove(*n))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lifts_trace_id_from_spans_and_latency_from_fields() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber =
            tracing_subscriber::registry().with(JsonLogLayer::new(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("command", trace_id = "abc", request_id = "r1");
            let _g = span.enter();
            tracing::info!(
                event = "command.delivered",
                latency_ms = 1.5,
                attempts = 1u64,
                "command delivered"
            );
            tracing::warn!("plain");
        });
        let text = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["traceId"], "abc");
        assert_eq!(first["event"], "command.delivered");
        assert_eq!(first["level"], "info");
        assert_eq!(first["latencyMs"], 1.5);
        assert_eq!(first["message"], "command delivered");
        assert_eq!(first["metadata"]["request_id"], "r1");
        assert_eq!(first["metadata"]["attempts"], 1);
        assert!(
            first["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(
            lines[1]["traceId"], "abc",
            "span fields reach every record inside it"
        );
        assert_eq!(lines[1]["level"], "warn");
        assert!(
            lines[1]["event"]
                .as_str()
                .is_some_and(|e| e.contains("logging"))
        );
    }
}
