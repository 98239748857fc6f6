//! OpenTelemetry traces: what an operator follows from an HTTP start (or a
//! queue message) through every invocation of the execution, on whatever
//! host runs it, to the webhooks its steps call.
//!
//! - An execution keeps the W3C trace context it was started in
//!   ([`TraceParent`], in its record): the `traceparent` of the start
//!   request or queue message, or, when traces are exported, the context
//!   of the host's own `start` span under it. Every invocation's span is a
//!   child of it, so all of an execution's invocations, on every host, are
//!   one trace.
//! - An invocation's span has a `replay` child (entries replayed: one span
//!   for all of them, since a replayed entry costs about a microsecond and
//!   a span each would cost more than the replay) and one `step` child per
//!   new journal entry (attributes: kind, tool, index, duration).
//! - A tool call's `step` span is what a webhook receives as its
//!   `traceparent`.
//! - The host's log lines of an invocation carry the trace id (a tracing
//!   span `invocation{execution, trace_id}` around it), exported or not.
//!
//! Off by default: with no exporter, no span is built (one `Option` check
//! per step), and only the trace id of a started-with `traceparent` is
//! kept for the logs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// A W3C `traceparent` value, checked when made
/// (`00-<trace id>-<parent id>-<flags>`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TraceParent(String);

impl TraceParent {
    /// `text` if it is a valid `traceparent` (version 00 and the fields
    /// the W3C recommendation allows: not all-zero ids); else `None`, as a
    /// tracer ignores a malformed header.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        // The field widths exactly (the propagator pads a short id).
        let widths: Vec<usize> = text.split('-').map(str::len).collect();
        let hex = text
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if widths != [2, 32, 16, 2] || !hex {
            return None;
        }
        let context = extract(text);
        context
            .span()
            .span_context()
            .is_valid()
            .then(|| Self(inject(&context)))
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace id, 32 hex digits (what log lines carry).
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The context whose span this names, as a remote parent.
    fn context(&self) -> Context {
        extract(&self.0)
    }

    fn of(span: &SpanContext) -> Option<Self> {
        span.is_valid().then(|| {
            Self(inject(
                &Context::new().with_remote_span_context(span.clone()),
            ))
        })
    }
}

impl From<TraceParent> for String {
    fn from(tp: TraceParent) -> Self {
        tp.0
    }
}

fn extract(traceparent: &str) -> Context {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

fn inject(context: &Context) -> String {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(context, &mut carrier);
    carrier.remove("traceparent").unwrap_or_default()
}

/// Where traces go: nowhere (the default), or an OTLP collector.
#[derive(Clone, Default)]
pub struct Telemetry {
    tracing: Option<Exporting>,
}

#[derive(Clone)]
struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// What the OTLP exporter cannot be built from.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {reason}")]
pub struct TelemetryError {
    endpoint: String,
    reason: String,
}

impl Telemetry {
    /// No traces exported.
    pub fn off() -> Self {
        Self::default()
    }

    /// Spans exported over OTLP/HTTP (protobuf) to `endpoint`, the
    /// collector's traces URL (`http://collector:4318/v1/traces`), in
    /// batches, from a thread of the exporter's own; `service` names this
    /// host's service.
    pub fn otlp(endpoint: &str, service: &str, timeout: Duration) -> Result<Self, TelemetryError> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_timeout(timeout)
            .build()
            .map_err(|e| TelemetryError {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service.to_string())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("reprise");
        Ok(Self {
            tracing: Some(Exporting { provider, tracer }),
        })
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.tracing.is_some()
    }

    /// Sends every span ended so far (before a shutdown, or in a test).
    pub fn flush(&self) {
        if let Some(t) = &self.tracing
            && let Err(e) = t.provider.force_flush()
        {
            tracing::warn!("cannot export traces: {e}");
        }
    }

    /// The trace context a new execution keeps: under `parent` (the
    /// start's `traceparent`, if any), a `start` span of the host's when
    /// exporting, else `parent` itself.
    pub(crate) fn start(
        &self,
        parent: Option<&TraceParent>,
        workflow: &str,
        id: &str,
    ) -> Option<TraceParent> {
        let Some(t) = &self.tracing else {
            return parent.cloned();
        };
        let parent = parent.map(TraceParent::context).unwrap_or_default();
        let mut span = t
            .tracer
            .span_builder(format!("start {workflow}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("reprise.workflow", workflow.to_string()),
                KeyValue::new("reprise.execution.id", id.to_string()),
            ])
            .start_with_context(&t.tracer, &parent);
        let context = span.span_context().clone();
        span.end();
        TraceParent::of(&context)
    }

    /// The span of one invocation of an execution, a child of the context
    /// it keeps; `None` when not exporting or it keeps none.
    pub(crate) fn invocation(
        &self,
        execution: &TraceParent,
        attributes: Vec<KeyValue>,
    ) -> Option<InvocationSpan> {
        let t = self.tracing.as_ref()?;
        let span = t
            .tracer
            .span_builder("invocation")
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(&t.tracer, &execution.context());
        let context = Context::new().with_span(span);
        Some(InvocationSpan {
            tracer: t.tracer.clone(),
            context,
        })
    }
}

/// An invocation's span, and where its steps' spans come from.
pub(crate) struct InvocationSpan {
    tracer: SdkTracer,
    context: Context,
}

impl std::fmt::Debug for InvocationSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InvocationSpan")
            .field(self.context.span().span_context())
            .finish()
    }
}

/// A step's span, begun before its work (so a tool call can pass it on).
pub(crate) struct StepSpan(opentelemetry_sdk::trace::Span);

impl InvocationSpan {
    /// A `step` span beginning now.
    pub(crate) fn step(&self, kind: &'static str, index: u64) -> StepSpan {
        StepSpan(
            self.tracer
                .span_builder("step")
                .with_attributes([
                    KeyValue::new("reprise.step.kind", kind),
                    KeyValue::new("reprise.entry.index", index as i64),
                    KeyValue::new("reprise.replayed", false),
                ])
                .start_with_context(&self.tracer, &self.context),
        )
    }

    /// A span for work already done, from `start` to `end`.
    pub(crate) fn done<const N: usize>(
        &self,
        name: &'static str,
        start: SystemTime,
        end: SystemTime,
        attributes: [KeyValue; N],
    ) {
        self.tracer
            .span_builder(name)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.context)
            .end_with_timestamp(end);
    }

    /// The `traceparent` of the invocation, for work it starts without
    /// waiting (a tool call started with `start-tool`).
    pub(crate) fn traceparent(&self) -> Option<TraceParent> {
        TraceParent::of(self.context.span().span_context())
    }

    /// Ends the invocation's span, saying how it ended.
    pub(crate) fn end(self, outcome: &str) {
        let span = self.context.span();
        span.set_attribute(KeyValue::new("reprise.invocation.end", outcome.to_string()));
        span.end();
    }
}

impl StepSpan {
    /// The `traceparent` of this step, for the tool it calls.
    pub(crate) fn traceparent(&self) -> Option<TraceParent> {
        TraceParent::of(self.0.span_context())
    }

    /// Ends it, with what it recorded.
    pub(crate) fn end(mut self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.0.set_attributes(attributes);
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_checked_and_kept_as_sent() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(ok).unwrap();
        assert_eq!(tp.as_str(), ok);
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn off_keeps_the_parent_and_builds_no_span() {
        let t = Telemetry::off();
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(t.start(tp.as_ref(), "w", "e"), tp);
        assert_eq!(t.start(None, "w", "e"), None);
        assert!(t.invocation(&tp.unwrap(), Vec::new()).is_none());
    }
}
