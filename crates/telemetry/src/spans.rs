//! The bridge between `tracing` spans and exported OpenTelemetry spans.
//!
//! When export is off (the default) nothing here touches OpenTelemetry: a hop's trace context
//! is the caller's with a fresh random span id, as before, and the check is one relaxed atomic
//! load. When it is on, the span id a hop sends onward is its exported span's, so a log line,
//! a problem body and the trace in the collector all name the same span.

use std::sync::atomic::{AtomicBool, Ordering};

use flotilla_core::trace::FLAG_RANDOM;
use flotilla_core::{TraceContext, TraceParent};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported. Call sites create their spans only when it is true, so a
/// process without export pays nothing for them.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(crate) fn set_enabled() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether a span continuing `parent` would be exported: spans are exported and the trace is
/// sampled (or starts here). Call sites skip the spans of unsampled traces, so sampling also
/// saves their cost. A trace that starts here is sampled by the exporter once its span
/// exists; hops that often start traces decide before, with [`crate::Hop`].
#[inline]
pub fn enabled_for(parent: Option<&TraceContext>) -> bool {
    enabled() && parent.is_none_or(|p| p.parent.sampled())
}

/// Makes `span` this hop's span in the caller's trace and returns the context the hop passes
/// on: the span's own ids when spans are exported, else the caller's trace with a new span id
/// (or a new trace when there was no caller's).
pub fn continue_trace(span: &Span, incoming: Option<&TraceContext>) -> TraceContext {
    if enabled() && !span.is_disabled() {
        if let Some(ctx) = incoming {
            // Fails only when the span has no exporter layer or already started; the span is
            // then a root, which is still a valid trace.
            let _ = span.set_parent(
                opentelemetry::Context::new().with_remote_span_context(remote_span_context(ctx)),
            );
        }
        let state = incoming.and_then(|c| c.state.clone());
        let random = incoming.map_or(FLAG_RANDOM, |c| c.parent.flags & FLAG_RANDOM);
        if let Some(own) = span_trace(span, state, random) {
            return own;
        }
    }
    TraceContext::continue_or_start(incoming)
}

/// The context of the exported span entered on this thread (the one a new exported span
/// would be the child of), if any: its sampled flag is the decision of its trace.
pub(crate) fn current_span_context() -> Option<TraceContext> {
    // An exported `tracing` span entered inside a request is nearer than the request's span,
    // which is current as an OpenTelemetry context (`ExportedSpan::run`).
    let sc = crate::entered::innermost().or_else(|| {
        let cx = opentelemetry::Context::current();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    })?;
    trace_of(&sc, None, 0)
}

/// Links `span` to another trace's span (a consumer to the producer of its message).
pub fn link(span: &Span, ctx: &TraceContext) {
    if enabled() {
        span.add_link(remote_span_context(ctx));
    }
}

fn span_trace(
    span: &Span,
    state: Option<flotilla_core::TraceState>,
    random: u8,
) -> Option<TraceContext> {
    let cx = span.context();
    trace_of(cx.span().span_context(), state, random)
}

/// The context a hop passes on for its exported span `sc`: its ids and sampled flag, the
/// caller's random flag and `tracestate`; `None` for an invalid span context.
pub(crate) fn trace_of(
    sc: &SpanContext,
    state: Option<flotilla_core::TraceState>,
    random: u8,
) -> Option<TraceContext> {
    sc.is_valid().then(|| TraceContext {
        parent: TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            parent_id: sc.span_id().to_bytes(),
            // The exporter keeps only the sampled bit; the caller's random bit still holds.
            flags: sc.trace_flags().to_u8() | (random & FLAG_RANDOM),
        },
        state,
    })
}

pub(crate) fn remote_span_context(ctx: &TraceContext) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(ctx.parent.trace_id),
        SpanId::from_bytes(ctx.parent.parent_id),
        TraceFlags::new(ctx.parent.flags),
        true,
        TraceState::default(),
    )
}
