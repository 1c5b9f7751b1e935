//! Upstream failures map to 502/504/503 problem+json, and the breaker opens after the threshold.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback port nothing listens on.
async fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn one_route(url: &str, extra: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{url}\"]\nbreaker_failures = 3\nbreaker_open_for = \"1h\"\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"u\"\n{extra}"
    )
}

fn assert_problem(r: &Resp, status: u16) {
    assert_eq!(r.status, status);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(r.json()["request_id"], id);
    assert!(
        !String::from_utf8_lossy(&r.body).contains("127.0.0.1"),
        "no internal detail"
    );
}

#[tokio::test]
async fn refused_connections_are_502_and_open_the_breaker_after_the_threshold() {
    let gw = gateway(&one_route(&closed_port().await, "")).await;
    for _ in 0..3 {
        assert_problem(&get(&gw, "/x", &[]).await, 502);
    }
    let open = get(&gw, "/x", &[]).await;
    assert_problem(&open, 503);
    let admin = gw.gateway.admin_router();
    let resp = tower::ServiceExt::oneshot(
        admin,
        http::Request::get("/upstreams")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["upstreams"][0]["instances"][0]["breaker"], "open");
}

#[tokio::test]
async fn slow_upstreams_time_out_with_504() {
    let slow = Router::new().route(
        "/slow",
        route_get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let url = upstream(slow).await;
    let gw = gateway(&one_route(&url, "timeout = \"200ms\"")).await;
    assert_problem(&get(&gw, "/slow", &[]).await, 504);
}

#[tokio::test]
async fn an_upstream_that_resets_before_answering_is_502() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            // Close without answering: a protocol error for the gateway.
            drop(s);
        }
    });
    let gw = gateway(&one_route(&format!("http://{addr}"), "")).await;
    assert_problem(&get(&gw, "/x", &[]).await, 502);
}

#[tokio::test]
async fn an_upstream_that_resets_mid_body_truncates_the_response() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial";
        s.write_all(head).await.unwrap();
        drop(s);
    });
    let gw = gateway(&one_route(&format!("http://{addr}"), "")).await;
    let uri: http::Uri = format!("http://{}/x", gw.addr).parse().unwrap();
    let resp = client().get(uri).await.unwrap();
    assert_eq!(resp.status(), 200, "the head was already sent");
    let body = http_body_util::BodyExt::collect(resp.into_body()).await;
    assert!(
        body.is_err(),
        "the client must see the body fail, not a short success"
    );
}

#[tokio::test]
async fn idempotent_requests_retry_on_another_instance() {
    let good = echo_upstream().await;
    let bad = closed_port().await;
    let cfg = format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{bad}\", \"{good}\"]\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"u\"\nretries = 1"
    );
    let gw = gateway(&cfg).await;
    for _ in 0..4 {
        assert_eq!(get(&gw, "/x", &[]).await.status, 200);
    }
}
