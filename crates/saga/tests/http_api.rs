//! The operations API over the in-memory store and in-process steps: start (idempotent with
//! an id), show with a timeline, list with filters, cancel, retry of a stuck compensation,
//! definitions, and problem+json 4xx naming the bad field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use common::{Reply, World, order_saga, permanent};
use flotilla_saga::{Orchestrator, SagaObserver, SagaState, api};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

async fn call(
    orch: &Orchestrator,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .unwrap();
    let res = api::router(orch.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/problem+json");
    let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(
        problem,
        status.is_client_error() || status.is_server_error(),
        "{value}"
    );
    (status, value)
}

async fn start(orch: &Orchestrator, body: Value) -> String {
    let (status, v) = call(orch, "POST", "/api/v1/sagas/place-order", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn types(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_started_saga_shows_its_steps_and_timeline() {
    let w = World::new(order_saga(1).build().unwrap());
    let orch = w.orchestrator();
    let id = start(&orch, json!({"data": {"order_id": "o-1"}})).await;
    orch.wait(&id).await.unwrap();
    let (status, v) = call(&orch, "GET", &format!("/api/v1/sagas/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["data"], json!({"order_id": "o-1"}));
    assert_eq!(v["current_step"], Value::Null);
    assert_eq!(v["steps"][1]["attempts"], 1);
    assert_eq!(v["steps"][1]["result"], json!({"by": "charge"}));
    let expected = [
        "SagaStarted",
        "StepStarted",
        "StepSucceeded",
        "StepStarted",
        "StepSucceeded",
        "StepStarted",
        "StepSucceeded",
        "SagaCompleted",
    ];
    assert_eq!(types(&v), expected);
    assert_eq!(v["timeline"][1]["event"]["step"], "reserve");
    let (status, named) = call(
        &orch,
        "GET",
        &format!("/api/v1/sagas/place-order/{id}"),
        None,
    )
    .await;
    assert_eq!((status, &named["id"]), (StatusCode::OK, &json!(id)));
    let (status, _) = call(&orch, "GET", &format!("/api/v1/sagas/other/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn a_start_with_an_id_happens_once_and_other_input_under_it_conflicts() {
    let w = World::new(order_saga(1).build().unwrap());
    let orch = w.orchestrator();
    let body = json!({"id": "order-42", "data": {"n": 1}});
    assert_eq!(start(&orch, body.clone()).await, "order-42");
    let (status, v) = call(&orch, "POST", "/api/v1/sagas/place-order", Some(body)).await;
    assert_eq!((status, &v["created"]), (StatusCode::OK, &json!(false)));
    orch.wait("order-42").await.unwrap();
    assert_eq!(w.participants.names(), ["reserve", "charge", "confirm"]);
    let other = json!({"id": "order-42", "data": {"n": 2}});
    let (status, v) = call(&orch, "POST", "/api/v1/sagas/place-order", Some(other)).await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::CONFLICT, &json!("invalid_state"))
    );
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_a_problem_naming_the_field() {
    let w = World::new(order_saga(1).build().unwrap());
    let orch = w.orchestrator();
    let bad_id = json!({"id": "no spaces/here", "data": {}});
    let (status, v) = call(&orch, "POST", "/api/v1/sagas/place-order", Some(bad_id)).await;
    assert_eq!(
        (status, &v["field"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );
    let unknown = json!({"dta": {}});
    let (status, v) = call(&orch, "POST", "/api/v1/sagas/place-order", Some(unknown)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["detail"].as_str().unwrap().contains("dta"), "{v}");
    let (status, v) = call(&orch, "POST", "/api/v1/sagas/nope", Some(json!({}))).await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::NOT_FOUND, &json!("unknown_saga"))
    );
    let (status, v) = call(&orch, "GET", "/api/v1/sagas?status=done", None).await;
    assert_eq!(
        (status, &v["field"]),
        (StatusCode::BAD_REQUEST, &json!("status"))
    );
    let (status, v) = call(&orch, "GET", "/api/v1/sagas?limit=0", None).await;
    assert_eq!(
        (status, &v["field"]),
        (StatusCode::BAD_REQUEST, &json!("limit"))
    );
    let (status, _) = call(&orch, "GET", "/api/v1/sagas/place-order-missing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn the_list_filters_by_name_and_status_newest_first() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("confirm", vec![Reply::Ok, permanent("withdrawn")]);
    let orch = w.orchestrator();
    let first = start(&orch, json!({})).await;
    orch.wait(&first).await.unwrap();
    let second = start(&orch, json!({})).await;
    orch.wait(&second).await.unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["sagas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = call(&orch, "GET", "/api/v1/sagas?name=place-order", None).await;
    assert_eq!(ids(&all), [second.clone(), first.clone()]);
    let (_, done) = call(&orch, "GET", "/api/v1/sagas?status=completed", None).await;
    assert_eq!(ids(&done), [first]);
    let (_, undone) = call(&orch, "GET", "/api/v1/sagas?status=compensated", None).await;
    assert_eq!(ids(&undone), [second]);
    let (_, one) = call(&orch, "GET", "/api/v1/sagas?limit=1", None).await;
    assert_eq!(ids(&one).len(), 1);
    let (_, none) = call(&orch, "GET", "/api/v1/sagas?name=other", None).await;
    assert_eq!(ids(&none).len(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancel_turns_a_running_saga_back_and_is_refused_once_it_ended() {
    let w = World::new(order_saga(1).build().unwrap());
    let (open, gate) = watch::channel(false);
    w.participants.script("charge", vec![Reply::Gate(gate)]);
    let orch = w.orchestrator();
    let id = start(&orch, json!({})).await;
    w.participants.called("charge", 1).await;
    let (status, v) = call(&orch, "GET", &format!("/api/v1/sagas/{id}"), None).await;
    assert_eq!(
        (status, &v["current_step"]),
        (StatusCode::OK, &json!("charge"))
    );
    let (status, v) = call(&orch, "POST", &format!("/api/v1/sagas/{id}/cancel"), None).await;
    assert_eq!(
        (status, &v["status"]),
        (StatusCode::OK, &json!("compensating"))
    );
    open.send_replace(true);
    assert_eq!(orch.wait(&id).await.unwrap().status.label(), "compensated");
    let (status, v) = call(&orch, "POST", &format!("/api/v1/sagas/{id}/cancel"), None).await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::CONFLICT, &json!("invalid_state"))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_gives_a_stuck_compensation_a_fresh_budget() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("confirm", vec![permanent("withdrawn")]);
    let refusals = vec![permanent("bank down"); 3];
    w.participants.script("refund", refusals);
    let orch = w.orchestrator();
    let id = start(&orch, json!({})).await;
    assert_eq!(orch.wait(&id).await.unwrap().status.label(), "stuck");
    let (status, v) = call(&orch, "POST", &format!("/api/v1/sagas/{id}/retry"), None).await;
    assert_eq!(
        (status, &v["status"]),
        (StatusCode::OK, &json!("compensating"))
    );
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status.label(), "compensated");
    // Three refused attempts, then the retry's fourth succeeds; release runs after it.
    assert_eq!(end.steps[1].compensation_attempts, 4);
    assert_eq!(
        w.participants.names()[3..],
        ["refund", "refund", "refund", "refund", "release"]
    );
    let (_, v) = call(&orch, "GET", &format!("/api/v1/sagas/{id}"), None).await;
    assert!(types(&v).contains(&"SagaRetried".to_owned()));
    let (status, _) = call(&orch, "POST", &format!("/api/v1/sagas/{id}/retry"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test(start_paused = true)]
async fn a_retried_instance_is_resumed_by_the_next_orchestrator() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("confirm", vec![permanent("withdrawn")]);
    w.participants
        .script("refund", vec![permanent("bank down"); 3]);
    w.participants.always("refund", Reply::Hang);
    let orch = w.orchestrator();
    let id = start(&orch, json!({})).await;
    orch.wait(&id).await.unwrap();
    orch.retry(&id).await.unwrap();
    drop(orch);
    w.participants.always("refund", Reply::Ok);
    let next = w.orchestrator();
    assert_eq!(
        next.recover().await.unwrap().resumed,
        std::slice::from_ref(&id)
    );
    assert_eq!(next.wait(&id).await.unwrap().status.label(), "compensated");
}

#[tokio::test(start_paused = true)]
async fn definitions_are_listed_with_their_steps() {
    let w = World::new(order_saga(2).build().unwrap());
    let orch = w.orchestrator();
    let (status, v) = call(&orch, "GET", "/api/v1/sagas/definitions", None).await;
    assert_eq!(status, StatusCode::OK);
    let def = &v["definitions"][0];
    assert_eq!(
        (&def["name"], &def["version"]),
        (&json!("place-order"), &json!(1))
    );
    assert_eq!(def["steps"][0]["action"], json!({"function": "reserve"}));
    assert_eq!(
        def["steps"][0]["compensation"],
        json!({"function": "release"})
    );
    assert_eq!(def["steps"][2]["compensation"], Value::Null);
    assert_eq!(def["steps"][0]["policy"]["max_attempts"], 2);
}

#[derive(Debug, Default)]
struct Seen(Mutex<Vec<String>>);

impl SagaObserver for Seen {
    fn started(&self, state: &SagaState) {
        self.0
            .lock()
            .unwrap()
            .push(format!("started {}", state.status.label()));
    }
    fn resumed(&self, state: &SagaState) {
        self.0
            .lock()
            .unwrap()
            .push(format!("resumed {}", state.status.label()));
    }
    fn ended(&self, state: &SagaState) {
        self.0
            .lock()
            .unwrap()
            .push(format!("ended {}", state.status.label()));
    }
}

#[tokio::test(start_paused = true)]
async fn observers_hear_each_start_and_end_once() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("confirm", vec![Reply::Ok, permanent("withdrawn")]);
    let seen = Arc::new(Seen::default());
    let store: Arc<dyn flotilla_eventstore::EventStore> = w.store.clone();
    let builder = Orchestrator::builder(store).observer(seen.clone());
    let orch = w
        .participants
        .register(builder)
        .saga(w.def.clone())
        .build()
        .unwrap();
    for _ in 0..2 {
        let id = orch.start("place-order", json!({})).await.unwrap();
        orch.wait(&id).await.unwrap();
    }
    let log = seen.0.lock().unwrap().clone();
    let expected = [
        "started running",
        "ended completed",
        "started running",
        "ended compensated",
    ];
    assert_eq!(log, expected);
}
