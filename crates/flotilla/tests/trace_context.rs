//! W3C trace context as a service built on the SDK sees and passes it on: the request's
//! `RequestContext` and the headers handlers hand to `ServiceClient::propagate`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use flotilla::testing::TestService;
use flotilla::{Microservice, RequestContext};
use http::{HeaderMap, Request};
use http_body_util::Full;

const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

/// What the handler saw: the context's trace and tracestate, and the propagated headers.
async fn seen(ctx: Extension<Arc<RequestContext>>, headers: HeaderMap) -> String {
    let lines = |n| headers.get_all(n).iter().count();
    serde_json::json!({
        "trace": ctx.trace.to_string(),
        "tracestate": ctx.tracestate.as_ref().map(|s| s.to_string()),
        "traceparent_lines": lines("traceparent"),
        "tracestate_header": headers.get("tracestate").map(|v| v.to_str().unwrap().to_owned()),
    })
    .to_string()
}

async fn ask(lines: &[(&str, &str)]) -> serde_json::Value {
    let routes = Router::new().route("/seen", get(seen));
    let svc = TestService::start(Microservice::builder("tc").unwrap().routes(routes)).await;
    let mut req = Request::get(svc.url("/seen"));
    for (k, v) in lines {
        req = req.header(*k, *v);
    }
    let res = svc.send(req.body(Full::new(Bytes::new())).unwrap()).await;
    svc.stop().await.unwrap();
    serde_json::from_slice(&res.body).unwrap()
}

#[tokio::test]
async fn the_trace_continues_with_a_new_span_and_the_combined_tracestate() {
    let v = ask(&[
        ("traceparent", TP),
        ("tracestate", "foo=1"),
        ("tracestate", "bar=2"),
    ])
    .await;
    let trace = v["trace"].as_str().unwrap();
    assert!(trace.starts_with("00-12345678901234567890123456789012-"));
    assert_ne!(&trace[36..52], "1234567890123456", "a new span id");
    assert_eq!(v["tracestate"], "foo=1,bar=2");
    assert_eq!(
        v["tracestate_header"], "foo=1,bar=2",
        "handlers pass on one line"
    );
    assert_eq!(v["traceparent_lines"], 1);
}

#[tokio::test]
async fn a_duplicated_traceparent_starts_a_new_trace_and_drops_tracestate() {
    let other = "00-12345678901234567890123456789011-1234567890123456-01";
    let v = ask(&[
        ("traceparent", TP),
        ("traceparent", other),
        ("tracestate", "foo=1"),
    ])
    .await;
    let trace = v["trace"].as_str().unwrap();
    assert!(
        !trace.contains("1234567890123456789012345678901"),
        "{trace}"
    );
    assert!(v["tracestate"].is_null());
    assert!(v["tracestate_header"].is_null());
    assert_eq!(v["traceparent_lines"], 1);
}

#[tokio::test]
async fn a_future_version_is_continued_as_version_00() {
    let v = ask(&[(
        "traceparent",
        "cc-12345678901234567890123456789012-1234567890123456-01-more",
    )])
    .await;
    assert!(
        v["trace"]
            .as_str()
            .unwrap()
            .starts_with("00-12345678901234567890123456789012-")
    );
}

#[tokio::test]
async fn a_tracestate_with_33_members_is_dropped_but_the_trace_kept() {
    let members: Vec<String> = (1..=33).map(|i| format!("k{i}=v")).collect();
    let v = ask(&[("traceparent", TP), ("tracestate", &members.join(","))]).await;
    assert!(
        v["trace"]
            .as_str()
            .unwrap()
            .starts_with("00-12345678901234567890123456789012-")
    );
    assert!(v["tracestate"].is_null());
}
