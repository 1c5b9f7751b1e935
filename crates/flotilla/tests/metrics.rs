//! `/metrics` as scrapers see it: the Prometheus text format 0.0.4 unless the scraper prefers
//! OpenMetrics, and clean under Prometheus's own linter (`promtool check metrics`).
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::routing::get;
use flotilla::Microservice;
use flotilla::testing::{TestResponse, TestService};
use flotilla_testkit::prometheus;
use http::Method;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Unit;

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A service with every kind of family the SDK serves: HTTP and process metrics, the bus's,
/// and a user counter with a unit.
async fn start() -> TestService {
    let builder = Microservice::builder("users")
        .unwrap()
        .routes(Router::new().route("/users/{id}", get(|| async { "user" })));
    let _bus = builder.metrics().bus();
    let payload = Counter::<u64>::default();
    builder.metrics().register(|r| {
        r.register_with_unit("payload", "Payload received", Unit::Bytes, payload.clone());
    });
    payload.inc_by(42);
    let svc = TestService::start(builder).await;
    svc.get("/users/7").await;
    svc
}

async fn scrape(svc: &TestService, accept: Option<&str>) -> (TestResponse, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    let res = svc.call(Method::GET, "/metrics", &headers, "").await;
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    (res, text)
}

#[tokio::test]
async fn a_scrape_without_preference_gets_the_text_format_and_passes_promtool() {
    let svc = start().await;
    let (res, text) = scrape(&svc, None).await;
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.contains("# HELP http_requests_total "), "{text}");
    assert!(
        text.contains("# TYPE payload_bytes_total counter"),
        "{text}"
    );
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    let samples = prometheus::parse(&text).unwrap();
    let requests = prometheus::sum(&samples, "http_requests_total", &[("route", "/users/{id}")]);
    assert_eq!(requests, 1.0);
    if let Some(verdict) = prometheus::promtool_check(&text, "SDK /metrics (promtool)") {
        verdict.unwrap();
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn prometheus_gets_openmetrics_as_it_asks() {
    let svc = start().await;
    let (res, text) = scrape(&svc, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(
        res.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert_eq!(res.header("vary"), Some("accept"));
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# HELP http_requests "), "{text}");
    let (_, plain) = scrape(&svc, Some("text/plain;version=0.0.4")).await;
    assert!(!plain.contains("# EOF"), "{plain}");
    // Read as the text format, OpenMetrics names a counter's HELP apart from its samples:
    // what promtool flagged before `/metrics` negotiated (and proof that the check can fail).
    if let Some(verdict) = prometheus::promtool_check(&text, "SDK /metrics (promtool)") {
        let problems = verdict.unwrap_err();
        assert!(
            problems.contains("http_requests_total no help text"),
            "{problems}"
        );
    }
    svc.stop().await.unwrap();
}

/// The bus's families (counters by topic and group, the handler-time histogram) once an
/// event went through a subscription, as a service's `/metrics` would serve them.
#[tokio::test]
async fn the_bus_families_pass_promtool_once_they_have_series() {
    use flotilla::events::{Bus, MemoryBackend};
    use flotilla::metrics::{Format, Metrics};

    let metrics = Metrics::new();
    let bus = Bus::new(std::sync::Arc::new(MemoryBackend::new())).with_metrics(metrics.bus());
    let (tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let _subscription = bus
        .subscribe("orders.*")
        .group("billing")
        .handler(move |_| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
                Ok(())
            }
        })
        .await
        .unwrap();
    bus.publish_json("/shop", "orders.placed", &serde_json::json!({"n": 1}))
        .await
        .unwrap();
    handled.recv().await.unwrap();
    let text = metrics.encode_as(Format::Text);
    assert!(
        text.contains("# TYPE flotilla_bus_delivered_total counter"),
        "{text}"
    );
    if let Some(verdict) = prometheus::promtool_check(&text, "SDK /metrics (promtool)") {
        verdict.unwrap();
    }
}
