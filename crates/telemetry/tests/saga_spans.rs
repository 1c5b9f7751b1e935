//! A saga's exported spans: one for its start and one per step or compensation attempt, all
//! in the start's trace and children of the start span, with the saga's id, name, step,
//! attempt and outcome as attributes.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_saga::{
    Action, Orchestrator, SagaDefinition, SagaStatus, StepBuilder, StepCall, StepError,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use support::{grpc_collector, install_grpc, receive_until, text};

fn saga() -> SagaDefinition {
    SagaDefinition::builder("place-order", 1)
        .step(
            StepBuilder::new("reserve", Action::function("reserve"))
                .compensate(Action::function("release")),
        )
        .step(StepBuilder::new("charge", Action::function("charge")))
        .build()
        .unwrap()
}

fn named<'a>(spans: &'a [Span], step: &str, compensation: bool) -> Option<&'a Span> {
    spans.iter().find(|s| {
        text(s, "flotilla.saga.step").as_deref() == Some(step)
            && text(s, "flotilla.saga.compensation") == Some(compensation.to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_exports_its_start_and_every_attempt_under_it() {
    let (url, mut spans) = grpc_collector().await;
    install_grpc(&url, "saga-test");
    let ok = |_: StepCall| async { Ok(json!({})) };
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let orch = Orchestrator::builder(store)
        .function("reserve", ok)
        .function("release", ok)
        .function("charge", |_: StepCall| async {
            Err(StepError::permanent("card declined"))
        })
        .saga(saga())
        .build()
        .unwrap();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    flotilla_telemetry::flush();

    let got = receive_until(&mut spans, |s| {
        s.iter().any(|s| s.name == "saga place-order")
            && named(s, "reserve", false).is_some()
            && named(s, "charge", false).is_some()
            && named(s, "reserve", true).is_some()
    })
    .await;
    let start = got.iter().find(|s| s.name == "saga place-order").unwrap();
    assert_eq!(text(start, "flotilla.saga.id"), Some(id.clone()));
    assert_eq!(end.trace.unwrap().parent.trace_id.to_vec(), start.trace_id);
    for (step, compensation, outcome) in [
        ("reserve", false, "succeeded"),
        ("charge", false, "failed"),
        ("reserve", true, "succeeded"),
    ] {
        let span = named(&got, step, compensation).unwrap();
        assert_eq!(span.trace_id, start.trace_id, "{step}");
        assert_eq!(span.parent_span_id, start.span_id, "{step}");
        assert_eq!(text(span, "flotilla.saga.id"), Some(id.clone()));
        assert_eq!(
            text(span, "flotilla.saga.name").as_deref(),
            Some("place-order")
        );
        assert_eq!(text(span, "flotilla.saga.attempt").as_deref(), Some("1"));
        assert_eq!(
            text(span, "flotilla.saga.outcome").as_deref(),
            Some(outcome)
        );
    }
    assert_eq!(
        named(&got, "reserve", true).unwrap().name,
        "saga place-order compensate reserve"
    );
}
