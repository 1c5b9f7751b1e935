//! Helpers shared by the broker's HTTP tests.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use flotilla_broker::{Broker, Options};
use flotilla_bus::MemoryBackend;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The bus API with default options over an in-memory bus.
pub(crate) fn default_app() -> Router {
    Broker::new(Options::default(), Arc::new(MemoryBackend::new()))
        .unwrap()
        .router()
}

/// A request with a JSON body.
pub(crate) fn req(method: &str, uri: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Declares group `g` on `t.>`.
pub(crate) async fn declare(app: &Router) {
    let (s, _, _) = call(
        app,
        req("PUT", "/api/v1/bus/groups/g", json!({"pattern": "t.>"})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// A structured CloudEvent of type `t.a` with id `id`.
pub(crate) fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/s", "type": "t.a", "data": {"n": 1}})
}

/// Sends `req` to `app`; answers status, content type and the body as JSON (null if not JSON).
pub(crate) async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, ct, body)
}
