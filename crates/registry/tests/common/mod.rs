//! Helpers shared by the registry's black-box tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_registry::{Options, Registry};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A registry over `store`, with its checks running until the returned token is cancelled.
pub async fn registry(
    store: &MemoryCatalogStore,
    options: Options,
) -> (Registry, CancellationToken) {
    let r = Registry::new(options, Arc::new(store.clone()))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let runner = r.clone();
    let token = stop.clone();
    tokio::spawn(async move { runner.run(token).await });
    tokio::task::yield_now().await;
    (r, stop)
}

/// Sends one request through the router, in process.
pub async fn call(
    r: &Registry,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    call_with(r, method, uri, body, None).await
}

/// As [`call`], with a bearer token.
pub async fn call_with(
    r: &Registry,
    method: Method,
    uri: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .unwrap();
    let resp = r.router().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, headers, json)
}

/// Serves `router` on `listener` until `stop` is cancelled.
pub fn serve(listener: tokio::net::TcpListener, router: axum::Router, stop: CancellationToken) {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
    });
}

/// Binds 127.0.0.1:0.
pub async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// The registration JSON of a test instance of `service` on `port`.
pub fn registration(service: &str, id: &str, port: u16, extra: &str) -> String {
    let comma = if extra.is_empty() { "" } else { "," };
    format!(
        r#"{{"id":"{id}","name":"{service}","address":"127.0.0.1","port":{port}{comma}{extra}}}"#
    )
}
