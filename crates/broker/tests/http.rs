//! The bus HTTP API end to end over the in-memory backend.
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

fn app(options: Options) -> Router {
    Broker::new(options, Arc::new(MemoryBackend::new()))
        .unwrap()
        .router()
}

fn json_req(method: &str, uri: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn binary_publish_then_pull_then_ack_empties_the_group() {
    let app = app(Options::default());
    let (s, _, _) = call(
        &app,
        json_req(
            "PUT",
            "/api/v1/bus/groups/billing",
            json!({"pattern": "orders.*"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let publish = Request::post("/api/v1/bus/topics/orders.created/events")
        .header("ce-specversion", "1.0")
        .header("ce-id", "o-1")
        .header("ce-source", "/shop")
        .header("ce-type", "orders.created")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"total": 12}"#))
        .unwrap();
    let (s, _, body) = call(&app, publish).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["outcomes"][0],
        json!({"id": "o-1", "outcome": "stored"})
    );
    let pull = json!({"max": 10, "wait_ms": 0});
    let (s, _, body) = call(
        &app,
        json_req("POST", "/api/v1/bus/groups/billing/pull", pull.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let d = &body["deliveries"][0];
    assert_eq!(
        (d["event"]["data"]["total"].as_u64(), d["attempt"].as_u64()),
        (Some(12), Some(1))
    );
    let receipt = d["receipt"].clone();
    let (s, _, _) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/bus/groups/billing/ack",
            json!({"receipt": receipt}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, body) = call(
        &app,
        json_req("POST", "/api/v1/bus/groups/billing/pull", pull),
    )
    .await;
    assert_eq!(body["deliveries"], json!([]));
}

#[tokio::test]
async fn rejected_events_can_be_listed_shown_replayed_and_purged() {
    let app = app(Options::default());
    call(
        &app,
        json_req("PUT", "/api/v1/bus/groups/g", json!({"pattern": "t.>"})),
    )
    .await;
    let events = json!([
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "t.a"},
        {"specversion": "1.0", "id": "2", "source": "/s", "type": "t.a"}
    ]);
    let batch = Request::post("/api/v1/bus/topics/t.a/events")
        .header("content-type", "application/cloudevents-batch+json")
        .body(Body::from(events.to_string()))
        .unwrap();
    assert_eq!(call(&app, batch).await.0, StatusCode::OK);
    let (_, _, body) = call(
        &app,
        json_req("POST", "/api/v1/bus/groups/g/pull", json!({"wait_ms": 0})),
    )
    .await;
    for d in body["deliveries"].as_array().unwrap() {
        let r = json!({"receipt": d["receipt"], "reason": "bad order"});
        let (s, _, _) = call(&app, json_req("POST", "/api/v1/bus/groups/g/reject", r)).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let list = Request::get("/api/v1/bus/dlq?group=g")
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = call(&app, list).await;
    let dls = body["dead_letters"].as_array().unwrap().clone();
    assert_eq!(dls.len(), 2);
    assert_eq!(
        (dls[0]["reason"].as_str(), dls[0]["last_error"].as_str()),
        (Some("rejected"), Some("bad order"))
    );
    let id = dls[0]["id"].as_str().unwrap();
    let show = Request::get(format!("/api/v1/bus/dlq/{id}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&app, show).await.2["event"]["id"],
        dls[0]["event"]["id"]
    );
    let replay = Request::post(format!("/api/v1/bus/dlq/{id}/replay"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, replay).await.0, StatusCode::NO_CONTENT);
    let (_, _, body) = call(
        &app,
        json_req("POST", "/api/v1/bus/groups/g/pull", json!({"wait_ms": 0})),
    )
    .await;
    assert_eq!(
        body["deliveries"].as_array().unwrap().len(),
        1,
        "the replayed event is back"
    );
    let (_, _, body) = call(
        &app,
        json_req("POST", "/api/v1/bus/groups/g/dlq/purge", json!({})),
    )
    .await;
    assert_eq!(body["purged"], 1);
}

#[tokio::test]
async fn bad_requests_answer_problem_json_naming_the_problem() {
    let app = app(Options {
        max_event_bytes: 64,
        ..Options::default()
    });
    let big = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": "x".repeat(100)});
    let req = Request::post("/api/v1/bus/topics/t/events")
        .header("content-type", "application/cloudevents+json")
        .body(Body::from(big.to_string()))
        .unwrap();
    let (s, ct, body) = call(&app, req).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json")
    );
    assert!(
        body["detail"].as_str().unwrap().contains("limit of 64"),
        "{body}"
    );
    let (s, ct, body) = call(
        &app,
        json_req(
            "POST",
            "/api/v1/bus/groups/nobody/pull",
            json!({"wait_ms": 0}),
        ),
    )
    .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    assert!(body["detail"].as_str().unwrap().contains("nobody"));
    let bad = json!({"specversion": "1.0", "source": "/s", "type": "t"});
    let req = Request::post("/api/v1/bus/topics/t/events")
        .header("content-type", "application/cloudevents+json")
        .body(Body::from(bad.to_string()))
        .unwrap();
    let (s, _, body) = call(&app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("`id`"), "{body}");
    let req = Request::get("/api/v1/bus/dlq?limit=many")
        .body(Body::empty())
        .unwrap();
    let (s, ct, _) = call(&app, req).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    let req = Request::post("/api/v1/bus/topics/bad..topic/events")
        .header("content-type", "application/cloudevents+json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::BAD_REQUEST);
}
