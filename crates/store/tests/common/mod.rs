//! Calls into the store API's router without a socket.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_store::metrics::{Instrumented, Metrics};
use flotilla_store::{Options, StoreApi};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tower::ServiceExt;

pub fn api_with(options: Options) -> (axum::Router, Registry) {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let store = Arc::new(Instrumented::new(store, metrics));
    (StoreApi::new(options, store).unwrap().router(), registry)
}

pub async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, ctype, body)
}

pub fn post(path: &str, expected: Option<&str>, body: Value) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json");
    if let Some(e) = expected {
        b = b.header("expected-version", e);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub fn one_event() -> Value {
    json!({"events": [{"type": "OrderPlaced", "data": {"n": 1}}]})
}

/// A request with a JSON body and any method.
pub fn send(method: &str, path: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}
