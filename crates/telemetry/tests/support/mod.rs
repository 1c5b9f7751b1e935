//! A real OTLP/gRPC receiver: a tonic server implementing the collector's `TraceService` that
//! hands every span it receives to the test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use flotilla_telemetry::{Logs, Protocol, TracingOptions};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;

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

/// Starts the receiver on 127.0.0.1:0; its URL and the spans it receives.
pub async fn grpc_collector() -> (String, mpsc::UnboundedReceiver<Span>) {
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

/// Exports this process's spans over gRPC to `endpoint`, every trace sampled.
pub fn install_grpc(endpoint: &str, service: &str) {
    let mut opts = TracingOptions::default();
    opts.enabled = true;
    opts.endpoint = Some(endpoint.to_owned());
    opts.protocol = Protocol::Grpc;
    let logs = Logs {
        json: false,
        filter: "warn".into(),
    };
    flotilla_telemetry::init(&logs, &opts, service).unwrap();
    assert!(flotilla_telemetry::enabled());
}

/// Receives spans until `wanted` says it has them all. The timeout only keeps a broken
/// exporter from hanging the test; the spans are sent at the flush before this is called.
pub async fn receive_until(
    spans: &mut mpsc::UnboundedReceiver<Span>,
    wanted: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !wanted(&got) {
            got.push(spans.recv().await.expect("the collector runs"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("spans never arrived; got {got:?}"));
    got
}

/// An attribute's value.
pub fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// An attribute's value as text (numbers and flags written out).
pub fn text(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key)? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(n) => Some(n.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Lower-case hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
