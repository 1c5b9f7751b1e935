//! The bus's exported spans (OpenTelemetry messaging conventions): a producer span per
//! publish whose context every published event carries in its `traceparent` extension, and a
//! consumer span per delivery attempt, a child of that context and linked to it. Each is
//! `Span::none()` when spans are not exported, and events are then left as they were.

use flotilla_core::TraceContext;
use tracing::Span;

use crate::Outgoing;

/// Opens the producer span of a publish and stamps its context on every event of the batch.
pub(super) fn publish(system: &'static str, batch: &mut [Outgoing]) -> Span {
    // A trace the publisher put on the event wins over the current span as the parent.
    let carried: Option<TraceContext> = batch.first().and_then(|o| o.event.trace_context());
    if !flotilla_telemetry::enabled_for(carried.as_ref()) {
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
    let ctx = flotilla_telemetry::continue_trace(&span, carried.as_ref());
    for out in batch.iter_mut() {
        out.event.set_trace_context(&ctx);
    }
    span
}

/// The consumer span of one delivery attempt.
pub(super) fn process(system: &'static str, d: &crate::Delivery, group: &str) -> Span {
    let producer = d.event.trace_context();
    if !flotilla_telemetry::enabled_for(producer.as_ref()) {
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
    if let Some(producer) = producer {
        flotilla_telemetry::continue_trace(&span, Some(&producer));
        flotilla_telemetry::link(&span, &producer);
    }
    span
}

pub(super) fn record_failure(span: &Span, kind: &'static str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}
