//! W3C trace context through `ServiceClient`: what an upstream receives for what the incoming
//! request carried.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use flotilla_client::ServiceClient;
use flotilla_core::TraceParent;
use support::{discovery, serve};

const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

/// Sends one call propagating `incoming` and returns the headers the upstream saw.
async fn forwarded(incoming: &[(&'static str, &str)]) -> HeaderMap {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<HeaderMap>();
    let up = serve(Router::new().route(
        "/x",
        get(move |h: HeaderMap| async move {
            tx.send(h).unwrap();
            "ok"
        }),
    ))
    .await;
    let client = ServiceClient::new(discovery(&[("b", vec![up])]));
    let mut headers = HeaderMap::new();
    for (k, v) in incoming {
        headers.append(*k, HeaderValue::from_str(v).unwrap());
    }
    client
        .service("b")
        .get("/x")
        .propagate(&headers)
        .send()
        .await
        .unwrap();
    rx.recv().await.unwrap()
}

fn sent_parent(h: &HeaderMap) -> TraceParent {
    assert_eq!(h.get_all("traceparent").iter().count(), 1);
    TraceParent::parse(h["traceparent"].to_str().unwrap()).unwrap()
}

#[tokio::test]
async fn tracestate_lines_travel_combined_with_the_trace() {
    let h = forwarded(&[
        ("traceparent", TP),
        ("tracestate", "foo=1,bar=2"),
        ("tracestate", "rojo=1"),
    ])
    .await;
    assert_eq!(
        sent_parent(&h).trace_id_hex(),
        "12345678901234567890123456789012"
    );
    assert_eq!(h["tracestate"], "foo=1,bar=2,rojo=1");
}

#[tokio::test]
async fn a_duplicated_traceparent_starts_a_new_trace_without_tracestate() {
    let other = "00-12345678901234567890123456789011-1234567890123456-01";
    let h = forwarded(&[
        ("traceparent", TP),
        ("traceparent", other),
        ("tracestate", "foo=1"),
    ])
    .await;
    let sent = sent_parent(&h);
    assert_ne!(sent.trace_id_hex(), "12345678901234567890123456789012");
    assert_ne!(sent.trace_id_hex(), "12345678901234567890123456789011");
    assert!(h.get("tracestate").is_none());
}

#[tokio::test]
async fn an_invalid_tracestate_is_dropped_and_the_trace_kept() {
    let h = forwarded(&[
        ("traceparent", TP),
        ("tracestate", "foo=1"),
        ("tracestate", "FOO=2"),
    ])
    .await;
    assert_eq!(
        sent_parent(&h).trace_id_hex(),
        "12345678901234567890123456789012"
    );
    assert!(h.get("tracestate").is_none());
}

#[tokio::test]
async fn the_random_flag_of_level_2_is_passed_on() {
    let h = forwarded(&[(
        "traceparent",
        "00-12345678901234567890123456789012-1234567890123456-02",
    )])
    .await;
    let sent = sent_parent(&h);
    assert_eq!(sent.flags, 0x02);
    assert_ne!(hex(&sent.parent_id), "1234567890123456");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
