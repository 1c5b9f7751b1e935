//! Pull over server-sent events, over the in-memory backend with paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use flotilla_broker::{Broker, Options};
use flotilla_bus::MemoryBackend;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn app(options: Options) -> Router {
    Broker::new(options, Arc::new(MemoryBackend::new()))
        .unwrap()
        .router()
}

async fn send(app: &Router, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A group `g` on `t.>` with `n` events published to `t.a` (ids `e0`, `e1`, ...).
async fn group_with_events(app: &Router, n: usize) {
    let (s, _) = send(
        app,
        "PUT",
        "/api/v1/bus/groups/g",
        json!({"pattern": "t.>"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let events: Vec<Value> = (0..n)
        .map(
            |i| json!({"specversion": "1.0", "id": format!("e{i}"), "source": "/s", "type": "t.a"}),
        )
        .collect();
    let req = Request::post("/api/v1/bus/topics/t.a/events")
        .header("content-type", "application/cloudevents-batch+json")
        .body(Body::from(Value::from(events).to_string()))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
}

/// An open SSE stream, read event by event.
struct Stream {
    body: Body,
    buffer: String,
}

async fn open(app: &Router, query: &str) -> Result<Stream, (StatusCode, String, Value)> {
    let req = Request::get(format!("/api/v1/bus/groups/g/events{query}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    if status != StatusCode::OK {
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        return Err((status, ct, serde_json::from_slice(&bytes).unwrap()));
    }
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Ok(Stream {
        body: res.into_body(),
        buffer: String::new(),
    })
}

impl Stream {
    /// The next event's name and data; keep-alive comments are skipped.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_owned))
                };
                let (Some(event), Some(data)) = (field("event:"), field("data:")) else {
                    continue;
                };
                return (event, serde_json::from_str(&data).unwrap());
            }
            let frame = self
                .body
                .frame()
                .await
                .expect("the stream stays open")
                .unwrap();
            if let Some(chunk) = frame.data_ref() {
                self.buffer.push_str(std::str::from_utf8(chunk).unwrap());
            }
        }
    }

    /// Whether an event arrives within `within` (of paused, auto-advancing time).
    async fn has_next_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.next()).await.is_ok()
    }
}

async fn settle(app: &Router, how: &str, d: &Value) -> StatusCode {
    let uri = format!("/api/v1/bus/groups/g/{how}");
    send(app, "POST", &uri, json!({"receipt": d["receipt"]}))
        .await
        .0
}

async fn pending(app: &Router) -> u64 {
    let (_, body) = send(app, "GET", "/api/v1/bus/groups", Value::Null).await;
    body["groups"][0]["pending"].as_u64().unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_delivery_carries_the_event_its_receipt_and_attempt_and_acks_settle_it() {
    let app = app(Options::default());
    group_with_events(&app, 2).await;
    let mut stream = open(&app, "").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (name, d) = stream.next().await;
        assert_eq!(name, "delivery");
        assert_eq!(
            (d["attempt"].as_u64(), d["topic"].as_str()),
            (Some(1), Some("t.a"))
        );
        ids.push(d["event"]["id"].as_str().unwrap().to_owned());
        assert_eq!(settle(&app, "ack", &d).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(ids, ["e0", "e1"]);
    assert_eq!(pending(&app).await, 0);
}

#[tokio::test(start_paused = true)]
async fn no_more_than_max_in_flight_are_out_until_one_is_settled() {
    let app = app(Options::default());
    group_with_events(&app, 3).await;
    let mut stream = open(&app, "?max_in_flight=2&lease_ms=600000")
        .await
        .unwrap();
    let (_, first) = stream.next().await;
    let (_, second) = stream.next().await;
    assert!(
        !stream.has_next_within(Duration::from_secs(60)).await,
        "a third delivery was sent with two unsettled"
    );
    assert_eq!(settle(&app, "nack", &first).await, StatusCode::NO_CONTENT);
    let (_, third) = stream.next().await;
    assert!(
        !stream.has_next_within(Duration::from_secs(60)).await,
        "settling one freed exactly one slot"
    );
    assert_eq!(settle(&app, "ack", &second).await, StatusCode::NO_CONTENT);
    let (_, fourth) = stream.next().await;
    // The nacked e0 comes back (attempt 2) and e2 arrives, in the backend's order.
    let mut got: Vec<(String, u64)> = [third, fourth]
        .iter()
        .map(|d| {
            (
                d["event"]["id"].as_str().unwrap().to_owned(),
                d["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, [("e0".to_owned(), 2), ("e2".to_owned(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stream_s_deliveries_come_back_after_their_lease() {
    let app = app(Options::default());
    group_with_events(&app, 1).await;
    let mut stream = open(&app, "?lease_ms=5000").await.unwrap();
    let (_, d) = stream.next().await;
    assert_eq!(d["attempt"], 1);
    drop(stream);
    let pull = json!({"wait_ms": 0});
    let (_, body) = send(&app, "POST", "/api/v1/bus/groups/g/pull", pull.clone()).await;
    assert_eq!(
        body["deliveries"],
        json!([]),
        "still leased to the gone client"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    let (_, body) = send(&app, "POST", "/api/v1/bus/groups/g/pull", pull).await;
    let again = &body["deliveries"][0];
    assert_eq!(
        (again["event"]["id"].as_str(), again["attempt"].as_u64()),
        (Some("e0"), Some(2))
    );
}

#[tokio::test(start_paused = true)]
async fn an_unsettled_delivery_frees_its_slot_when_its_lease_ends() {
    let app = app(Options::default());
    group_with_events(&app, 1).await;
    let mut stream = open(&app, "?max_in_flight=1&lease_ms=2000").await.unwrap();
    let (_, first) = stream.next().await;
    // Not settled: after the lease the same event is offered again, on the same stream.
    let (_, again) = stream.next().await;
    assert_eq!(again["event"]["id"], first["event"]["id"]);
    assert_eq!(again["attempt"], 2);
    assert_eq!(
        settle(&app, "ack", &first).await,
        StatusCode::CONFLICT,
        "the old receipt is stale"
    );
    assert_eq!(settle(&app, "ack", &again).await, StatusCode::NO_CONTENT);
}

#[tokio::test(start_paused = true)]
async fn streams_beyond_the_cap_are_refused_503_with_retry_after() {
    let app = app(Options {
        max_sse_streams: 1,
        ..Options::default()
    });
    group_with_events(&app, 0).await;
    let open_one = open(&app, "").await.unwrap();
    let (status, ct, body) = open(&app, "").await.err().expect("the second is refused");
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json")
    );
    assert!(
        body["detail"].as_str().unwrap().contains("at most 1"),
        "{body}"
    );
    drop(open_one);
    // The slot is back once the stream's pump notices the client left.
    let mut reopened = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Ok(s) = open(&app, "").await {
            reopened = Some(s);
            break;
        }
    }
    assert!(reopened.is_some(), "the slot of a closed stream is freed");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_group_or_a_bad_query_is_a_problem_json_error_not_a_stream() {
    let app = app(Options::default());
    let (status, ct, body) = open(&app, "").await.err().unwrap();
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    assert!(body["detail"].as_str().unwrap().contains("\"g\""), "{body}");
    group_with_events(&app, 0).await;
    let (status, ct, _) = open(&app, "?max_in_flight=lots").await.err().unwrap();
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    let (status, _, body) = open(&app, "?lease_ms=0").await.err().unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("lease_ms"),
        "{body}"
    );
}
