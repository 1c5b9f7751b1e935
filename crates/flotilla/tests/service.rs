//! Black-box tests of what every `Microservice` gets for free.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use flotilla::testing::{TestService, test_config};
use flotilla::{Hook, Json, Microservice, Problem, State};
use flotilla_testkit::logs::CapturedLogs;
use flotilla_testkit::prometheus;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Notify;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct NewUser {
    name: String,
    age: u8,
}

fn routes() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/users",
            post(|Json(u): Json<NewUser>| async move { u.name }),
        )
        .route(
            "/trace",
            get(|h: HeaderMap| async move { h["traceparent"].to_str().unwrap().to_owned() }),
        )
        .route("/boom", get(|| async { Err::<(), _>(Problem::internal()) }))
        .route(
            "/bare500",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
}

async fn start() -> TestService {
    TestService::start(
        Microservice::builder("users")
            .unwrap()
            .version("1.2.3")
            .routes(routes()),
    )
    .await
}

#[tokio::test]
async fn a_request_without_an_id_gets_one_in_the_response_and_every_log_line() {
    let logs = CapturedLogs::global();
    let svc = start().await;
    let res = svc.get("/users/7").await;
    let id = res.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    svc.stop().await.unwrap();
    let lines: Vec<_> = logs
        .contents()
        .lines()
        .filter(|l| l.contains("request handled") && l.contains(&id))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1, "{}", logs.contents());
    assert!(
        lines[0].contains(&id)
            && lines[0].contains("/users/{id}")
            && lines[0].contains("\"status\":200"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn probe_requests_are_logged_at_debug_and_others_at_info() {
    let logs = CapturedLogs::global();
    let svc = start().await;
    for path in ["/health", "/ready", "/users/7"] {
        let id = format!("probe-test{}", path.replace('/', "-"));
        svc.call(Method::GET, path, &[("x-request-id", id.as_str())], "")
            .await;
    }
    svc.stop().await.unwrap();
    let level_of = |path: &str| {
        let id = format!("probe-test{}", path.replace('/', "-"));
        let contents = logs.contents();
        let line = contents
            .lines()
            .find(|l| l.contains("request handled") && l.contains(&format!("\"{id}\"")))
            .unwrap_or_else(|| panic!("no line for {path}"))
            .to_owned();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["level"].as_str().unwrap().to_owned()
    };
    assert_eq!(level_of("/health"), "DEBUG");
    assert_eq!(level_of("/ready"), "DEBUG");
    assert_eq!(level_of("/users/7"), "INFO");
}

#[tokio::test]
async fn a_valid_incoming_request_id_is_kept_and_an_unsafe_one_replaced() {
    let svc = start().await;
    let res = svc
        .call(Method::GET, "/users/1", &[("x-request-id", "abc-123")], "")
        .await;
    assert_eq!(res.header("x-request-id"), Some("abc-123"));
    let res = svc
        .call(
            Method::GET,
            "/users/1",
            &[("x-request-id", "bad id<script>")],
            "",
        )
        .await;
    assert_ne!(res.header("x-request-id"), Some("bad id<script>"));
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_valid_traceparent_is_continued_and_an_invalid_one_replaced() {
    let svc = start().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let seen = svc
        .call(Method::GET, "/trace", &[("traceparent", incoming)], "")
        .await;
    let seen = std::str::from_utf8(&seen.body).unwrap().to_owned();
    assert!(
        seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{seen}"
    );
    assert_ne!(seen, incoming, "this hop gets its own span id");
    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let seen = svc
        .call(Method::GET, "/trace", &[("traceparent", bad)], "")
        .await;
    let seen = std::str::from_utf8(&seen.body).unwrap().to_owned();
    assert!(!seen.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{seen}");
    assert!(flotilla::core::TraceParent::parse(&seen).is_some());
    svc.stop().await.unwrap();
}

fn assert_problem(res: &flotilla::testing::TestResponse, status: u16) -> serde_json::Value {
    assert_eq!(res.status.as_u16(), status, "{:?}", res.body);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let body = res.json();
    assert_eq!(body["status"], status);
    assert!(body["request_id"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn errors_are_problem_json() {
    let svc = start().await;
    let body = assert_problem(&svc.get("/nope").await, 404);
    assert_eq!(body["instance"], "/nope");
    assert_problem(&svc.call(Method::DELETE, "/users/1", &[], "").await, 405);
    assert_problem(&svc.call(Method::POST, "/users", &[], "{}").await, 415);
    let json = [("content-type", "application/json")];
    assert_problem(&svc.call(Method::POST, "/users", &json, "{nope").await, 400);
    let body = assert_problem(
        &svc.call(Method::POST, "/users", &json, r#"{"name":"a","age":"old"}"#)
            .await,
        422,
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{body}"
    );
    let body = assert_problem(&svc.get("/bare500").await, 500);
    assert!(!body["detail"].as_str().unwrap().is_empty());
    assert_problem(&svc.get("/boom").await, 500);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_10_mb_body_to_a_1_mb_limit_gets_413_problem_json() {
    let svc = start().await;
    let big = vec![b' '; 10 * 1024 * 1024];
    let json = [("content-type", "application/json")];
    assert_problem(&svc.call(Method::POST, "/users", &json, big).await, 413);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_limit_over_axums_default_lets_bodies_past_2_mib_reach_the_extractor() {
    let config = flotilla::ServiceConfig {
        body_limit: 4 * 1024 * 1024,
        ..test_config()
    };
    let svc = TestService::start_with(
        Microservice::builder("users")
            .unwrap()
            .config(config)
            .routes(routes()),
    )
    .await;
    let json = [("content-type", "application/json")];
    let mut three_mib = vec![b' '; 3 * 1024 * 1024];
    three_mib.extend_from_slice(br#"{"name":"ada","age":36}"#);
    let res = svc.call(Method::POST, "/users", &json, three_mib).await;
    let text = String::from_utf8_lossy(&res.body);
    assert_eq!(res.status, StatusCode::OK, "{text}");
    assert_eq!(text, "ada");
    assert_problem(
        &svc.call(Method::POST, "/users", &json, vec![b' '; 5 * 1024 * 1024])
            .await,
        413,
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_target_over_the_limit_gets_414_problem_json_and_one_at_it_is_served() {
    let svc = start().await;
    // The default limit is 8 KiB of path and query; the parser's own limit is 64 KiB.
    let at_limit = format!("/users/1?{}", "q".repeat(8 * 1024 - "/users/1?".len()));
    assert_eq!(svc.get(&at_limit).await.status.as_u16(), 200);
    let body = assert_problem(&svc.get(&format!("{at_limit}q")).await, 414);
    assert!(
        body["detail"].as_str().unwrap().contains("longer"),
        "{body}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_requests_by_route_template() {
    let svc = start().await;
    for id in 0..3 {
        svc.get(&format!("/users/{id}")).await;
    }
    svc.get("/nope").await;
    let res = svc.get("/metrics").await;
    let samples = prometheus::parse(std::str::from_utf8(&res.body).unwrap()).unwrap();
    let count = |route, status| {
        prometheus::sum(
            &samples,
            "http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(count("/users/{id}", "2xx"), 3.0);
    assert_eq!(count("unmatched", "4xx"), 1.0);
    assert!(
        prometheus::sum(
            &samples,
            "http_request_duration_seconds_count",
            &[("route", "/users/{id}")]
        ) >= 3.0
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn health_reports_identity_and_checks_and_root_describes_the_service() {
    let check =
        flotilla::HealthCheck::new("cache", || async { flotilla::CheckResult::warning("cold") });
    let svc = TestService::start(
        Microservice::builder("users")
            .unwrap()
            .version("1.2.3")
            .description("Users")
            .health_check(check),
    )
    .await;
    let health = svc.get("/health").await;
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(
        (body["service"].as_str(), body["version"].as_str()),
        (Some("users"), Some("1.2.3"))
    );
    assert_eq!(body["status"], "warning");
    assert_eq!(body["checks"]["cache"]["details"], "cold");
    assert_eq!(svc.get("/").await.json()["description"], "Users");
    assert_eq!(svc.get("/ready").await.status, 200);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_critical_readiness_check_makes_the_service_unready_but_alive() {
    let db = flotilla::HealthCheck::new("db", || async {
        flotilla::CheckResult::critical("refused")
    });
    let svc = TestService::start(Microservice::builder("users").unwrap().readiness_check(db)).await;
    assert_eq!(svc.get("/ready").await.status, 503);
    assert_eq!(svc.get("/health").await.status, 200);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_flips_readiness_first_lets_in_flight_requests_finish_then_refuses_connections() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let drain_gate = Arc::new(Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let slow = Router::new().route(
        "/slow",
        get(move || async move {
            e.notify_one();
            r.notified().await;
            "done"
        }),
    );
    let gate = drain_gate.clone();
    let hook = Hook::new("hold-drain", move |_| async move {
        gate.notified().await;
        Ok(())
    });
    let svc = TestService::start(
        Microservice::builder("users")
            .unwrap()
            .routes(slow)
            .on_drain(hook)
            .config(test_config()),
    )
    .await;
    let addr = svc.addr;
    let client = flotilla_testkit_client(addr);
    let in_flight = tokio::spawn(client);
    entered.notified().await;

    svc.handle.shutdown();
    while svc.handle.state() != State::Draining {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        svc.get("/ready").await.status,
        503,
        "readiness flips while the listener is open"
    );
    drain_gate.notify_one();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    assert_eq!(
        in_flight.await.unwrap(),
        "done",
        "the in-flight request completed"
    );
    svc.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A raw HTTP/1.1 GET /slow on its own connection, returning the body.
async fn flotilla_testkit_client(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.rsplit("\r\n\r\n").next().unwrap().to_owned()
}

#[tokio::test]
async fn invalid_service_config_fails_build_naming_the_key() {
    let config = flotilla::ServiceConfig {
        body_limit: 0,
        ..test_config()
    };
    let err = Microservice::builder("users")
        .unwrap()
        .config(config)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("service.body_limit"), "{err}");
    assert!(Microservice::builder("Bad_Name").is_err());
}
