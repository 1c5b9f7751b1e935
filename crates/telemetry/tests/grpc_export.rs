//! Export over OTLP/gRPC: a real gRPC server implementing the collector's `TraceService`
//! (the `opentelemetry-proto` tonic server) receives a service's spans, and the trace id a
//! problem body names is the exported span's.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use flotilla::testing::TestService;
use flotilla::{Microservice, Problem};
use flotilla_telemetry::{Logs, Protocol, TracingOptions};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::sync::mpsc;

/// Passes every span of every export to the test.
struct Collector(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        for span in spans {
            let _ = self.0.send(span);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn collector() -> (String, mpsc::UnboundedReceiver<Span>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(incoming),
    );
    (url, rx)
}

fn install(endpoint: &str) {
    let mut opts = TracingOptions::default();
    opts.enabled = true;
    opts.endpoint = Some(endpoint.to_owned());
    opts.protocol = Protocol::Grpc;
    let logs = Logs {
        json: false,
        filter: "warn".into(),
    };
    flotilla_telemetry::init(&logs, &opts, "grpc-test").unwrap();
    assert!(flotilla_telemetry::enabled());
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_server_span_reaches_a_grpc_collector_with_the_problems_trace_id() {
    let (url, mut spans) = collector().await;
    install(&url);
    let routes = Router::new().route(
        "/orders/{id}",
        get(|| async { Err::<(), _>(Problem::not_found("no such order")) }),
    );
    let svc = TestService::start(Microservice::builder("orders").unwrap().routes(routes)).await;
    let res = svc.get("/orders/7").await;
    assert_eq!(res.status, 404);
    let trace_id = res.json()["trace_id"].as_str().unwrap().to_owned();
    flotilla_telemetry::flush();

    // Generous: the export is sent at flush; this only stops a broken exporter hanging the test.
    let span = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let span = spans.recv().await.expect("the collector runs");
            if attribute(&span, "http.route").is_some() {
                return span;
            }
        }
    })
    .await
    .expect("the server span is exported over gRPC");
    assert_eq!(hex(&span.trace_id), trace_id);
    assert_eq!(span.name, "GET /orders/{id}");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(
        attribute(&span, "http.route"),
        Some(&Value::StringValue("/orders/{id}".into()))
    );
    let status = match attribute(&span, "http.response.status_code") {
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("no status code: {other:?}"),
    };
    assert_eq!(status, "404");
    assert!(flotilla_telemetry::metrics::exported_spans() >= 1);
    svc.stop().await.unwrap();
}
