//! Every duration and count a request carries is bounded: out of bounds is a 400 naming the
//! field, never a silent clamp or an overflow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{call, declare, default_app as app, event, req};

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;

/// Asserts a 400 problem whose detail starts with `field`.
async fn refused(app: &Router, r: Request<Body>, field: &str) {
    let (s, ct, body) = call(app, r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(ct, "application/problem+json");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("{field} ")), "{detail}");
    assert!(detail.contains("must be between"), "{detail}");
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
    refused(
        &app,
        req("POST", "/api/v1/bus/events", batch),
        "events[0]: delay_ms",
    )
    .await;
    let nack = json!({"receipt": "r", "delay_ms": huge});
    refused(
        &app,
        req("POST", "/api/v1/bus/groups/g/nack", nack),
        "delay_ms",
    )
    .await;
}
