//! `IdempotencyLayer` on the embedded SQLite event store (and, for the races, on PostgreSQL):
//! a step retried under one `Idempotency-Key` does its work once, whatever order and timing
//! the retries come in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flotilla::eventsourcing::EventStore;
use flotilla::idempotency::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, IdempotencyLayer};
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_testkit::{Backend, backend, unique_name};
use http_body_util::BodyExt;
use tokio::sync::{Notify, mpsc};
use tower::ServiceExt;

/// A participant's step: counts its runs and answers 201 with the run number.
#[derive(Clone, Default)]
struct Step {
    runs: Arc<AtomicU32>,
    /// When not 0, each run answers this status (a dependency is down, a rate limit).
    failing: Arc<AtomicU16>,
    /// When set, each run reports it started and waits to be let go.
    gate: Option<(mpsc::UnboundedSender<()>, Arc<Notify>)>,
}

async fn reserve(State(step): State<Step>, body: String) -> Response {
    let run = step.runs.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some((started, release)) = &step.gate {
        let _ = started.send(());
        release.notified().await;
    }
    if let Ok(status) = StatusCode::from_u16(step.failing.load(Ordering::SeqCst)) {
        return (status, "ledger unavailable").into_response();
    }
    let answer = serde_json::json!({ "run": run, "request": body });
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    let options = flotilla_sqlite::Options::new(dir.path().join("store.db"));
    let db = flotilla_sqlite::Database::open(options).unwrap();
    Arc::new(SqliteEventStore::open(db, None).await.unwrap())
}

fn routes(layer: IdempotencyLayer, step: Step) -> Router {
    Router::new()
        .route("/reservations", post(reserve))
        .route_layer(layer)
        .with_state(step)
}

fn request(key: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post("/reservations");
    if let Some(key) = key {
        req = req.header(IDEMPOTENCY_KEY, key);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

struct Answer {
    status: StatusCode,
    replayed: bool,
    content_type: Option<String>,
    body: serde_json::Value,
}

async fn send(router: &Router, req: Request<Body>) -> Answer {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let (parts, body) = res.into_parts();
    let header = |name: &str| {
        let value = parts.headers.get(name)?;
        Some(value.to_str().unwrap().to_owned())
    };
    let replayed = header(IDEMPOTENT_REPLAYED.as_str()).is_some_and(|v| v == "true");
    let content_type = header("content-type");
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        replayed,
        content_type,
        body,
    }
}

#[tokio::test]
async fn a_repeat_gets_the_stored_answer_and_the_step_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let step = Step::default();
    let router = routes(
        IdempotencyLayer::new(sqlite_store(&dir).await, "inventory"),
        step.clone(),
    );

    let first = send(&router, request(Some("saga-1:reserve"), "sku-1")).await;
    let again = send(&router, request(Some("saga-1:reserve"), "sku-1")).await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed);
    assert_eq!(again.status, StatusCode::CREATED);
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
    assert_eq!(again.content_type.as_deref(), Some("application/json"));
    assert_eq!(step.runs.load(Ordering::SeqCst), 1);
}

async fn postgres_store() -> Option<Arc<dyn EventStore>> {
    let url = backend(Backend::Postgres, "idempotent steps on postgres")?;
    let options = flotilla_postgres::Options {
        schema: unique_name("idem"),
        ..flotilla_postgres::Options::new(url)
    };
    Some(Arc::new(PgEventStore::open(&options).await.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_duplicates_run_the_step_once() {
    let dir = tempfile::tempdir().unwrap();
    twenty_concurrent_duplicates(sqlite_store(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_twenty_concurrent_duplicates_run_the_step_once() {
    if let Some(store) = postgres_store().await {
        twenty_concurrent_duplicates(store).await;
    }
}

async fn twenty_concurrent_duplicates(store: Arc<dyn EventStore>) {
    let step = Step::default();
    let router = routes(IdempotencyLayer::new(store, "inventory"), step.clone());

    let sends = (0..20).map(|_| {
        let router = router.clone();
        tokio::spawn(async move { send(&router, request(Some("saga-2:reserve"), "sku-2")).await })
    });
    let answers: Vec<Answer> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    assert_eq!(step.runs.load(Ordering::SeqCst), 1);
    let created: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .collect();
    assert!(created.iter().all(|a| a.body["run"] == 1));
    assert_eq!(created.iter().filter(|a| !a.replayed).count(), 1);
    let busy = answers
        .iter()
        .filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(created.len() + busy.count(), 20);
}

#[tokio::test]
async fn a_repeat_while_the_first_runs_is_told_to_retry_later() {
    let dir = tempfile::tempdir().unwrap();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let step = Step {
        gate: Some((started_tx, release.clone())),
        ..Step::default()
    };
    let layer = IdempotencyLayer::new(sqlite_store(&dir).await, "inventory")
        .in_progress_status(StatusCode::CONFLICT);
    let router = routes(layer, step.clone());

    let first = tokio::spawn({
        let router = router.clone();
        async move { send(&router, request(Some("saga-3:reserve"), "sku")).await }
    });
    started.recv().await.unwrap();
    let res = router
        .clone()
        .oneshot(request(Some("saga-3:reserve"), "sku"))
        .await
        .unwrap();
    release.notify_one();

    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(first.await.unwrap().status, StatusCode::CREATED);
    assert_eq!(step.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let step = Step::default();
    let router = routes(
        IdempotencyLayer::new(sqlite_store(&dir).await, "inventory"),
        step.clone(),
    );

    send(&router, request(Some("saga-4:reserve"), "sku-1")).await;
    let other = send(&router, request(Some("saga-4:reserve"), "sku-2")).await;

    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(step.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_error_is_not_stored_and_the_retry_runs_the_step_again() {
    failure_is_not_stored(StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn a_too_many_requests_answer_is_not_stored_either() {
    failure_is_not_stored(StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn a_refusal_is_final_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let step = Step::default();
    step.failing.store(409, Ordering::SeqCst);
    let router = routes(
        IdempotencyLayer::new(sqlite_store(&dir).await, "inventory"),
        step.clone(),
    );

    let refused = send(&router, request(Some("saga-7:reserve"), "sku")).await;
    step.failing.store(0, Ordering::SeqCst);
    let retried = send(&router, request(Some("saga-7:reserve"), "sku")).await;

    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(
        (retried.status, retried.replayed),
        (StatusCode::CONFLICT, true)
    );
    assert_eq!(step.runs.load(Ordering::SeqCst), 1);
}

async fn failure_is_not_stored(failure: StatusCode) {
    let dir = tempfile::tempdir().unwrap();
    let step = Step::default();
    step.failing.store(failure.as_u16(), Ordering::SeqCst);
    let router = routes(
        IdempotencyLayer::new(sqlite_store(&dir).await, "payments"),
        step.clone(),
    );

    let failed = send(&router, request(Some("saga-5:charge"), "42")).await;
    step.failing.store(0, Ordering::SeqCst);
    let retried = send(&router, request(Some("saga-5:charge"), "42")).await;
    let replayed = send(&router, request(Some("saga-5:charge"), "42")).await;

    assert_eq!(failed.status, failure);
    assert_eq!(
        (retried.status, retried.replayed),
        (StatusCode::CREATED, false)
    );
    assert_eq!(retried.body["run"], 2);
    assert_eq!(
        (replayed.body["run"].clone(), replayed.replayed),
        (2.into(), true)
    );
    assert_eq!(step.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_claim_whose_lease_ran_out_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    expired_claim_is_taken_over(sqlite_store(&dir).await).await;
}

#[tokio::test]
async fn on_postgres_a_claim_whose_lease_ran_out_is_taken_over() {
    if let Some(store) = postgres_store().await {
        expired_claim_is_taken_over(store).await;
    }
}

async fn expired_claim_is_taken_over(store: Arc<dyn EventStore>) {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let step = Step {
        gate: Some((started_tx, release.clone())),
        ..Step::default()
    };
    // A zero lease: the first request's claim has run out by the time the retry reads it, as
    // it would if its process had died mid-step.
    let layer = IdempotencyLayer::new(store, "inventory").lease(Duration::ZERO);
    let router = routes(layer, step.clone());

    let stuck = tokio::spawn({
        let router = router.clone();
        async move { send(&router, request(Some("saga-6:reserve"), "sku")).await }
    });
    started.recv().await.unwrap();
    stuck.abort(); // the process running the first attempt is gone
    let retry = tokio::spawn({
        let router = router.clone();
        async move { send(&router, request(Some("saga-6:reserve"), "sku")).await }
    });
    started.recv().await.unwrap();
    release.notify_one();
    let retry = retry.await.unwrap();
    let replay = send(&router, request(Some("saga-6:reserve"), "sku")).await;

    assert_eq!((retry.status, retry.replayed), (StatusCode::CREATED, false));
    assert_eq!(retry.body["run"], 2);
    assert_eq!((replay.body, replay.replayed), (retry.body, true));
}

#[tokio::test]
async fn without_the_header_requests_pass_through_unless_it_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let step = Step::default();
    let optional = routes(
        IdempotencyLayer::new(store.clone(), "inventory"),
        step.clone(),
    );
    let required = routes(
        IdempotencyLayer::new(store, "inventory").require_key(),
        step.clone(),
    );

    let a = send(&optional, request(None, "sku")).await;
    let b = send(&optional, request(None, "sku")).await;
    let refused = send(&required, request(None, "sku")).await;

    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(!b.replayed);
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(step.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_over_long_key_is_a_bad_request_naming_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let step = Step::default();
    let router = routes(
        IdempotencyLayer::new(sqlite_store(&dir).await, "inventory"),
        step.clone(),
    );

    let res = send(&router, request(Some(&"k".repeat(500)), "sku")).await;

    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(step.runs.load(Ordering::SeqCst), 0);
}
