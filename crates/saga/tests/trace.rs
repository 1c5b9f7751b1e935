//! A saga joins the trace that started it: every step and compensation call carries that
//! trace, to in-process functions, HTTP participants (`traceparent`) and bus participants
//! (the command event's trace context), also when another orchestrator resumes the saga
//! after a restart; the API shows the trace id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use flotilla_bus::{Bus, MemoryBackend, Received};
use flotilla_core::event::ExtensionValue;
use flotilla_core::{CloudEvent, ServiceInstance, ServiceName, TraceContext, TraceParent};
use flotilla_discovery::StaticDiscovery;
use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_saga::action::EXT_IDEMPOTENCY_KEY;
use flotilla_saga::{Orchestrator, SagaDefinition, SagaStatus};
use serde_json::json;

use common::{Reply, World, order_saga, permanent};

fn starter() -> TraceContext {
    TraceContext {
        parent: TraceParent::generate(),
        state: None,
    }
}

/// Every trace a call carried is the starter's trace, none is the starter's own span.
fn assert_joined(seen: &[TraceParent], starter: &TraceContext) {
    assert!(!seen.is_empty());
    for tp in seen {
        assert_eq!(tp.trace_id, starter.parent.trace_id, "{tp}");
        assert_ne!(tp.parent_id, starter.parent.parent_id, "{tp}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_resumed_saga_keeps_the_starters_trace_for_its_steps_and_compensations() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants.script("charge", vec![Reply::Hang]);
    w.participants.always("confirm", permanent("order refused"));
    let first = w.orchestrator();
    let trace = starter();
    let id = first
        .start_in_trace("place-order", json!({}), Some(&trace))
        .await
        .unwrap();
    w.participants.called("charge", 1).await;
    drop(first);

    let second = w.orchestrator();
    assert_eq!(second.recover().await.unwrap().resumed, vec![id.clone()]);
    let end = second.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert_eq!(end.trace.unwrap().parent.trace_id, trace.parent.trace_id);
    let calls = w.participants.traced_calls();
    let names: Vec<_> = calls.iter().map(|c| c.step.as_str()).collect();
    assert!(
        names.contains(&"charge") && names.contains(&"reserve"),
        "{names:?}"
    );
    assert!(calls.iter().any(|c| c.compensation), "{names:?}");
    let traces: Vec<TraceParent> = calls
        .iter()
        .map(|c| c.trace.clone().unwrap().parent)
        .collect();
    assert_joined(&traces, &trace);
}

#[tokio::test]
async fn http_steps_send_a_traceparent_in_the_starters_trace() {
    let seen: Arc<Mutex<Vec<TraceParent>>> = Arc::default();
    let headers_seen = seen.clone();
    let app = Router::new().fallback(move |h: HeaderMap| {
        let seen = headers_seen.clone();
        async move {
            let tp = h["traceparent"].to_str().unwrap();
            seen.lock().unwrap().push(TraceParent::parse(tp).unwrap());
            (StatusCode::OK, json!({"id": "r-1"}).to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let discovery = Arc::new(StaticDiscovery::new());
    for name in ["inventory", "payments", "orders"] {
        let name = ServiceName::new(name).unwrap();
        discovery.set_passing(
            &name,
            vec![ServiceInstance::new(name.clone(), "127.0.0.1", port)],
        );
    }
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let orch = Orchestrator::builder(store)
        .discovery(discovery)
        .saga(SagaDefinition::from_toml(include_str!("fixtures/place-order.toml")).unwrap())
        .build()
        .unwrap();
    let trace = starter();
    let order = json!({"order_id": "o-1", "amount": 1, "items": []});
    let id = orch
        .start_in_trace("place-order", order, Some(&trace))
        .await
        .unwrap();
    assert_eq!(orch.wait(&id).await.unwrap().status, SagaStatus::Completed);
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_joined(&seen.lock().unwrap(), &trace);
}

const BUS_SAGA: &str = r#"
name = "reserve-only"
version = 1

[[steps]]
name = "reserve"
timeout = "2s"
[steps.action.bus]
topic = "inventory.reserve"
reply_topic = "saga.replies"
"#;

#[tokio::test(start_paused = true)]
async fn bus_commands_carry_the_starters_trace() {
    let bus = Bus::new(Arc::new(MemoryBackend::new()));
    let seen: Arc<Mutex<Vec<TraceParent>>> = Arc::default();
    let (b, s) = (bus.clone(), seen.clone());
    let _participant = bus
        .subscribe("inventory.reserve")
        .group("participant")
        .handler(move |r: Received| {
            let (bus, seen) = (b.clone(), s.clone());
            async move {
                seen.lock().unwrap().push(r.event.traceparent().unwrap());
                let key = r
                    .event
                    .extension_str(EXT_IDEMPOTENCY_KEY)
                    .unwrap()
                    .to_owned();
                let mut reply = CloudEvent::new("/participant", "saga.reply").with_json(json!({}));
                reply
                    .set_extension(EXT_IDEMPOTENCY_KEY, ExtensionValue::String(key))
                    .unwrap();
                bus.publish_to("saga.replies".parse().unwrap(), reply)
                    .await?;
                Ok(())
            }
        })
        .await
        .unwrap();
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let orch = Orchestrator::builder(store)
        .bus(bus.clone())
        .saga(SagaDefinition::from_toml(BUS_SAGA).unwrap())
        .build()
        .unwrap();
    let trace = starter();
    let id = orch
        .start_in_trace("reserve-only", json!({}), Some(&trace))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), orch.wait(&id))
        .await
        .expect("the saga ends")
        .unwrap();
    assert_eq!(end.status, SagaStatus::Completed);
    assert_joined(&seen.lock().unwrap(), &trace);
}

#[tokio::test(start_paused = true)]
async fn a_start_through_the_api_joins_the_requests_trace_and_shows_its_id() {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt as _;

    let w = World::new(order_saga(1).build().unwrap());
    let orch = w.orchestrator();
    let trace = starter();
    let start = Request::post("/api/v1/sagas/place-order")
        .header("traceparent", trace.parent.to_string())
        .body(Body::from(r#"{"data": {}}"#))
        .unwrap();
    let res = flotilla_saga::api::router(orch.clone())
        .oneshot(start)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let started: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    orch.wait(&id).await.unwrap();
    let show = Request::get(format!("/api/v1/sagas/{id}"))
        .body(Body::empty())
        .unwrap();
    let res = flotilla_saga::api::router(orch)
        .oneshot(show)
        .await
        .unwrap();
    let shown: serde_json::Value =
        serde_json::from_slice(&to_bytes(res.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(shown["trace_id"], trace.parent.trace_id_hex(), "{shown}");
    let traceparent = TraceParent::parse(shown["traceparent"].as_str().unwrap()).unwrap();
    assert_eq!(traceparent.trace_id, trace.parent.trace_id);
    let calls = w.participants.traced_calls();
    let traces: Vec<TraceParent> = calls
        .iter()
        .map(|c| c.trace.clone().unwrap().parent)
        .collect();
    assert_joined(&traces, &trace);
}
