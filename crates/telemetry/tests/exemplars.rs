//! Request-duration histograms carry the trace id of a sampled request as an OpenMetrics
//! exemplar; the Prometheus text format 0.0.4, which has no exemplars, shows none; and an
//! unsampled request leaves none.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::routing::get;
use flotilla::Microservice;
use flotilla::testing::TestService;
use flotilla_telemetry::{Logs, Protocol, TracingOptions};
use http::Method;

const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const UNSAMPLED: &str = "00-1bf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

fn install() {
    let mut opts = TracingOptions::default();
    opts.enabled = true;
    // Nothing listens there: the spans are dropped, which is no concern of this test.
    opts.endpoint = Some("http://127.0.0.1:9".into());
    opts.protocol = Protocol::HttpProtobuf;
    let logs = Logs {
        json: false,
        filter: "warn".into(),
    };
    flotilla_telemetry::init(&logs, &opts, "exemplar-test").unwrap();
    assert!(flotilla_telemetry::enabled());
}

fn exemplar_lines<'a>(exposition: &'a str, trace: &str) -> Vec<&'a str> {
    exposition
        .lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_bucket"))
        .filter(|l| l.contains(&format!("# {{trace_id=\"{trace}\"}}")))
        .collect()
}

#[tokio::test]
async fn a_sampled_request_leaves_its_trace_id_as_an_exemplar_in_openmetrics_only() {
    install();
    let routes = Router::new().route("/hello", get(|| async { "hi" }));
    let svc = TestService::start(Microservice::builder("exemplars").unwrap().routes(routes)).await;
    for traceparent in [SAMPLED, UNSAMPLED] {
        let res = svc
            .call(Method::GET, "/hello", &[("traceparent", traceparent)], "")
            .await;
        assert_eq!(res.status, 200);
    }
    let open = svc
        .call(Method::GET, "/metrics", &[("accept", OPENMETRICS)], "")
        .await;
    let open = std::str::from_utf8(&open.body).unwrap().to_owned();
    let sampled = exemplar_lines(&open, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(sampled.len(), 1, "{open}");
    assert!(sampled[0].contains("route=\"/hello\""), "{}", sampled[0]);
    assert!(
        exemplar_lines(&open, "1bf7651916cd43dd8448eb211c80319c").is_empty(),
        "{open}"
    );

    let text = svc.get("/metrics").await;
    let text = std::str::from_utf8(&text.body).unwrap().to_owned();
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("trace_id"), "{text}");
    svc.stop().await.unwrap();
}
