//! What became of the spans: exported, or dropped (queue full or collector unreachable); and
//! the exemplar that ties a latency observation to its trace.

use std::sync::LazyLock;

use flotilla_core::TraceParent;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::registry::Registry;

/// The label set of a request-duration exemplar: the trace that observation belongs to.
/// OpenMetrics shows it after the bucket it fell in; the text format 0.0.4 has no exemplars.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    trace_id: String,
}

/// A histogram that keeps, per bucket, the trace of its latest sampled observation.
pub type TracedHistogram = HistogramWithExemplars<TraceExemplar>;

/// The exemplar of a request in `trace`: only when spans are exported and the trace is
/// sampled, so that the trace it names can be found in the collector. Allocates (the id's
/// text) only then.
#[inline]
pub fn exemplar(trace: &TraceParent) -> Option<TraceExemplar> {
    (crate::enabled() && trace.sampled()).then(|| TraceExemplar {
        trace_id: trace.trace_id_hex(),
    })
}

pub(crate) static EXPORTED: LazyLock<Counter> = LazyLock::new(Counter::default);
pub(crate) static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Adds the span counters to `registry` (they are process-wide, like the exporter).
pub fn register(registry: &mut Registry) {
    registry.register(
        "flotilla_trace_spans_exported",
        "Spans the collector accepted",
        EXPORTED.clone(),
    );
    registry.register(
        "flotilla_trace_spans_dropped",
        "Spans dropped: the export queue was full or the collector did not take them",
        DROPPED.clone(),
    );
}

/// Spans dropped so far in this process.
pub fn dropped_spans() -> u64 {
    DROPPED.get()
}

/// Spans exported so far in this process.
pub fn exported_spans() -> u64 {
    EXPORTED.get()
}
