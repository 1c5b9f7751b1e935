//! The HTTP API against the in-memory store: appends with expected versions, 409 problems,
//! reads, size limits, SSE, metrics.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_store::{Options, StoreApi};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use common::{api_with, call, get, one_event, post};

#[tokio::test]
async fn append_honours_expected_version_and_conflicts_are_409_problems() {
    let (app, _) = api_with(Options::default());
    let (s, _, body) = call(
        &app,
        post("/api/v1/streams/order-1", Some("no-stream"), one_event()),
    )
    .await;
    assert_eq!(
        (s, body["last_version"].clone()),
        (StatusCode::CREATED, json!(1))
    );
    let (s, ctype, body) = call(
        &app,
        post("/api/v1/streams/order-1", Some("no-stream"), one_event()),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(
        (body["status"].clone(), body["actual_version"].clone()),
        (json!(409), json!(1))
    );
    let mut with_field = one_event();
    with_field["expected_version"] = json!(1);
    let (s, _, body) = call(&app, post("/api/v1/streams/order-1", None, with_field)).await;
    assert_eq!(
        (s, body["last_version"].clone()),
        (StatusCode::CREATED, json!(2))
    );
}

#[tokio::test]
async fn a_retried_append_with_the_same_ids_is_not_duplicated() {
    let (app, _) = api_with(Options::default());
    let id = uuid::Uuid::now_v7();
    let body = json!({"events": [{"id": id, "type": "Paid", "data": {}}]});
    for _ in 0..2 {
        let (s, _, b) = call(
            &app,
            post("/api/v1/streams/pay-1", Some("any"), body.clone()),
        )
        .await;
        assert_eq!(
            (s, b["last_version"].clone()),
            (StatusCode::CREATED, json!(1))
        );
    }
    let (_, _, read) = call(&app, get("/api/v1/streams/pay-1")).await;
    assert_eq!(read["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn reads_return_streams_both_ways_and_all_by_category() {
    let (app, _) = api_with(Options::default());
    for stream in ["order-1", "user-1", "order-2"] {
        let events = json!({"events": [{"type": "A"}, {"type": "B"}]});
        call(
            &app,
            post(&format!("/api/v1/streams/{stream}"), None, events),
        )
        .await;
    }
    let (s, _, r) = call(
        &app,
        get("/api/v1/streams/order-1?direction=backward&limit=1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (r["events"][0]["version"].clone(), r["next"].clone()),
        (json!(2), json!(1))
    );
    let (_, _, r) = call(&app, get("/api/v1/streams/$all?category=order")).await;
    let streams: Vec<_> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream"].clone())
        .collect();
    assert_eq!(
        streams,
        vec![
            json!("order-1"),
            json!("order-1"),
            json!("order-2"),
            json!("order-2")
        ]
    );
    let (_, _, r) = call(&app, get("/api/v1/streams?limit=2")).await;
    assert_eq!(r["streams"][0]["stream"], json!("order-1"));
    assert_eq!(r["next_after"], json!("order-2"));
    let (_, _, r) = call(&app, get("/api/v1/streams?after=order-2")).await;
    assert_eq!(r["streams"][0]["stream"], json!("user-1"));
    let (_, _, r) = call(&app, get("/api/v1/streams/$all?type=B&after=2")).await;
    assert_eq!(
        r["events"].as_array().unwrap().len(),
        2,
        "B at positions 4 and 6"
    );
}

#[tokio::test]
async fn bad_input_and_oversized_requests_get_problems_naming_the_value() {
    let options = Options {
        max_body_bytes: 512,
        max_events_per_append: 2,
        ..Options::default()
    };
    let (app, _) = api_with(options);
    let (s, ctype, b) = call(&app, post("/api/v1/streams/bad%20id", None, one_event())).await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert!(b["detail"].as_str().unwrap().contains("bad id"), "{b}");
    let (s, _, b) = call(&app, post("/api/v1/streams/o-1", Some("soon"), one_event())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["detail"].as_str().unwrap().contains("soon"), "{b}");
    let big = json!({"events": [{"type": "A", "data": "x".repeat(600)}]});
    let (s, _, _) = call(&app, post("/api/v1/streams/o-1", None, big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let many = json!({"events": [{"type": "A"}, {"type": "A"}, {"type": "A"}]});
    let (s, _, _) = call(&app, post("/api/v1/streams/o-1", None, many)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _, _) = call(&app, get("/api/v1/streams/$all?type=A&category=o")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deleted_streams_answer_404_problems() {
    let (app, _) = api_with(Options::default());
    call(&app, post("/api/v1/streams/doc-1", None, one_event())).await;
    let del = Request::delete("/api/v1/streams/doc-1").header("expected-version", "1");
    let res = app
        .clone()
        .oneshot(del.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (s, ctype, _) = call(&app, get("/api/v1/streams/doc-1")).await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
}

#[tokio::test]
async fn sse_delivers_stored_then_live_events_with_positions_as_ids() {
    let (app, _) = api_with(Options::default());
    call(&app, post("/api/v1/streams/order-1", None, one_event())).await;
    let res = app
        .clone()
        .oneshot(get("/api/v1/streams/$all/subscribe?category=order"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    call(&app, post("/api/v1/streams/order-2", None, one_event())).await;
    let mut text = String::new();
    while text.matches("id: ").count() < 2 {
        let frame = body.frame().await.unwrap().unwrap();
        if let Some(data) = frame.data_ref() {
            text.push_str(std::str::from_utf8(data).unwrap());
        }
    }
    assert!(
        text.contains("id: 1\n") && text.contains("id: 2\n"),
        "{text}"
    );
    assert!(text.contains("event: OrderPlaced"), "{text}");
}

#[tokio::test]
async fn open_subscriptions_end_when_the_server_shuts_down() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let closing = tokio_util::sync::CancellationToken::new();
    let app = StoreApi::new(Options::default(), store)
        .unwrap()
        .end_streams_on(closing.clone())
        .router();
    call(&app, post("/api/v1/streams/order-1", None, one_event())).await;
    let res = app
        .clone()
        .oneshot(get("/api/v1/streams/$all/subscribe"))
        .await
        .unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    let text = String::from_utf8_lossy(first.data_ref().unwrap()).into_owned();
    assert!(text.contains("id: 1\n"), "{text}");
    closing.cancel();
    // The stream ends (instead of idling until the client goes away).
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
}

#[tokio::test]
async fn metrics_count_appends_and_conflicts() {
    let (app, registry) = api_with(Options::default());
    call(
        &app,
        post("/api/v1/streams/m-1", Some("no-stream"), one_event()),
    )
    .await;
    call(
        &app,
        post("/api/v1/streams/m-1", Some("no-stream"), one_event()),
    )
    .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = flotilla_testkit::prometheus::parse(&text).unwrap();
    let value = |name: &str, result: Option<&str>| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && result.is_none_or(|r| s.labels.get("result").map(String::as_str) == Some(r))
            })
            .map(|s| s.value)
    };
    assert_eq!(
        value("flotilla_eventstore_appends_total", Some("ok")),
        Some(1.0)
    );
    assert_eq!(
        value("flotilla_eventstore_appends_total", Some("conflict")),
        Some(1.0)
    );
    assert_eq!(
        value("flotilla_eventstore_appended_events_total", None),
        Some(1.0)
    );
    assert_eq!(
        value("flotilla_eventstore_append_duration_seconds_count", None),
        Some(2.0)
    );
}

#[tokio::test]
async fn subscriptions_list_checkpoints_with_their_lag() {
    let store = Arc::new(MemoryEventStore::new());
    let app = StoreApi::new(Options::default(), store.clone())
        .unwrap()
        .router();
    for _ in 0..3 {
        call(&app, post("/api/v1/streams/p-1", None, one_event())).await;
    }
    store.save_checkpoint("totals", 1).await.unwrap();
    let (s, _, r) = call(&app, get("/api/v1/streams/$subscriptions")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["head"], json!(3));
    assert_eq!(
        r["subscriptions"],
        json!([{"name": "totals", "position": 1, "lag": 2}])
    );
}

#[tokio::test]
async fn subscriptions_beyond_the_cap_get_503_until_one_closes() {
    let (app, _) = api_with(Options {
        max_subscribers: 2,
        ..Options::default()
    });
    let open = || app.clone().oneshot(get("/api/v1/streams/$all/subscribe"));
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);

    let refused = open().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );

    drop(first); // the client went away: its slot is free again
    assert_eq!(open().await.unwrap().status(), StatusCode::OK);
    drop(second);
}

#[test]
fn a_zero_subscriber_cap_is_refused_naming_the_option() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let err = StoreApi::new(
        Options {
            max_subscribers: 0,
            ..Options::default()
        },
        store,
    )
    .unwrap_err();
    assert!(err.to_string().contains("max_subscribers"), "{err}");
}
