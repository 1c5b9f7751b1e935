//! CloudEvents HTTP binary content mode, as the protocol binding (v1.0.2) reads it:
//! percent-encoded `ce-*` values, `Content-Type` as `datacontenttype` with its parameters, and
//! a text body kept as text data.
#![allow(clippy::unwrap_used)]

mod common;
use common::call;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use flotilla_broker::{Broker, Options};
use flotilla_bus::MemoryBackend;
use http::{Request, StatusCode};
use serde_json::{Value, json};

async fn app() -> Router {
    let app = Broker::new(Options::default(), Arc::new(MemoryBackend::new()))
        .unwrap()
        .router();
    let declare = Request::put("/api/v1/bus/groups/g")
        .header("content-type", "application/json")
        .body(Body::from(json!({"pattern": "t.>"}).to_string()))
        .unwrap();
    assert_eq!(call(&app, declare).await.0, StatusCode::NO_CONTENT);
    app
}

/// Publishes one binary-mode event with `headers` (besides the required attributes) and
/// `body`; answers the status and the response body.
async fn publish(app: &Router, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = Request::post("/api/v1/bus/topics/t.a/events")
        .header("ce-specversion", "1.0")
        .header("ce-id", "e-1")
        .header("ce-type", "t.a");
    if !headers.iter().any(|(k, _)| *k == "ce-source") {
        req = req.header("ce-source", "/s");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, _, body) = call(app, req.body(Body::from(body)).unwrap()).await;
    (status, body)
}

/// The one event the group holds, as the pull API answers it (structured JSON).
async fn pulled(app: &Router) -> Value {
    let pull = Request::post("/api/v1/bus/groups/g/pull")
        .header("content-type", "application/json")
        .body(Body::from(json!({"wait_ms": 0}).to_string()))
        .unwrap();
    let (_, _, body) = call(app, pull).await;
    assert_eq!(
        body["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    body["deliveries"][0]["event"].clone()
}

async fn published(headers: &[(&str, &str)], body: &[u8]) -> Value {
    let app = app().await;
    let (status, answer) = publish(&app, headers, body.to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    pulled(&app).await
}

#[tokio::test]
async fn percent_encoded_attribute_values_are_decoded() {
    let event = published(
        &[
            ("ce-source", "/shops/caf%C3%A9"),
            ("ce-subject", "order%2042%20%22gift%22%20100%25"),
            ("ce-tenant", "z%C3%BCrich"),
            ("content-type", "application/json"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(event["source"], "/shops/café");
    assert_eq!(event["subject"], "order 42 \"gift\" 100%");
    assert_eq!(event["tenant"], "zürich");
}

#[tokio::test]
async fn an_attribute_that_is_not_utf8_once_decoded_is_refused_by_name() {
    let app = app().await;
    let (status, problem) = publish(&app, &[("ce-subject", "caf%E9")], b"x".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("ce-subject"), "{problem}");
}

#[tokio::test]
async fn an_attribute_given_twice_is_refused_rather_than_one_value_guessed() {
    let app = app().await;
    let (status, problem) = publish(
        &app,
        &[("ce-subject", "a"), ("ce-subject", "b")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("ce-subject"), "{problem}");
}

#[tokio::test]
async fn content_type_parameters_are_kept_in_datacontenttype() {
    let event = published(
        &[("content-type", "application/json; charset=utf-8")],
        br#"{"total": 12}"#,
    )
    .await;
    assert_eq!(event["datacontenttype"], "application/json; charset=utf-8");
    assert_eq!(event["data"], json!({"total": 12}));
}

#[tokio::test]
async fn a_text_body_is_kept_as_text_data() {
    let event = published(
        &[("content-type", "text/plain; charset=utf-8")],
        "héllo, wörld".as_bytes(),
    )
    .await;
    assert_eq!(event["datacontenttype"], "text/plain; charset=utf-8");
    assert_eq!(event["data"], "héllo, wörld");
    assert!(event.get("data_base64").is_none(), "{event}");
}

#[tokio::test]
async fn a_utf8_body_of_another_textual_type_is_kept_as_text_data() {
    let xml = "<order total=\"12\"/>";
    let event = published(&[("content-type", "application/xml")], xml.as_bytes()).await;
    assert_eq!(event["data"], xml);
    assert!(event.get("data_base64").is_none(), "{event}");
}

#[tokio::test]
async fn bytes_that_are_not_utf8_or_declared_as_octets_stay_base64() {
    let latin1 = published(
        &[("content-type", "text/plain; charset=latin1")],
        b"caf\xe9",
    )
    .await;
    assert_eq!(latin1["data_base64"], "Y2Fm6Q==");
    assert!(latin1.get("data").is_none(), "{latin1}");
    let octets = published(&[("content-type", "application/octet-stream")], b"abc").await;
    assert_eq!(octets["data_base64"], "YWJj");
}
