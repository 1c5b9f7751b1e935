//! Every duration and count a request carries is bounded: out of bounds is a 400 naming the
//! field, never a silent clamp or an overflow. Also the endpoints the platform backend uses:
//! the bus description, the multi-topic publish, fenced receipts and dead-letter reasons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::call;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use flotilla_broker::{Broker, Options};
use flotilla_bus::MemoryBackend;
use http::{Request, StatusCode};
use serde_json::{Value, json};

fn app() -> Router {
    Broker::new(Options::default(), Arc::new(MemoryBackend::new()))
        .unwrap()
        .router()
}

fn req(method: &str, uri: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn declare(app: &Router) {
    let (s, _, _) = call(
        app,
        req("PUT", "/api/v1/bus/groups/g", json!({"pattern": "t.>"})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// Asserts a 400 problem whose detail starts with `field`.
async fn refused(app: &Router, r: Request<Body>, field: &str) {
    let (s, ct, body) = call(app, r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(ct, "application/problem+json");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("{field} ")), "{detail}");
    assert!(detail.contains("must be between"), "{detail}");
}

fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/s", "type": "t.a", "data": {"n": 1}})
}

#[tokio::test]
async fn a_lease_of_i64_max_milliseconds_is_refused_not_wrapped() {
    let app = app();
    declare(&app).await;
    let huge = i64::MAX as u64;
    let pull = json!({"lease_ms": huge, "wait_ms": 0});
    refused(
        &app,
        req("POST", "/api/v1/bus/groups/g/pull", pull),
        "lease_ms",
    )
    .await;
    let sse = Request::get(format!("/api/v1/bus/groups/g/events?lease_ms={huge}"))
        .body(Body::empty())
        .unwrap();
    refused(&app, sse, "lease_ms").await;
}

#[tokio::test]
async fn pull_counts_and_waits_beyond_their_caps_are_refused() {
    let app = app();
    declare(&app).await;
    let pull = "/api/v1/bus/groups/g/pull";
    refused(&app, req("POST", pull, json!({"max": 0})), "max").await;
    refused(&app, req("POST", pull, json!({"max": 257})), "max").await;
    refused(
        &app,
        req("POST", pull, json!({"wait_ms": 30_001})),
        "wait_ms",
    )
    .await;
    let sse = Request::get("/api/v1/bus/groups/g/events?max_in_flight=257")
        .body(Body::empty())
        .unwrap();
    refused(&app, sse, "max_in_flight").await;
}

#[tokio::test]
async fn delays_beyond_a_year_are_refused_on_publish_and_nack() {
    let app = app();
    declare(&app).await;
    let huge = u64::MAX;
    let one = Request::post(format!("/api/v1/bus/topics/t.a/events?delay_ms={huge}"))
        .header("content-type", "application/cloudevents+json")
        .body(Body::from(event("1").to_string()))
        .unwrap();
    refused(&app, one, "delay_ms").await;
    let batch = json!({"events": [{"topic": "t.a", "event": event("2"), "delay_ms": huge}]});
    refused(&app, req("POST", "/api/v1/bus/events", batch), "delay_ms").await;
    let nack = json!({"receipt": "r", "delay_ms": huge});
    refused(
        &app,
        req("POST", "/api/v1/bus/groups/g/nack", nack),
        "delay_ms",
    )
    .await;
}

#[tokio::test]
async fn the_description_names_the_backend_its_capabilities_and_limits() {
    let (s, _, body) = call(
        &app(),
        Request::get("/api/v1/bus").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["backend"], "memory");
    assert_eq!(body["capabilities"]["fenced_receipts"], true);
    assert_eq!(body["limits"]["max_lease_ms"], 86_400_000);
}

#[tokio::test]
async fn one_request_publishes_to_many_topics_with_outcomes_in_order() {
    let app = app();
    declare(&app).await;
    let batch = json!({"events": [
        {"topic": "t.a", "event": event("1")},
        {"topic": "t.b", "event": event("2")},
        {"topic": "t.a", "event": event("1")},
    ]});
    let (s, _, body) = call(&app, req("POST", "/api/v1/bus/events", batch)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let outcomes: Vec<&str> = body["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["stored", "stored", "duplicate"]);
    let pull = json!({"max": 10, "wait_ms": 0});
    let (_, _, body) = call(&app, req("POST", "/api/v1/bus/groups/g/pull", pull)).await;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_batch_with_a_bad_topic_is_refused_whole() {
    let app = app();
    let batch = json!({"events": [
        {"topic": "t.a", "event": event("1")},
        {"topic": "no spaces", "event": event("2")},
    ]});
    let (s, _, body) = call(&app, req("POST", "/api/v1/bus/events", batch)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (_, _, body) = call(
        &app,
        Request::get("/api/v1/bus/topics")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(body["topics"], json!([]));
}

async fn one_delivery(app: &Router, lease_ms: u64) -> Value {
    declare(app).await;
    let batch = json!({"events": [{"topic": "t.a", "event": event("1")}]});
    call(app, req("POST", "/api/v1/bus/events", batch)).await;
    let pull = json!({"max": 1, "wait_ms": 0, "lease_ms": lease_ms});
    let (_, _, body) = call(app, req("POST", "/api/v1/bus/groups/g/pull", pull)).await;
    body["deliveries"][0].clone()
}

#[tokio::test(start_paused = true)]
async fn a_settle_after_the_lease_ended_answers_the_lease_lost_problem_type() {
    let app = app();
    let d = one_delivery(&app, 1_000).await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let again = json!({"max": 1, "wait_ms": 0});
    let (_, _, body) = call(&app, req("POST", "/api/v1/bus/groups/g/pull", again)).await;
    assert_eq!(
        body["deliveries"][0]["attempt"], 2,
        "redelivered after the lease"
    );
    let ack = json!({"receipt": d["receipt"]});
    let (s, ct, body) = call(&app, req("POST", "/api/v1/bus/groups/g/ack", ack)).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::CONFLICT, "application/problem+json")
    );
    assert_eq!(body["type"], "urn:flotilla:problem:lease-lost");
}

#[tokio::test]
async fn reject_keeps_the_failure_reason_it_is_given() {
    let app = app();
    let d = one_delivery(&app, 30_000).await;
    let reject = json!({"receipt": d["receipt"], "reason": "boom", "failure": "max_deliveries"});
    let (s, _, _) = call(&app, req("POST", "/api/v1/bus/groups/g/reject", reject)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, body) = call(
        &app,
        Request::get("/api/v1/bus/dlq?group=g")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let dl = &body["dead_letters"][0];
    assert_eq!(
        (dl["reason"].as_str(), dl["last_error"].as_str()),
        (Some("max_deliveries"), Some("boom"))
    );
}
