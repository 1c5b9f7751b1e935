//! Every error of the bus API is problem+json, and a 5xx never carries backend error text:
//! the text is logged with the request id instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::call;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use flotilla_broker::{Broker, Options};
use flotilla_bus::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error, Failure, GroupInfo, GroupName,
    GroupSpec, MemoryBackend, Outgoing, PublishOutcome, Receipt, TopicInfo,
};
use flotilla_testkit::logs::CapturedLogs;
use http::{Request, StatusCode};
use tower::ServiceExt;

const SECRET: &str = "redis://app:hunter2@10.0.0.7:6379";

/// The memory backend, except that listing topics finds the server gone and listing groups
/// finds corrupt data, both with text that must not reach a client.
#[derive(Debug)]
struct Failing(MemoryBackend);

#[async_trait]
impl Backend for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), Error> {
        self.0.declare_group(spec).await
    }
    async fn delete_group(&self, group: &GroupName) -> Result<(), Error> {
        self.0.delete_group(group).await
    }
    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, Error> {
        self.0.publish(batch).await
    }
    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        self.0.receive(group, max, lease, wait).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), Error> {
        self.0.ack(receipt).await
    }
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), Error> {
        self.0.nack(receipt, delay).await
    }
    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), Error> {
        self.0.dead_letter(receipt, failure).await
    }
    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, Error> {
        self.0.dlq_list(query).await
    }
    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, Error> {
        self.0.dlq_get(id).await
    }
    async fn dlq_replay(&self, id: &str) -> Result<(), Error> {
        self.0.dlq_replay(id).await
    }
    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, Error> {
        self.0.dlq_purge(group, ids).await
    }
    async fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        Err(Error::Unavailable(format!("cannot reach {SECRET}")))
    }
    async fn groups(&self) -> Result<Vec<GroupInfo>, Error> {
        Err(Error::Backend(format!("corrupt row at {SECRET}")))
    }
}

fn app(options: Options) -> Router {
    Broker::new(options, Arc::new(Failing(MemoryBackend::new())))
        .unwrap()
        .router()
}

#[tokio::test]
async fn a_5xx_says_nothing_internal_and_the_cause_is_logged_with_the_request_id() {
    let logs = CapturedLogs::global();
    let app = app(Options::default());
    for (path, status, request_id) in [
        (
            "/api/v1/bus/topics",
            StatusCode::SERVICE_UNAVAILABLE,
            "req-503-topics",
        ),
        (
            "/api/v1/bus/groups",
            StatusCode::INTERNAL_SERVER_ERROR,
            "req-500-groups",
        ),
    ] {
        let req = Request::get(path)
            .header("x-request-id", request_id)
            .body(Body::empty())
            .unwrap();
        let (s, ct, body) = call(&app, req).await;
        assert_eq!(
            (s, ct.as_str()),
            (status, "application/problem+json"),
            "{path}"
        );
        let text = body.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("10.0.0.7"),
            "{text}"
        );
        assert!(text.contains("request id"), "{text}");
        let logged = logs.contents();
        let line = logged
            .lines()
            .find(|l| l.contains(request_id))
            .unwrap_or_else(|| panic!("no log line with {request_id}: {logged}"));
        assert!(line.contains("10.0.0.7"), "the cause is logged: {line}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = app(Options {
        max_event_bytes: 100,
        max_body_bytes: 1000,
        ..Options::default()
    });
    let req = Request::post("/api/v1/bus/topics/t/events")
        .header("content-type", "application/cloudevents-batch+json")
        .body(Body::from(vec![b' '; 5000]))
        .unwrap();
    let (s, ct, body) = call(&app, req).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json")
    );
    assert_eq!(body["status"], 413, "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
}

#[tokio::test]
async fn path_rejections_and_wrong_methods_are_problems() {
    let app = app(Options::default());
    let req = Request::post("/api/v1/bus/groups/%FF%FE/pull")
        .body(Body::from("{}"))
        .unwrap();
    let (s, ct, body) = call(&app, req).await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert!(body["detail"].as_str().unwrap().contains("UTF-8"), "{body}");
    let req = Request::delete("/api/v1/bus/topics")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("allow"));
}

#[tokio::test(start_paused = true)]
async fn run_stops_on_shutdown_while_the_lag_refresh_keeps_failing() {
    let broker = Broker::new(Options::default(), Arc::new(Failing(MemoryBackend::new()))).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    broker.register_metrics(&mut registry);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn({
        let (b, s) = (broker.clone(), shutdown.clone());
        async move { b.run(s).await }
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        !run.is_finished(),
        "a failed refresh does not end the broker"
    );
    shutdown.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_batch_refused_for_one_bad_event_names_that_event() {
    let app = app(Options::default());
    let good = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;
    let bad = r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#;
    let req = Request::post("/api/v1/bus/topics/t/events")
        .header("content-type", "application/cloudevents-batch+json")
        .body(Body::from(format!("[{good},{good},{bad}]")))
        .unwrap();
    let (s, _, body) = call(&app, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("batch[2]: "), "{detail}");
}
