//! The spans every request crosses, built with the OpenTelemetry API directly.
//!
//! A span made through `tracing` and `tracing-opentelemetry` also takes a slot in the span
//! registry, has its fields formatted through a visitor, and is entered and left through every
//! layer on each poll of the future it instruments; counted in instructions (docs/BENCHMARKS.md,
//! "Tracing"), that was half of what a sampled request cost beyond an unsampled one. So the
//! server spans of the gateway and of a service, and the gateway's upstream attempts, are built
//! with the SDK's tracer, and a request's future runs with its span as the current
//! OpenTelemetry context. Spans made through `tracing` inside it (a client call, a publish, an
//! append) still find it as their parent: the exporter's layer falls back to the current
//! OpenTelemetry context when no exported `tracing` span is entered.

use std::future::Future;
use std::sync::OnceLock;

use flotilla_core::{TraceContext, TraceState};
use opentelemetry::trace::{
    FutureExt as _, SpanBuilder, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Installs the exporter's tracer; once, with the exporter.
pub(crate) fn set_tracer(tracer: SdkTracer) {
    let _ = TRACER.set(tracer);
}

/// The exporter's tracer, when spans are exported.
pub(crate) fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// One exported span, or nothing when this hop records none. Clones share the span, which
/// ends when the last of them is dropped.
#[derive(Debug, Clone, Default)]
pub struct ExportedSpan {
    /// The parent's context with this span as its active span.
    cx: Option<Context>,
}

impl ExportedSpan {
    /// No span: every method does nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Starts a span under `parent` (no parent: a root, whose trace id the id generator draws).
    pub(crate) fn start(tracer: &SdkTracer, builder: SpanBuilder, parent: Context) -> Self {
        let span = tracer.build_with_context(builder, &parent);
        Self {
            cx: Some(parent.with_span(span)),
        }
    }

    /// A child span (a gateway's upstream attempt under its request); none when this is none.
    pub fn child(&self, build: impl FnOnce() -> SpanBuilder) -> Self {
        match (&self.cx, tracer()) {
            (Some(cx), Some(tracer)) => Self::start(tracer, build(), cx.clone()),
            _ => Self::none(),
        }
    }

    /// Whether a span exists (it may still be unsampled by the exporter's own rule).
    pub fn is_some(&self) -> bool {
        self.cx.is_some()
    }

    /// Sets an attribute (a semantic-convention field known only later, such as a status).
    pub fn set_attribute(&self, attribute: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(attribute);
        }
    }

    /// Marks the span failed (`otel.status_code = ERROR`).
    pub fn set_error(&self) {
        if let Some(cx) = &self.cx {
            cx.span().set_status(Status::error(""));
        }
    }

    /// The context this span's hop passes on: its ids, the caller's `tracestate` and random
    /// flag; `None` when there is no span.
    pub fn trace(&self, state: Option<TraceState>, random: u8) -> Option<TraceContext> {
        let cx = self.cx.as_ref()?;
        crate::spans::trace_of(cx.span().span_context(), state, random)
    }

    /// Runs `f` with this span current (spans `f` makes are its children).
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _attached = self.cx.clone().map(Context::attach);
        f()
    }

    /// Awaits `fut` with this span current while it is polled (spans made inside are its
    /// children); without a span, awaits it as it is.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        match &self.cx {
            Some(cx) => fut.with_context(cx.clone()).await,
            None => fut.await,
        }
    }
}
