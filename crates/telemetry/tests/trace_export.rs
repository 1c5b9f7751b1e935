//! One request through the gateway → service A → service B (over `ServiceClient`) → an event
//! B publishes → its consumer C, exported to a real OTLP/HTTP receiver this test runs,
//! decoded with the `opentelemetry-proto` types: one trace, each span the child of the one
//! before, the consumer also linked to the producer. Then, with the receiver stopped,
//! requests keep succeeding and the dropped-span counter rises.
//!
//! The exporter is process-wide, so this binary holds this one scenario.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use flotilla::Microservice;
use flotilla::client::ServiceClient;
use flotilla::core::{CloudEvent, ServiceInstance, ServiceName};
use flotilla::testing::TestService;
use flotilla_bus::{Bus, MemoryBackend};
use flotilla_discovery::StaticDiscovery;
use flotilla_telemetry::{Logs, Protocol, TracingOptions};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Received = Arc<Mutex<Vec<Span>>>;

/// A minimal OTLP/HTTP trace receiver; stops listening when `stop` is cancelled.
async fn receiver(stop: CancellationToken) -> (String, Received) {
    let spans: Received = Arc::default();
    let sink = spans.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| async move {
            let req = ExportTraceServiceRequest::decode(body).expect("an OTLP trace request");
            let mut all = sink.lock().unwrap();
            for rs in req.resource_spans {
                for ss in rs.scope_spans {
                    all.extend(ss.spans);
                }
            }
            (
                [("content-type", "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap()
    });
    (url, spans)
}

fn install(endpoint: &str) {
    let mut opts = TracingOptions::default();
    opts.enabled = true;
    opts.endpoint = Some(endpoint.to_owned());
    opts.protocol = Protocol::HttpProtobuf;
    opts.export_timeout = std::time::Duration::from_secs(2);
    let logs = Logs {
        json: false,
        filter: "warn".into(),
    };
    flotilla_telemetry::init(&logs, &opts, "trace-test").unwrap();
    assert!(flotilla_telemetry::enabled());
}

fn discovery(service: &str, addr: SocketAddr) -> Arc<StaticDiscovery> {
    let d = StaticDiscovery::new();
    let name = ServiceName::new(service).unwrap();
    let instance = ServiceInstance::new(name.clone(), addr.ip().to_string(), addr.port());
    d.set_passing(&name, vec![instance]);
    Arc::new(d)
}

/// Service B: publishes `orders.placed` on the bus for every order.
async fn service_b(bus: Bus) -> TestService {
    let routes = Router::new().route(
        "/orders",
        post(move || async move {
            let event = CloudEvent::new("/b", "orders.placed").with_json(serde_json::json!({}));
            bus.publish(event).await.unwrap();
            "placed"
        }),
    );
    TestService::start(Microservice::builder("b").unwrap().routes(routes)).await
}

/// Service A: calls B through `ServiceClient`, passing the request's context on.
async fn service_a(b: SocketAddr) -> TestService {
    let client = ServiceClient::new(discovery("b", b));
    let routes = Router::new().route(
        "/checkout",
        get(move |headers: HeaderMap| async move {
            let sent = client.service("b").post("/orders").propagate(&headers);
            sent.send().await.unwrap().text()
        }),
    );
    TestService::start(Microservice::builder("a").unwrap().routes(routes)).await
}

async fn gateway(a: SocketAddr, stop: CancellationToken) -> SocketAddr {
    let toml = format!(
        "[[upstreams]]\nname = \"a\"\nurls = [\"http://{a}\"]\n\n\
         [[routes]]\nname = \"checkout\"\nprefix = \"/checkout\"\nupstream = \"a\"\n"
    );
    let opts = flotilla_gateway::GatewayOptions::from_toml(&toml).unwrap();
    let gw = flotilla_gateway::Gateway::new(opts, Arc::new(StaticDiscovery::new())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { gw.serve(listener, stop).await.unwrap() });
    addr
}

async fn get_status(url: &str) -> u16 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    client
        .get(url.parse().unwrap())
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Exports what is queued; `force_flush` blocks until the receiver answered.
async fn flush() {
    tokio::task::spawn_blocking(flotilla_telemetry::flush)
        .await
        .unwrap();
}

fn named<'a>(spans: &'a [Span], name: &str, kind: SpanKind) -> &'a Span {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && s.kind == kind as i32)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {kind:?} span {name:?} in {:#?}",
        names(spans)
    );
    found[0]
}

fn names(spans: &[Span]) -> Vec<(String, i32)> {
    spans.iter().map(|s| (s.name.clone(), s.kind)).collect()
}

fn attr(span: &Span, key: &str) -> String {
    let kv = span.attributes.iter().find(|kv| kv.key == key);
    match kv.and_then(|kv| kv.value.as_ref()?.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        other => panic!("{key} on {:?}: {other:?}", span.name),
    }
}

fn assert_child(child: &Span, parent: &Span) {
    assert_eq!(
        child.trace_id, parent.trace_id,
        "{} in {}'s trace",
        child.name, parent.name
    );
    assert_eq!(
        child.parent_span_id, parent.span_id,
        "{} under {}",
        child.name, parent.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_gateway_services_and_bus_is_one_trace() {
    let receiver_stop = CancellationToken::new();
    let (endpoint, spans) = receiver(receiver_stop.clone()).await;
    install(&endpoint);

    let bus = Bus::new(Arc::new(MemoryBackend::new()));
    let (consumed_tx, mut consumed) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let _sub = bus
        .subscribe("orders.placed")
        .group("c")
        .shutdown_on(&shutdown)
        .handler(move |msg| {
            let tx = consumed_tx.clone();
            async move {
                tx.send(msg.event.id.clone()).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    let b = service_b(bus.clone()).await;
    let a = service_a(b.addr).await;
    let gw = gateway(a.addr, shutdown.clone()).await;

    assert_eq!(get_status(&format!("http://{gw}/checkout")).await, 200);
    consumed.recv().await.unwrap();
    // The consumer's span ends once its delivery is settled: flush until it arrived.
    for _ in 0..50 {
        flush().await;
        let done = spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.name == "process orders.placed");
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    let spans = spans.lock().unwrap().clone();

    let gw_span = named(&spans, "GET", SpanKind::Server);
    assert!(
        gw_span.parent_span_id.is_empty(),
        "the gateway starts the trace"
    );
    assert_eq!(attr(gw_span, "http.route"), "checkout");
    assert_eq!(attr(gw_span, "http.response.status_code"), "200");
    let attempt = named(&spans, "GET", SpanKind::Client);
    assert_child(attempt, gw_span);
    assert_eq!(attr(attempt, "http.request.resend_count"), "0");
    assert_eq!(attr(attempt, "server.address"), "127.0.0.1");
    let a_server = named(&spans, "GET /checkout", SpanKind::Server);
    assert_child(a_server, attempt);
    let a_call = named(&spans, "POST", SpanKind::Client);
    assert_child(a_call, a_server);
    assert_eq!(attr(a_call, "server.address"), "b");
    let b_server = named(&spans, "POST /orders", SpanKind::Server);
    assert_child(b_server, a_call);
    let publish = named(&spans, "publish orders.placed", SpanKind::Producer);
    assert_child(publish, b_server);
    assert_eq!(attr(publish, "messaging.system"), "memory");
    assert_eq!(attr(publish, "messaging.destination.name"), "orders.placed");
    let process = named(&spans, "process orders.placed", SpanKind::Consumer);
    assert_child(process, publish);
    assert_eq!(attr(process, "messaging.consumer.group.name"), "c");
    assert_eq!(attr(process, "messaging.operation.type"), "process");
    assert_eq!(process.links.len(), 1);
    assert_eq!(
        process.links[0].span_id, publish.span_id,
        "the consumer links its producer"
    );

    // The collector goes away: requests still succeed, their spans are counted as dropped.
    receiver_stop.cancel();
    let before = flotilla_telemetry::metrics::dropped_spans();
    for _ in 0..3 {
        assert_eq!(get_status(&format!("http://{gw}/checkout")).await, 200);
        consumed.recv().await.unwrap();
    }
    flush().await;
    assert!(
        flotilla_telemetry::metrics::dropped_spans() > before,
        "spans the collector never took are counted"
    );
    shutdown.cancel();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
