//! `flotilla orchestrator`: the saga orchestrator and its API alone. On its own it runs sagas
//! against a participant registered in its registry and serves no bus or store API. Beside a
//! `flotilla up` on one PostgreSQL event store, each with a `[sagas.lease]`, it takes over the
//! sagas of the control plane when that is SIGKILLed mid-saga (skipped visibly without a
//! PostgreSQL server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::{Value, json};
use support::saga_shop::{idempotency_key, start_with_saga};
use support::{Up, drop_schema, http, register_shop, serve, stop};

const DEFINITION: &str = r#"
name = "order"
version = 1

[[steps]]
name = "charge"
timeout = "10s"

[steps.action.http]
service = "shop"
method = "POST"
path = "/payments"
"#;

/// Calls per idempotency key; each charge takes `delay`.
#[derive(Debug, Default)]
struct Shop {
    calls: HashMap<String, u32>,
    delay: Duration,
}

type Shared = Arc<Mutex<Shop>>;

async fn charge(State(shop): State<Shared>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let key = idempotency_key(&headers);
    let delay = {
        let mut shop = shop.lock().unwrap();
        *shop.calls.entry(key).or_default() += 1;
        shop.delay
    };
    tokio::time::sleep(delay).await;
    (StatusCode::OK, Json(json!({ "charged": true })))
}

fn participant(delay: Duration) -> (u16, Shared) {
    let shop: Shared = Arc::new(Mutex::new(Shop {
        delay,
        ..Shop::default()
    }));
    let app = axum::Router::new()
        .route("/payments", post(charge))
        .with_state(shop.clone());
    (serve(app), shop)
}

fn role(role: &str, dir: &Path, env: &[(&str, &str)], shop: u16) -> Up {
    let up = start_with_saga(role, dir, DEFINITION, env);
    register_shop(up.api, shop);
    up
}

fn start(api: u16, id: &str) {
    let body = json!({ "id": id, "data": {} }).to_string();
    let (status, text) = http(api, "POST", "/api/v1/sagas/order", &body);
    assert_eq!(status, 201, "{text}");
}

/// The instance once it has ended, polled on `api` for at most 60 s.
fn ended(api: u16, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = http(api, "GET", &format!("/api/v1/sagas/{id}"), "");
        let state: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if matches!(
            state["status"].as_str(),
            Some("completed" | "compensated" | "stuck")
        ) {
            return state;
        }
        assert!(Instant::now() < deadline, "{id} never ended: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_orchestrator_role_runs_sagas_and_serves_only_their_api() {
    let dir = tempfile::tempdir().unwrap();
    let (port, shop) = participant(Duration::ZERO);
    let orch = role("orchestrator", dir.path(), &[], port);
    start(orch.api, "alone-1");
    assert_eq!(ended(orch.api, "alone-1")["status"], "completed");
    assert_eq!(shop.lock().unwrap().calls["alone-1:charge"], 1);
    assert_eq!(http(orch.api, "GET", "/api/v1/streams", "").0, 404);
    assert_eq!(http(orch.api, "GET", "/api/v1/bus/topics", "").0, 404);
    stop(orch);
}

#[test]
fn the_orchestrator_takes_over_the_sagas_of_a_killed_control_plane_on_postgres() {
    let Some(url) = backend(Backend::Postgres, "saga takeover between processes") else {
        return;
    };
    let schema = unique_name("saga_roles");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port, shop) = participant(Duration::from_millis(1500));
    let shared = [
        ("FLOTILLA_EVENTSTORE__KIND", "postgres"),
        ("FLOTILLA_EVENTSTORE__URL", url.as_str()),
        ("FLOTILLA_EVENTSTORE__SCHEMA", schema.as_str()),
        ("FLOTILLA_SAGAS__LEASE__TTL", "2s"),
    ];
    let with = |owner: &'static str| {
        let mut env = shared.to_vec();
        env.push(("FLOTILLA_SAGAS__LEASE__OWNER", owner));
        env
    };
    let mut up = role("up", a_dir.path(), &with("cp"), port);
    let orch = role("orchestrator", b_dir.path(), &with("orch"), port);
    let ids: Vec<String> = (0..10).map(|i| format!("taken-{i}")).collect();
    for id in &ids {
        start(up.api, id);
    }
    // Every charge is in flight (each takes 1.5 s) when the control plane dies.
    let deadline = Instant::now() + Duration::from_secs(30);
    while shop.lock().unwrap().calls.len() < ids.len() {
        assert!(Instant::now() < deadline, "the charges never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    for id in &ids {
        let end = ended(orch.api, id);
        assert_eq!(end["status"], "completed", "{end}");
        let owners: Vec<_> = end["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "SagaClaimed")
            .map(|e| e["event"]["owner"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(owners, ["cp", "orch"], "{id}");
    }
    // The charge interrupted by the kill ran again under its key; nothing ran a third time.
    let calls = shop.lock().unwrap().calls.clone();
    assert!(calls.values().all(|n| *n <= 2), "{calls:?}");
    stop(orch);
    if !drop_schema(&url, &schema) {
        eprintln!("schema {schema} was left behind");
    }
}
