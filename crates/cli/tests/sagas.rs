//! Sagas end to end: the real `flotilla up` with `[sagas] definitions`, a participant service
//! (axum, registered in the control plane's registry) that HTTP steps find through discovery,
//! and the `flotilla sagas` commands. Then the control plane is SIGKILLed while sagas run and
//! restarted on the same data: every saga still ends completed or compensated, and the
//! participant's effects agree with each outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, post};
use serde_json::{Value, json};
use support::saga_shop::{OrderSaga, idempotency_key, start_with_saga};
use support::{Up, cli, http, register_shop, serve, stop};

/// Two HTTP steps on service `shop`: reserve (undone by DELETE), then charge, which the
/// participant refuses for amounts over 100.
const SAGA: OrderSaga = OrderSaga {
    attempts: 5,
    compensation_attempts: 20,
    base_delay: "50ms",
    charge_body: r#"{ amount = "{{data.amount}}", reservation = "{{steps.reserve.result.id}}" }"#,
};

/// What the participant holds, by idempotency key: it applies each key once, as the saga
/// contract asks.
#[derive(Debug, Default)]
struct Shop {
    reservations: HashMap<String, bool>,
    payments: HashMap<String, Value>,
    /// How long a charge takes, so a crash can land while sagas are in flight.
    charge_delay: Duration,
}

type Shared = Arc<Mutex<Shop>>;

async fn reserve(State(shop): State<Shared>, headers: HeaderMap) -> Json<Value> {
    let key = idempotency_key(&headers);
    shop.lock()
        .unwrap()
        .reservations
        .entry(key.clone())
        .or_insert(true);
    Json(json!({ "id": key }))
}

async fn release(State(shop): State<Shared>, UrlPath(key): UrlPath<String>) -> StatusCode {
    shop.lock().unwrap().reservations.insert(key, false);
    StatusCode::NO_CONTENT
}

async fn charge(
    State(shop): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let delay = shop.lock().unwrap().charge_delay;
    tokio::time::sleep(delay).await;
    if body["amount"].as_u64().is_none_or(|a| a > 100) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "declined" })),
        );
    }
    let mut shop = shop.lock().unwrap();
    shop.payments
        .entry(idempotency_key(&headers))
        .or_insert(body);
    (StatusCode::OK, Json(json!({ "charged": true })))
}

/// Serves the participant on a port of its own, on a runtime thread that lives as long as
/// the test process.
fn participant(charge_delay: Duration) -> (u16, Shared) {
    let shop: Shared = Arc::new(Mutex::new(Shop {
        charge_delay,
        ..Shop::default()
    }));
    let app = axum::Router::new()
        .route("/reservations", post(reserve))
        .route("/reservations/{key}", delete(release))
        .route("/payments", post(charge))
        .with_state(shop.clone());
    (serve(app), shop)
}

/// `flotilla up` with the definition file under `dir`, on the data in `dir/data`.
fn up(dir: &Path) -> Up {
    up_with(dir, &[])
}

fn up_with(dir: &Path, extra: &[(&str, &str)]) -> Up {
    start_with_saga("up", dir, &SAGA.definition(), extra)
}

fn show(up: &Up, id: &str) -> Value {
    serde_json::from_str(&cli(up, &["sagas", "show", id, "--json"])).unwrap()
}

/// Polls the instance until it has ended; its final state. Bounded, so a saga that never
/// ends fails the test with its state instead of hanging it.
fn ended(up: &Up, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = show(up, id);
        let status = state["status"].as_str().unwrap_or_default();
        if matches!(status, "completed" | "compensated" | "stuck") {
            return state;
        }
        assert!(Instant::now() < deadline, "saga {id} never ended: {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(up: &Up, data: Value) -> String {
    let out = cli(
        up,
        &["sagas", "start", "order", "--data", &data.to_string()],
    );
    out.trim().to_owned()
}

#[test]
fn sagas_complete_or_compensate_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (port, shop) = participant(Duration::ZERO);
    let up = up(dir.path());
    register_shop(up.api, port);

    let ok = start(&up, json!({"order": "o-1", "amount": 40}));
    let done = ended(&up, &ok);
    assert_eq!(done["status"], "completed", "{done}");
    let reservation = format!("{ok}:reserve");
    assert_eq!(
        shop.lock().unwrap().reservations.get(&reservation),
        Some(&true)
    );
    let paid = shop.lock().unwrap().payments[&format!("{ok}:charge")].clone();
    assert_eq!(paid, json!({"amount": 40, "reservation": reservation}));

    let declined = start(&up, json!({"order": "o-2", "amount": 500}));
    let undone = ended(&up, &declined);
    assert_eq!(undone["status"], "compensated", "{undone}");
    let released = shop.lock().unwrap().reservations[&format!("{declined}:reserve")];
    assert!(!released, "the reservation of a declined order is released");

    let timeline = cli(&up, &["sagas", "show", &declined]);
    for event in [
        "SagaStarted",
        "StepFailed",
        "SagaCancelled",
        "CompensationSucceeded",
        "SagaCompensated",
    ] {
        assert!(
            timeline.contains(event),
            "{event} missing from:\n{timeline}"
        );
    }
    let trace_id = undone["trace_id"].as_str().unwrap();
    assert!(
        timeline.contains(&format!("trace: {trace_id}")),
        "no trace id in:\n{timeline}"
    );
    let listed = cli(&up, &["sagas", "ls", "--status", "compensated"]);
    assert!(
        listed.contains(&declined) && !listed.contains(&ok),
        "{listed}"
    );
    let url = format!("http://127.0.0.1:{}", up.api);
    let unknown = support::flotilla()
        .args(["sagas", "start", "nope", "--url", &url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && stderr.contains("\"nope\""),
        "{stderr}"
    );
    // The control plane's problem names its trace, and the CLI prints it.
    assert!(stderr.contains("[trace "), "{stderr}");
    let platform = http(up.api, "GET", "/api/v1/platform", "").1;
    assert!(platform.contains("/api/v1/sagas") && !platform.contains("not_yet_available"));
    let metrics = http(up.api, "GET", "/metrics", "").1;
    for line in [
        "flotilla_sagas_started_total 2",
        "flotilla_sagas_ended_total{outcome=\"completed\"} 1",
        "flotilla_sagas_ended_total{outcome=\"compensated\"} 1",
        "flotilla_sagas_in_flight 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
    let topics = cli(&up, &["topics", "ls", "--json"]);
    for topic in ["saga.order.completed", "saga.order.compensated"] {
        assert!(
            topics.contains(topic),
            "{topic} was not published: {topics}"
        );
    }
    stop(up);
}

/// Sagas started back to back, the control plane SIGKILLed while charges are in flight, then
/// restarted on the same data: `recover()` resumes every unfinished instance, each ends as
/// its amount says, and the participant's effects match the outcome.
#[test]
fn sagas_interrupted_by_sigkill_finish_after_a_restart() {
    const SAGAS: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    let (port, shop) = participant(Duration::from_millis(300));
    let mut first = up(dir.path());
    register_shop(first.api, port);
    let orders: Vec<(String, u64)> = (0..SAGAS)
        .map(|i| {
            let amount = if i % 3 == 0 { 500 } else { 40 };
            (
                start(&first, json!({"order": format!("o-{i}"), "amount": amount})),
                amount,
            )
        })
        .collect();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed_at = chrono::Utc::now();

    let second = up(dir.path());
    register_shop(second.api, port);
    let mut after_restart = 0;
    for (id, amount) in &orders {
        let end = ended(&second, id);
        let expected = if *amount > 100 {
            "compensated"
        } else {
            "completed"
        };
        assert_eq!(end["status"], expected, "{end}");
        let last = end["timeline"].as_array().unwrap().last().unwrap().clone();
        let finished: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(last["recorded_at"].clone()).unwrap();
        after_restart += usize::from(finished > killed_at);
        let shop = shop.lock().unwrap();
        let reserved = shop.reservations.get(&format!("{id}:reserve")).copied();
        let paid = shop.payments.contains_key(&format!("{id}:charge"));
        match expected {
            "completed" => assert_eq!((reserved, paid), (Some(true), true), "{id}"),
            _ => assert!(reserved != Some(true) && !paid, "{id}: {reserved:?} {paid}"),
        }
    }
    eprintln!("{SAGAS} sagas, {after_restart} finished after the SIGKILL and restart");
    assert!(
        after_restart > 0,
        "the kill landed after every saga had ended"
    );
    stop(second);
}

#[test]
fn an_invalid_definition_file_stops_config_check_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    let bad = SAGA
        .definition()
        .replace("path = \"/payments\"", "path = \"payments\"");
    std::fs::write(&file, bad).unwrap();
    let config = dir.path().join("flotilla.toml");
    let pattern = dir.path().join("*.toml");
    std::fs::write(
        &config,
        format!(
            "[sagas]\ndefinitions = [{:?}]\n",
            file.display().to_string()
        ),
    )
    .unwrap();
    let out = support::flotilla()
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broken.toml") && stderr.contains("steps[1].action.http.path"),
        "{stderr}"
    );
    let missing = format!(
        "[sagas]\ndefinitions = [{:?}]\n",
        format!("{}.none", pattern.display())
    );
    std::fs::write(&config, missing).unwrap();
    let out = support::flotilla()
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches no file"));
}

#[test]
fn with_a_token_saga_writes_need_it_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(dir.path(), &[("FLOTILLA_REGISTRY__TOKEN", "s3cret")]);
    let start = json!({"data": {"order": "o-1", "amount": 1}}).to_string();
    let (status, body) = http(up.api, "POST", "/api/v1/sagas/order", &start);
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(up.api, "POST", "/api/v1/sagas/order-1/cancel", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(http(up.api, "GET", "/api/v1/sagas", "").0, 200);
    assert_eq!(http(up.api, "GET", "/api/v1/sagas/definitions", "").0, 200);
    stop(up);
}
