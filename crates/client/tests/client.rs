//! ServiceClient against scripted upstreams.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use flotilla_client::{Error, PolicySet, ServiceClient};
use flotilla_core::TraceParent;
use flotilla_core::error::Classify;
use support::{closed_port, discovery, serve};

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

#[tokio::test]
async fn get_resolves_balances_and_decodes_json() {
    let a = serve(Router::new().route(
        "/users/{id}",
        get(|| async { axum::Json(serde_json::json!({"from": "a"})) }),
    ))
    .await;
    let b = serve(Router::new().route(
        "/users/{id}",
        get(|| async { axum::Json(serde_json::json!({"from": "b"})) }),
    ))
    .await;
    let policies = PolicySet::from_toml("[defaults.balance]\nstrategy = \"round_robin\"").unwrap();
    let client = ServiceClient::builder(discovery(&[("users", vec![a, b])]))
        .policies(policies)
        .build();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let v: serde_json::Value = client
            .service("users")
            .get("/users/42")
            .send()
            .await
            .unwrap()
            .json()
            .unwrap();
        seen.push(v["from"].as_str().unwrap().to_owned());
    }
    seen.sort();
    assert_eq!(seen, vec!["a", "a", "b", "b"]);
}

#[tokio::test]
async fn request_id_trace_context_and_idempotency_key_are_propagated() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<HeaderMap>();
    let up = serve(Router::new().route(
        "/orders",
        post(move |h: HeaderMap| async move {
            tx.send(h).unwrap();
            StatusCode::CREATED
        }),
    ))
    .await;
    let client = ServiceClient::new(discovery(&[("orders", vec![up])]));
    let parent = TraceParent::generate();
    let mut incoming = HeaderMap::new();
    incoming.insert("x-request-id", "req-123".parse().unwrap());
    incoming.insert("traceparent", parent.to_string().parse().unwrap());
    let r = client
        .service("orders")
        .post("/orders")
        .json(&serde_json::json!({"sku": 1}))
        .propagate(&incoming)
        .idempotency_key("order-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen["x-request-id"], "req-123");
    assert_eq!(seen["idempotency-key"], "order-9");
    let sent = TraceParent::parse(seen["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(sent.trace_id, parent.trace_id, "same trace");
    assert_ne!(sent.parent_id, parent.parent_id, "a child span");
    assert!(
        seen.contains_key("x-flotilla-deadline-ms"),
        "the policy timeout travels as a deadline"
    );
}

#[tokio::test]
async fn a_post_answered_503_is_not_retried_but_a_get_is() {
    let calls = counter();
    let c = calls.clone();
    let c2 = calls.clone();
    let up = serve(
        Router::new().route(
            "/x",
            post(move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE
            })
            .get(move || async move {
                c2.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE
            }),
        ),
    )
    .await;
    let policies = PolicySet::from_toml("[defaults]\nbreaker = { enabled = false }\nretry = { base_delay = \"1ms\", max_delay = \"1ms\" }").unwrap();
    let client = ServiceClient::builder(discovery(&[("x", vec![up])]))
        .policies(policies)
        .build();
    let err = client.service("x").post("/x").send().await.unwrap_err();
    assert!(matches!(err, Error::Status { status, .. } if status == 503));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    client.service("x").get("/x").send().await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1 + 3);
}

#[tokio::test]
async fn typed_errors_name_what_went_wrong() {
    let client = ServiceClient::new(discovery(&[
        ("nobody", vec![]),
        ("gone", vec![closed_port().await]),
    ]));
    let e = client.service("nobody").get("/").send().await.unwrap_err();
    assert!(matches!(e, Error::NoHealthyInstance { .. }), "{e}");
    assert_eq!(e.class().kind.http_status(), 503);

    let e = client.service("gone").get("/").send().await.unwrap_err();
    assert!(matches!(e, Error::Transport { connect: true, .. }), "{e}");

    let e = client
        .service("Not A Name")
        .get("/")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");

    let missing = serve(Router::new()).await;
    let client = ServiceClient::new(discovery(&[("users", vec![missing])]));
    let e = client
        .service("users")
        .get("/users/1")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Status { status, .. } if status == 404),
        "{e}"
    );
}

#[tokio::test]
async fn an_open_breaker_fails_fast_without_calling_the_upstream() {
    let calls = counter();
    let c = calls.clone();
    let up = serve(Router::new().route(
        "/",
        get(move || async move {
            c.fetch_add(1, Ordering::SeqCst);
            StatusCode::INTERNAL_SERVER_ERROR
        }),
    ))
    .await;
    let policies = PolicySet::from_toml(
        "[defaults]\nbreaker = { consecutive_failures = 2, open_duration = \"1h\" }",
    )
    .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let client = ServiceClient::builder(discovery(&[("flaky", vec![up])]))
        .policies(policies)
        .metrics(&mut registry)
        .build();
    for _ in 0..2 {
        client.service("flaky").get("/").send().await.unwrap_err();
    }
    let e = client.service("flaky").get("/").send().await.unwrap_err();
    assert!(matches!(e, Error::CircuitOpen { .. }), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = flotilla_testkit::prometheus::parse(&text).unwrap();
    let value = |name: &str| {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum::<f64>()
    };
    assert_eq!(
        value("flotilla_resilience_breaker_transitions_total"),
        1.0,
        "{text}"
    );
    assert_eq!(value("flotilla_resilience_breaker_state"), 1.0);
    assert_eq!(value("flotilla_resilience_rejections_total"), 1.0);
}

#[tokio::test]
async fn an_oversized_response_fails_the_call_once_without_retrying() {
    let calls = counter();
    let seen = calls.clone();
    let up = serve(Router::new().route(
        "/big",
        get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async { vec![b'x'; 64 * 1024] }
        }),
    ))
    .await;
    let client = ServiceClient::builder(discovery(&[("files", vec![up])]))
        .max_response_bytes(4 * 1024)
        .build();
    let err = client
        .service("files")
        .get("/big")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { limit: 4096 }),
        "{err:?}"
    );
    assert!(!err.class().retryable);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a too-large answer is not retried"
    );

    let roomy = ServiceClient::builder(discovery(&[("files", vec![up])]))
        .max_response_bytes(64 * 1024)
        .build();
    let ok = roomy.service("files").get("/big").send().await.unwrap();
    assert_eq!(ok.body.len(), 64 * 1024);
}
