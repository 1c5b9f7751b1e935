//! The orchestrator's exported spans: one when an instance starts (a child of the starter's
//! trace, or the root of a new one) and one per attempt of a step or of its compensation, a
//! child of the start span. The start span's context is kept in the `SagaStarted` event's
//! metadata (`traceparent`, `tracestate`), so the attempts of an instance resumed after a
//! restart, or by another replica, still join the trace that started it; each attempt passes
//! its own context on to the HTTP request or bus command it sends.
//!
//! When spans are not exported, or the trace is not sampled, no span is built and the
//! context is still kept and passed on, so log lines and participants see one trace id.

use flotilla_core::{TraceContext, TraceParent, TraceState};
use flotilla_eventstore::Metadata;
use serde_json::Value;
use tracing::Span;

use crate::StepError;
use crate::action::StepCall;

/// The metadata key of the start's `tracestate` (`traceparent` has a field of its own).
const TRACESTATE: &str = "tracestate";

/// Opens and closes the start span of instance `id` of `definition`; returns the context its
/// steps continue.
pub(crate) fn start(definition: &str, id: &str, starter: Option<&TraceContext>) -> TraceContext {
    let hop = flotilla_telemetry::Hop::begin(starter);
    let span = match hop.records() {
        true => tracing::info_span!(
            target: flotilla_telemetry::TARGET,
            "saga start",
            otel.kind = "internal",
            otel.name = format!("saga {definition}"),
            flotilla.saga.id = id,
            flotilla.saga.name = definition,
        ),
        false => Span::none(),
    };
    hop.continue_trace(&span)
}

/// The span of one attempt (`call.step`, `call.attempt`, forward or compensation) in the
/// instance's trace `saga`; stamps the attempt's context on `call`.
pub(crate) fn attempt(saga: Option<&TraceContext>, call: &mut StepCall) -> Span {
    let span = match flotilla_telemetry::enabled_for(saga) {
        true => tracing::info_span!(
            target: flotilla_telemetry::TARGET,
            "saga attempt",
            otel.kind = "internal",
            otel.name = format!(
                "saga {} {} {}",
                call.saga,
                if call.compensation { "compensate" } else { "step" },
                call.step
            ),
            otel.status_code = tracing::field::Empty,
            flotilla.saga.id = call.saga_id.as_str(),
            flotilla.saga.name = call.saga.as_str(),
            flotilla.saga.step = call.step.as_str(),
            flotilla.saga.attempt = call.attempt,
            flotilla.saga.compensation = call.compensation,
            flotilla.saga.outcome = tracing::field::Empty,
        ),
        false => Span::none(),
    };
    call.trace = Some(flotilla_telemetry::continue_trace(&span, saga));
    span
}

/// Records how an attempt went; `None` when it ran out of time.
pub(crate) fn record(span: &Span, outcome: Option<&Result<Value, StepError>>) {
    if span.is_none() {
        return;
    }
    let label = match outcome {
        Some(Ok(_)) => "succeeded",
        Some(Err(e)) if e.timed_out => "timed_out",
        Some(Err(e)) if e.retryable => "failed_retryable",
        Some(Err(_)) => "failed",
        None => "timed_out",
    };
    span.record("flotilla.saga.outcome", label);
    if label != "succeeded" {
        span.record("otel.status_code", "ERROR");
    }
}

/// Writes `ctx` into the metadata of the `SagaStarted` event.
pub(crate) fn to_metadata(ctx: &TraceContext, metadata: &mut Metadata) {
    metadata.traceparent = Some(ctx.parent.to_string());
    if let Some(state) = &ctx.state {
        metadata
            .extra
            .insert(TRACESTATE.into(), Value::String(state.as_str().to_owned()));
    }
}

/// The context a `SagaStarted` event's metadata holds, if a valid one.
pub(crate) fn from_metadata(metadata: &Metadata) -> Option<TraceContext> {
    let parent = TraceParent::parse(metadata.traceparent.as_deref()?)?;
    let state = metadata
        .extra
        .get(TRACESTATE)
        .and_then(Value::as_str)
        .and_then(TraceState::parse);
    Some(TraceContext { parent, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_context_survives_the_metadata_round_trip() {
        let ctx = TraceContext {
            parent: TraceParent::generate(),
            state: TraceState::parse("vendor=1"),
        };
        let mut metadata = Metadata::default();
        to_metadata(&ctx, &mut metadata);
        assert_eq!(from_metadata(&metadata), Some(ctx));
    }

    #[test]
    fn an_invalid_stored_traceparent_is_no_context() {
        let metadata = Metadata {
            traceparent: Some("00-zz".into()),
            ..Metadata::default()
        };
        assert_eq!(from_metadata(&metadata), None);
    }
}
