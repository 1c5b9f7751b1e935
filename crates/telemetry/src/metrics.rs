//! What became of the spans: exported, or dropped (queue full or collector unreachable).

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

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
