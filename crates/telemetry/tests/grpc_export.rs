//! Export over OTLP/gRPC: a real gRPC server implementing the collector's `TraceService`
//! (the `opentelemetry-proto` tonic server) receives a service's spans, and the trace id a
//! problem body names is the exported span's.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::routing::get;
use flotilla::testing::TestService;
use flotilla::{Microservice, Problem};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use support::{grpc_collector, hex, install_grpc, receive_until, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_server_span_reaches_a_grpc_collector_with_the_problems_trace_id() {
    let (url, mut spans) = grpc_collector().await;
    install_grpc(&url, "grpc-test");
    let routes = Router::new().route(
        "/orders/{id}",
        get(|| async { Err::<(), _>(Problem::not_found("no such order")) }),
    );
    let svc = TestService::start(Microservice::builder("orders").unwrap().routes(routes)).await;
    let res = svc.get("/orders/7").await;
    assert_eq!(res.status, 404);
    let trace_id = res.json()["trace_id"].as_str().unwrap().to_owned();
    flotilla_telemetry::flush();

    let got = receive_until(&mut spans, |s| {
        s.iter().any(|s| text(s, "http.route").is_some())
    })
    .await;
    let span = got
        .iter()
        .find(|s| text(s, "http.route").is_some())
        .unwrap();
    assert_eq!(hex(&span.trace_id), trace_id);
    assert_eq!(span.name, "GET /orders/{id}");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(text(span, "http.route").as_deref(), Some("/orders/{id}"));
    assert_eq!(
        text(span, "http.response.status_code").as_deref(),
        Some("404")
    );
    assert!(flotilla_telemetry::metrics::exported_spans() >= 1);
    svc.stop().await.unwrap();
}
