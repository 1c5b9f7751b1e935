//! Problem bodies name the trace of the request that failed, so a user can paste the id into a
//! tracing UI; problems built by other code than `Problem` (as the control plane's APIs build
//! theirs) gain the ids too.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::routing::get;
use flotilla::testing::TestService;
use flotilla::{Microservice, Problem};
use http::{Method, StatusCode, header};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn routes() -> Router {
    Router::new()
        .route(
            "/refused",
            get(|| async { Err::<(), _>(Problem::bad_request("no such thing")) }),
        )
        .route(
            "/hand-built",
            get(|| async {
                (
                    StatusCode::CONFLICT,
                    [(header::CONTENT_TYPE, "application/problem+json")],
                    r#"{"type":"about:blank","title":"Conflict","status":409,"code":"taken"}"#,
                )
            }),
        )
        .route(
            "/own-ids",
            get(|| async {
                (
                    StatusCode::CONFLICT,
                    [(header::CONTENT_TYPE, "application/problem+json")],
                    r#"{"status":409,"request_id":"theirs","trace_id":"theirs"}"#,
                )
            }),
        )
}

async fn start() -> TestService {
    TestService::start(Microservice::builder("problems").unwrap().routes(routes())).await
}

#[tokio::test]
async fn a_problem_carries_the_trace_id_of_the_callers_traceparent() {
    let svc = start().await;
    let res = svc
        .call(Method::GET, "/refused", &[("traceparent", TRACEPARENT)], "")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let body = res.json();
    assert_eq!(body["trace_id"], TRACE_ID, "{body}");
    assert_eq!(body["request_id"], res.header("x-request-id").unwrap());
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_framework_problem_carries_the_trace_id_of_a_trace_started_here() {
    let svc = start().await;
    let res = svc.get("/nowhere").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let trace_id = res.json()["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert!(
        trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trace_id}"
    );
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_problem_built_by_hand_gains_the_ids_and_keeps_its_members() {
    let svc = start().await;
    let res = svc
        .call(
            Method::GET,
            "/hand-built",
            &[("traceparent", TRACEPARENT)],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let body = res.json();
    assert_eq!(body["trace_id"], TRACE_ID, "{body}");
    assert_eq!(body["request_id"], res.header("x-request-id").unwrap());
    assert_eq!(body["code"], "taken");
    let res = svc
        .call(Method::GET, "/own-ids", &[("traceparent", TRACEPARENT)], "")
        .await;
    let body = res.json();
    assert_eq!(body["trace_id"], "theirs", "{body}");
    assert_eq!(body["request_id"], "theirs", "{body}");
    svc.stop().await.unwrap();
}
