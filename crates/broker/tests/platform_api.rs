//! The endpoints the platform backend relies on: the bus description, the multi-topic
//! publish, batched settles, fenced receipts (a problem type, not text) and dead-letter
//! reasons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{call, declare, default_app as app, event, req};

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};

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
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("events[1]: "),
        "names the bad element: {detail}"
    );
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

fn statuses(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn one_request_settles_many_deliveries_each_with_its_own_result() {
    let app = app();
    declare(&app).await;
    let events: Vec<Value> = (1..=3)
        .map(|i| json!({"topic": "t.a", "event": event(&i.to_string())}))
        .collect();
    call(
        &app,
        req("POST", "/api/v1/bus/events", json!({"events": events})),
    )
    .await;
    let pull = json!({"max": 3, "wait_ms": 0});
    let (_, _, body) = call(&app, req("POST", "/api/v1/bus/groups/g/pull", pull)).await;
    let r: Vec<Value> = (0..3)
        .map(|i| body["deliveries"][i]["receipt"].clone())
        .collect();
    // Settles of one request run concurrently: each names another delivery.
    let settles = json!({"settles": [
        {"group": "g", "action": "ack", "receipt": r[0]},
        {"group": "g", "action": "nack", "receipt": r[1], "delay_ms": 0},
        {"group": "g", "action": "reject", "receipt": r[2], "reason": "boom", "failure": "max_deliveries"},
        {"group": "no such group", "action": "ack", "receipt": "x"},
        {"group": "g", "action": "nack", "receipt": "y", "delay_ms": u64::MAX},
    ]});
    let (s, _, body) = call(&app, req("POST", "/api/v1/bus/settle", settles)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(statuses(&body), [204, 204, 204, 400, 400]);
    assert!(
        body["results"][4]["detail"]
            .as_str()
            .unwrap()
            .starts_with("delay_ms ")
    );
    let again = json!({"settles": [{"group": "g", "action": "ack", "receipt": r[0]}]});
    let (_, _, body) = call(&app, req("POST", "/api/v1/bus/settle", again)).await;
    assert_eq!(statuses(&body), [409]);
    assert_eq!(
        body["results"][0]["type"],
        "urn:flotilla:problem:lease-lost"
    );
    let pull = json!({"max": 3, "wait_ms": 0});
    let (_, _, body) = call(&app, req("POST", "/api/v1/bus/groups/g/pull", pull)).await;
    assert_eq!(
        body["deliveries"][0]["attempt"], 2,
        "only the nacked event comes back"
    );
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_settle_batch_beyond_its_cap_is_refused() {
    let items: Vec<Value> = (0..1001)
        .map(|_| json!({"group": "g", "action": "ack", "receipt": "r"}))
        .collect();
    let (s, _, body) = call(
        &app(),
        req("POST", "/api/v1/bus/settle", json!({"settles": items})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("settles 1001 "),
        "{body}"
    );
}
