//! The operations a remote event store needs beyond append and read: stream versions,
//! truncation, snapshots, checkpoints, the live head, paging limits, and problems that carry
//! what a client needs to rebuild the contract's error.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use flotilla_store::Options;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use common::{api_with, call, get, one_event, post, send};

#[tokio::test]
async fn stream_version_is_null_before_the_first_append_and_404_once_deleted() {
    let (app, _) = api_with(Options::default());
    let (s, _, b) = call(&app, get("/api/v1/streams/acct-1/version")).await;
    assert_eq!((s, b["version"].clone()), (StatusCode::OK, json!(null)));
    call(&app, post("/api/v1/streams/acct-1", None, one_event())).await;
    call(&app, post("/api/v1/streams/acct-1", None, one_event())).await;
    let (_, _, b) = call(&app, get("/api/v1/streams/acct-1/version")).await;
    assert_eq!(b["version"], json!(2));
    let del = send("DELETE", "/api/v1/streams/acct-1", json!(null));
    assert_eq!(call(&app, del).await.0, StatusCode::NO_CONTENT);
    let (s, _, b) = call(&app, get("/api/v1/streams/acct-1/version")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        (b["code"].clone(), b["stream"].clone()),
        (json!("stream_deleted"), json!("acct-1"))
    );
}

#[tokio::test]
async fn truncate_is_a_post_that_removes_old_events_and_names_a_bad_field() {
    let (app, _) = api_with(Options::default());
    let three = json!({"events": [{"type": "A"}, {"type": "A"}, {"type": "A"}]});
    call(&app, post("/api/v1/streams/log-1", None, three)).await;
    let (s, _, b) = call(
        &app,
        send(
            "POST",
            "/api/v1/streams/log-1/truncate",
            json!({"before": 3}),
        ),
    )
    .await;
    assert_eq!((s, b["removed"].clone()), (StatusCode::OK, json!(2)));
    let (_, _, b) = call(&app, get("/api/v1/streams/log-1")).await;
    assert_eq!(b["events"].as_array().unwrap().len(), 1);
    let (s, ctype, b) = call(
        &app,
        send(
            "POST",
            "/api/v1/streams/log-1/truncate",
            json!({"before": "x"}),
        ),
    )
    .await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert!(b["detail"].as_str().unwrap().contains("before"), "{b}");
    let (s, _, _) = call(&app, get("/api/v1/streams/log-1/truncate")).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "a write is never a GET");
}

#[tokio::test]
async fn snapshots_are_put_and_got_and_one_beyond_the_version_is_a_400() {
    let (app, _) = api_with(Options::default());
    let (s, _, b) = call(&app, get("/api/v1/streams/cart-1/snapshot")).await;
    assert_eq!((s, b["snapshot"].clone()), (StatusCode::OK, json!(null)));
    call(&app, post("/api/v1/streams/cart-1", None, one_event())).await;
    let put = |body| send("PUT", "/api/v1/streams/cart-1/snapshot", body);
    let (s, _, _) = call(&app, put(json!({"version": 1, "state": {"items": 2}}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, b) = call(&app, get("/api/v1/streams/cart-1/snapshot")).await;
    assert_eq!(
        b["snapshot"],
        json!({"stream": "cart-1", "version": 1, "state": {"items": 2}})
    );
    let (s, _, b) = call(&app, put(json!({"version": 9, "state": null}))).await;
    assert_eq!(
        (s, b["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_input"))
    );
    let (s, _, b) = call(&app, put(json!({"version": 1}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["detail"].as_str().unwrap().contains("state"), "{b}");
}

#[tokio::test]
async fn checkpoints_are_saved_loaded_and_listed_by_subscriber_name() {
    let (app, _) = api_with(Options::default());
    let path = "/api/v1/streams/$subscriptions/totals%2Fv2";
    let (s, _, b) = call(&app, get(path)).await;
    assert_eq!((s, b["position"].clone()), (StatusCode::OK, json!(null)));
    let (s, _, _) = call(&app, send("PUT", path, json!({"position": 7}))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, b) = call(&app, get(path)).await;
    assert_eq!(
        (b["name"].clone(), b["position"].clone()),
        (json!("totals/v2"), json!(7))
    );
    let (_, _, b) = call(&app, get("/api/v1/streams/$subscriptions")).await;
    assert_eq!(b["subscriptions"][0]["name"], json!("totals/v2"));
    let bad = "/api/v1/streams/$subscriptions/two%20words";
    let (s, _, b) = call(&app, send("PUT", bad, json!({"position": 1}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["detail"].as_str().unwrap().contains("two words"), "{b}");
}

#[tokio::test]
async fn the_head_stream_sends_the_current_head_then_each_move() {
    let (app, _) = api_with(Options::default());
    call(&app, post("/api/v1/streams/h-1", None, one_event())).await;
    let res = app
        .clone()
        .oneshot(get("/api/v1/streams/$head"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut text = String::new();
    let mut appended = false;
    while !text.contains("data: 2\n") {
        let frame = body.frame().await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
        if text.contains("data: 1\n") && !appended {
            call(&app, post("/api/v1/streams/h-1", None, one_event())).await;
            appended = true;
        }
    }
    let (one, two) = (
        text.find("data: 1\n").unwrap(),
        text.find("data: 2\n").unwrap(),
    );
    assert!(one < two && text.starts_with("event: head\n"), "{text}");
}

#[tokio::test]
async fn problems_carry_the_code_and_the_data_of_the_error() {
    let (app, _) = api_with(Options::default());
    let id = uuid::Uuid::now_v7();
    let body = |data| json!({"events": [{"id": id, "type": "Paid", "data": data}]});
    call(&app, post("/api/v1/streams/pay-1", None, body(json!(1)))).await;
    let (s, _, b) = call(
        &app,
        post("/api/v1/streams/pay-1", Some("no-stream"), one_event()),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        (
            &b["code"],
            &b["stream"],
            &b["expected_version"],
            &b["actual_version"]
        ),
        (
            &json!("wrong_expected_version"),
            &json!("pay-1"),
            &json!({"kind": "no_stream"}),
            &json!(1)
        )
    );
    let (s, _, b) = call(&app, post("/api/v1/streams/pay-1", None, body(json!(2)))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        (&b["code"], &b["event_id"]),
        (&json!("idempotency_violation"), &json!(id))
    );
}

#[tokio::test]
async fn reads_say_the_page_size_applied_and_bad_queries_are_problems_naming_the_field() {
    let (app, _) = api_with(Options {
        max_read_limit: 2,
        ..Options::default()
    });
    let three = json!({"events": [{"type": "A"}, {"type": "A"}, {"type": "A"}]});
    call(&app, post("/api/v1/streams/p-1", None, three)).await;
    let (_, _, b) = call(&app, get("/api/v1/streams/$all?limit=50")).await;
    assert_eq!(
        (b["limit"].clone(), b["events"].as_array().unwrap().len()),
        (json!(2), 2)
    );
    let (_, _, b) = call(&app, get("/api/v1/streams/p-1?limit=50")).await;
    assert_eq!(
        (b["limit"].clone(), b["next"].clone()),
        (json!(2), json!(3))
    );
    let (s, ctype, b) = call(&app, get("/api/v1/streams/$all?after=soon")).await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert!(b["detail"].as_str().unwrap().contains("after"), "{b}");
}
