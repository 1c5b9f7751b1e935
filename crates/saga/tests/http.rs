//! HTTP steps against a real participant on 127.0.0.1:0, found through static discovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::StaticDiscovery;
use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_saga::{Orchestrator, SagaDefinition, SagaStatus};
use serde_json::{Value, json};

const ORDER_TOML: &str = include_str!("fixtures/place-order.toml");

/// One request the participant received.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    path: String,
    key: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// A participant playing inventory, payments and orders at once. Payment answers are
/// scripted; everything else answers 200.
#[derive(Clone, Default)]
struct Shop {
    seen: Arc<Mutex<Vec<Seen>>>,
    payment_statuses: Arc<Mutex<VecDeque<StatusCode>>>,
}

async fn handle(
    State(shop): State<Shop>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    let path = uri.path().to_owned();
    shop.seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        key: header("idempotency-key"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if path == "/payments" {
        let status = shop.payment_statuses.lock().unwrap().pop_front();
        if let Some(s) = status.filter(|s| !s.is_success()) {
            return (s, "payment refused".into());
        }
        return (StatusCode::OK, json!({"payment": "p-1"}).to_string());
    }
    (StatusCode::OK, json!({"id": "r-1"}).to_string())
}

async fn orchestrator(shop: &Shop) -> Orchestrator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(handle).with_state(shop.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let discovery = Arc::new(StaticDiscovery::new());
    for name in ["inventory", "payments", "orders"] {
        let name = ServiceName::new(name).unwrap();
        let instance = ServiceInstance::new(name.clone(), "127.0.0.1", port);
        discovery.set_passing(&name, vec![instance]);
    }
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    Orchestrator::builder(store)
        .discovery(discovery)
        .saga(SagaDefinition::from_toml(ORDER_TOML).unwrap())
        .build()
        .unwrap()
}

fn order() -> Value {
    json!({"order_id": "o 1", "amount": 42, "items": [{"sku": "a", "qty": 2}]})
}

#[tokio::test]
async fn http_steps_carry_the_idempotency_key_and_templated_requests() {
    let shop = Shop::default();
    shop.payment_statuses
        .lock()
        .unwrap()
        .push_back(StatusCode::SERVICE_UNAVAILABLE);
    let orch = orchestrator(&shop).await;
    let id = orch.start("place-order", order()).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Completed);
    assert_eq!(end.steps[1].result, Some(json!({"payment": "p-1"})));

    let seen = shop.seen.lock().unwrap().clone();
    let paths: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/reservations"),
            ("POST", "/payments"),
            ("POST", "/payments"),
            ("POST", "/orders/o%201/confirm"),
        ]
    );
    assert_eq!(seen[0].key, Some(format!("{id}:reserve")));
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].body,
        json!({"order_id": "o 1", "items": [{"sku": "a", "qty": 2}]})
    );
    // The 503 was retried under the same key, with the reservation's id templated in.
    assert_eq!(seen[1].key, Some(format!("{id}:charge")));
    assert_eq!(seen[2].key, seen[1].key);
    assert_eq!(
        seen[2].body,
        json!({"order_id": "o 1", "amount": 42, "reservation": "r-1"})
    );
    assert_eq!(seen[3].key, Some(format!("{id}:confirm")));
    assert_eq!(seen[3].body, Value::Null);
}

#[tokio::test]
async fn a_refused_payment_releases_the_reservation_by_its_key() {
    let shop = Shop::default();
    shop.payment_statuses
        .lock()
        .unwrap()
        .push_back(StatusCode::PAYMENT_REQUIRED);
    let orch = orchestrator(&shop).await;
    let id = orch.start("place-order", order()).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert!(end.steps[1].error.as_deref().unwrap().contains("402"));

    let seen = shop.seen.lock().unwrap().clone();
    // A 402 is not retried; the charge never took effect, so there is no refund.
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let release = &seen[2];
    assert_eq!(release.method, Method::DELETE);
    assert_eq!(release.path, format!("/reservations/{id}%3Areserve"));
    assert_eq!(release.key, Some(format!("{id}:reserve:compensation")));
}
