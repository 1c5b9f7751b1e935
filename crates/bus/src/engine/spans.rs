//! The bus's exported spans (OpenTelemetry messaging conventions): a producer span per
//! publish whose context every published event carries in its `traceparent` extension, and a
//! consumer span per delivery attempt, a child of that context and linked to it. Each is
//! `Span::none()` when spans are not exported, and events are then left as they were.
//!
//! Sampling is decided before a span exists ([`flotilla_telemetry::Hop`]): a publish follows
//! the trace its events carry, else the exported span it runs in, else draws the decision as
//! the root of a trace; a delivery follows the `traceparent` its event carries, else draws.
//! An unsampled publish or delivery builds no span and formats nothing; an unsampled publish
//! that starts a trace still stamps it (with `sampled` clear) on its events, so their
//! consumers follow the same decision.

use flotilla_core::TraceContext;
use flotilla_telemetry::Hop;
use tracing::Span;

use crate::Outgoing;

/// Opens the producer span of a publish and stamps its context on every event of the batch.
pub(super) fn publish(system: &'static str, batch: &mut [Outgoing]) -> Span {
    if !flotilla_telemetry::enabled() {
        return Span::none();
    }
    // A trace the publisher put on the event wins over the current span as the parent.
    let carried: Option<TraceContext> = batch.first().and_then(|o| o.event.trace_context());
    let hop = Hop::begin_within(carried.as_ref());
    if !hop.records() {
        if carried.is_none() {
            stamp(batch, &hop.continue_trace(&Span::none()));
        }
        return Span::none();
    }
    let topic = batch.first().map_or("", |o| o.topic.as_str());
    let same_topic = batch.iter().all(|o| o.topic.as_str() == topic);
    let destination = if same_topic { topic } else { "(mixed)" };
    let span = tracing::info_span!(
        target: flotilla_telemetry::TARGET,
        "publish",
        otel.kind = "producer",
        otel.name = format!("publish {destination}"),
        otel.status_code = tracing::field::Empty,
        messaging.system = system,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = destination,
        messaging.batch.message_count = batch.len(),
        messaging.message.id = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if let [one] = &*batch {
        span.record("messaging.message.id", one.event.id.as_str());
    }
    stamp(batch, &hop.continue_trace(&span));
    span
}

fn stamp(batch: &mut [Outgoing], ctx: &TraceContext) {
    for out in batch.iter_mut() {
        out.event.set_trace_context(ctx);
    }
}

/// The consumer span of one delivery attempt.
pub(super) fn process(system: &'static str, d: &crate::Delivery, group: &str) -> Span {
    if !flotilla_telemetry::enabled() {
        return Span::none();
    }
    let producer = d.event.trace_context();
    let hop = Hop::begin_within(producer.as_ref());
    if !hop.records() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: flotilla_telemetry::TARGET,
        "process",
        otel.kind = "consumer",
        otel.name = format!("process {}", d.topic),
        otel.status_code = tracing::field::Empty,
        messaging.system = system,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = d.topic.as_str(),
        messaging.consumer.group.name = group,
        messaging.message.id = d.event.id.as_str(),
        messaging.message.delivery_attempt = d.attempt,
        error.type = tracing::field::Empty,
    );
    hop.continue_trace(&span);
    if let Some(producer) = producer {
        flotilla_telemetry::link(&span, &producer);
    }
    span
}

pub(super) fn record_failure(span: &Span, kind: &'static str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}
