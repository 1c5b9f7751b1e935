//! Distributed tracing (layer L1, beside the contracts; any crate may use it).
//!
//! This crate owns W3C trace context on HTTP headers ([`headers`]), the bridge between
//! `tracing` spans and exported OpenTelemetry spans ([`continue_trace`], [`link`]), the
//! process's subscriber set-up with OTLP export ([`init`], configured by [`TracingOptions`]
//! and the standard `OTEL_*` variables) and the span counters ([`metrics`]).
//!
//! It does not parse trace context itself (that is `flotilla_core::TraceContext`, which
//! events use too) and creates no spans: the gateway, the SDK, the client, the bus and the
//! event store create theirs, with OpenTelemetry semantic-convention field names, and only
//! when [`enabled`] says spans are exported, so the hot paths pay one atomic load otherwise.

mod entered;
mod export;
mod exported;
pub mod headers;
mod hop;
pub mod metrics;
mod options;
mod setup;
mod spans;

pub use exported::ExportedSpan;
pub use hop::Hop;
/// What the call sites of [`ExportedSpan`] build spans with.
pub use opentelemetry::KeyValue;
pub use opentelemetry::trace::{SpanBuilder, SpanKind};
pub use options::{Protocol, TracingOptions};
pub use setup::{Logs, flush, init, shutdown};
pub use spans::{continue_trace, enabled, enabled_for, link};

/// The `tracing` target of exported spans. Log lines never show them (their fields are for the
/// collector); every other span stays a log-only span.
pub const TARGET: &str = "flotilla::otel";

/// Errors of this crate: only configuration can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting or variable has a value that cannot work; the message names it.
    #[error("{0}")]
    Config(String),
}
