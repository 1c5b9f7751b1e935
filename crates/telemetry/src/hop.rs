//! The sampling decision of a hop, made before any span exists.
//!
//! A span costs its allocation, its attributes and its share of the exporter's work even when
//! the sampler then drops it, and at a 10 % ratio nine requests in ten are dropped. So the
//! hops that start traces (the gateway, a service's server) decide first: the caller's
//! `sampled` flag when it sent a trace, else the exporter's own ratio rule applied to a trace
//! id drawn here. An unsampled hop creates no span and passes on a context with `sampled`
//! clear; a sampled one creates its span, and its exported trace id is the one drawn here
//! (through [`PresetTraceIds`]), so the exporter's sampler, which applies the same rule to the
//! same id, agrees.

use std::cell::Cell;
use std::sync::OnceLock;

use flotilla_core::TraceContext;
use flotilla_core::trace::{FLAG_RANDOM, FLAG_SAMPLED};
use opentelemetry::Context;
use opentelemetry::trace::{SpanBuilder, SpanId, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _,
};
use tracing::Span;

use crate::exported::{self, ExportedSpan};
use crate::spans::{continue_trace, current_span_context, enabled, remote_span_context};

static ROOT_SAMPLER: OnceLock<Sampler> = OnceLock::new();

thread_local! {
    /// The trace id the next root span created on this thread takes.
    static NEXT_TRACE_ID: Cell<Option<[u8; 16]>> = const { Cell::new(None) };
}

/// Installs the rule that decides traces starting in this process (the exporter's root
/// sampler); once, with the exporter.
pub(crate) fn set_root_sampler(sampler: Sampler) {
    let _ = ROOT_SAMPLER.set(sampler);
}

/// Where a hop stands in its trace before any span exists: the trace it joins (the caller's
/// or one it starts) and whether it records a span.
///
/// ```
/// let hop = flotilla_telemetry::Hop::begin(None);
/// let span = match hop.records() {
///     true => tracing::info_span!(target: flotilla_telemetry::TARGET, "request"),
///     false => tracing::Span::none(),
/// };
/// let passed_on = hop.continue_trace(&span);
/// assert_eq!(passed_on.parent.sampled(), !flotilla_telemetry::enabled() || hop.records());
/// ```
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    incoming: Option<&'a TraceContext>,
    /// The trace this hop starts, drawn only when spans are exported and the caller sent none.
    root: Option<TraceContext>,
    /// The exported span current when the hop began ([`Hop::begin_within`]), which it
    /// continues when the caller sent no trace.
    current: Option<TraceContext>,
    records: bool,
}

impl<'a> Hop<'a> {
    /// Decides whether this hop records a span: never when spans are not exported; as the
    /// caller's `sampled` flag says when it sent a trace; else by the sample ratio, from the
    /// trace id of the trace this hop starts.
    pub fn begin(incoming: Option<&'a TraceContext>) -> Self {
        let (root, records) = match (enabled(), incoming) {
            (false, _) => (None, false),
            (true, Some(caller)) => (None, caller.parent.sampled()),
            (true, None) => {
                let mut root = TraceContext::generate();
                let records = samples_root(root.parent.trace_id);
                if !records {
                    root.parent.flags &= !FLAG_SAMPLED;
                }
                (Some(root), records)
            }
        };
        Self {
            incoming,
            root,
            current: None,
            records,
        }
    }

    /// [`Hop::begin`] for a hop that may run inside an exported span of its process (a publish
    /// or an append made while a request is handled): without a caller's trace, the exported
    /// span current on this thread decides, and the hop's span is its child when that span is
    /// sampled and is not built when it is not; only a hop outside any exported span starts a
    /// trace and draws the sampling decision.
    pub fn begin_within(incoming: Option<&'a TraceContext>) -> Self {
        if incoming.is_some() || !enabled() {
            return Self::begin(incoming);
        }
        match current_span_context() {
            Some(current) => Self {
                incoming: None,
                root: None,
                records: current.parent.sampled(),
                current: Some(current),
            },
            None => Self::begin(None),
        }
    }

    /// Whether this hop creates its exported span.
    pub fn records(&self) -> bool {
        self.records
    }

    /// Starts this hop's span with the OpenTelemetry API when it records (`build` is called
    /// only then), and returns it with the context the hop passes on, as
    /// [`Hop::continue_trace`] does for a `tracing` span.
    pub fn start(&self, build: impl FnOnce() -> SpanBuilder) -> (ExportedSpan, TraceContext) {
        let Some(tracer) = exported::tracer().filter(|_| self.records) else {
            return (ExportedSpan::none(), self.continue_trace(&Span::none()));
        };
        let caller = self.current.as_ref().or(self.incoming);
        let parent = match caller {
            Some(c) => Context::new().with_remote_span_context(remote_span_context(c)),
            None => Context::new(),
        };
        if let (None, Some(root)) = (caller, &self.root) {
            NEXT_TRACE_ID.with(|next| next.set(Some(root.parent.trace_id)));
        }
        let span = ExportedSpan::start(tracer, build(), parent);
        NEXT_TRACE_ID.with(Cell::take);
        let state = self.incoming.and_then(|c| c.state.clone());
        let random = self
            .incoming
            .map_or(FLAG_RANDOM, |c| c.parent.flags & FLAG_RANDOM);
        let trace = span.trace(state, random);
        let trace = trace.unwrap_or_else(|| self.continue_trace(&Span::none()));
        (span, trace)
    }

    /// Makes `span` (this hop's span, `Span::none()` when it records none) part of the trace
    /// and returns the context the hop passes on: the span's ids when it records, else the
    /// trace with a fresh span id and `sampled` as decided.
    pub fn continue_trace(&self, span: &Span) -> TraceContext {
        if let Some(current) = &self.current {
            // A recorded span is already the current one's child (`tracing` parents it).
            return match self.records && !span.is_disabled() {
                true => continue_trace(span, None),
                false => TraceContext::continue_or_start(Some(current)),
            };
        }
        let Some(root) = &self.root else {
            return continue_trace(span, self.incoming);
        };
        if !self.records || span.is_disabled() {
            return root.clone();
        }
        // The span starts (and draws its trace id) when its context is first asked for.
        NEXT_TRACE_ID.with(|next| next.set(Some(root.parent.trace_id)));
        let own = continue_trace(span, None);
        NEXT_TRACE_ID.with(Cell::take);
        own
    }
}

fn samples_root(trace_id: [u8; 16]) -> bool {
    ROOT_SAMPLER.get().is_none_or(|s| {
        let result = s.should_sample(
            None,
            TraceId::from_bytes(trace_id),
            "",
            &SpanKind::Server,
            &[],
            &[],
        );
        result.decision == SamplingDecision::RecordAndSample
    })
}

/// Ids for the exporter: the trace id [`Hop`] drew for the root span being started on this
/// thread, random ones otherwise.
#[derive(Debug, Default)]
pub(crate) struct PresetTraceIds(RandomIdGenerator);

impl IdGenerator for PresetTraceIds {
    fn new_trace_id(&self) -> TraceId {
        match NEXT_TRACE_ID.with(Cell::take) {
            Some(id) => TraceId::from_bytes(id),
            None => self.0.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preset_trace_id_is_taken_once() {
        let ids = PresetTraceIds::default();
        NEXT_TRACE_ID.with(|n| n.set(Some([7; 16])));
        assert_eq!(ids.new_trace_id(), TraceId::from_bytes([7; 16]));
        assert_ne!(ids.new_trace_id(), TraceId::from_bytes([7; 16]));
    }

    #[test]
    fn without_export_a_hop_records_nothing_and_keeps_the_callers_trace() {
        let caller = TraceContext::generate();
        let hop = Hop::begin(Some(&caller));
        assert!(!hop.records());
        let next = hop.continue_trace(&Span::none());
        assert_eq!(next.parent.trace_id, caller.parent.trace_id);
        assert_ne!(next.parent.parent_id, caller.parent.parent_id);
    }
}
