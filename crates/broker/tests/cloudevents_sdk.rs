//! Interoperability with the official Python CloudEvents SDK, both ways: the requests the SDK
//! builds (structured, binary and batch content modes) are accepted with the same content, and
//! the events the broker delivers parse with the SDK's `from_http` into the events that were
//! sent. The SDK's side is `cloudevents_sdk.py`; `scripts/test-tools.sh install` installs the
//! SDK, and the test skips visibly without it.
#![allow(clippy::unwrap_used)]

mod common;
use common::call;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flotilla_broker::{Broker, Options};
use flotilla_bus::MemoryBackend;
use http::{Request, StatusCode};
use serde_json::{Value, json};

const SUITE: &str = "broker interop with the Python CloudEvents SDK";

/// The SDK's interpreter, where `scripts/test-tools.sh` puts its venv.
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("FLOTILLA_CLOUDEVENTS_VENV").map_or_else(
        || {
            Path::new(&std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/flotilla/cloudevents-sdk")
        },
        PathBuf::from,
    );
    flotilla_testkit::tool_at("cloudevents-sdk", &venv.join("bin/python"), SUITE)
}

/// Runs the SDK script with `command`, feeding it `input`; its JSON answer.
fn sdk(python: &Path, command: &str, input: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloudevents_sdk.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cloudevents_sdk.py {command}: {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn broker() -> Router {
    let app = Broker::new(Options::default(), Arc::new(MemoryBackend::new()))
        .unwrap()
        .router();
    let declare = Request::put("/api/v1/bus/groups/py")
        .header("content-type", "application/json")
        .body(Body::from(json!({"pattern": "t.>"}).to_string()))
        .unwrap();
    assert_eq!(call(&app, declare).await.0, StatusCode::NO_CONTENT);
    app
}

/// Sends one request the SDK built; answers the ids the broker stored.
async fn publish(app: &Router, built: &Value) -> Vec<String> {
    let mut req = Request::post("/api/v1/bus/topics/t.a/events");
    for (name, value) in built["headers"].as_object().unwrap() {
        req = req.header(name.as_str(), value.as_str().unwrap());
    }
    let body = B64.decode(built["body_b64"].as_str().unwrap()).unwrap();
    let (status, _, answer) = call(app, req.body(Body::from(body)).unwrap()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{} request: {answer}",
        built["mode"]
    );
    let outcomes = answer["outcomes"].as_array().unwrap();
    outcomes
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every event the group holds, as HTTP messages in structured mode (what pull, SSE and push
/// subscribers receive).
async fn delivered(app: &Router) -> Vec<Value> {
    let pull = Request::post("/api/v1/bus/groups/py/pull")
        .header("content-type", "application/json")
        .body(Body::from(json!({"max": 100, "wait_ms": 0}).to_string()))
        .unwrap();
    let (_, _, body) = call(app, pull).await;
    let deliveries = body["deliveries"].as_array().unwrap();
    deliveries
        .iter()
        .map(|d| {
            json!({
                "headers": {"content-type": "application/cloudevents+json"},
                "body_b64": B64.encode(d["event"].to_string()),
            })
        })
        .collect()
}

fn by_id(events: &Value) -> Vec<(String, Value)> {
    let mut list: Vec<(String, Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["attributes"]["id"].as_str().unwrap().to_owned(),
                e.clone(),
            )
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

#[tokio::test]
async fn events_the_sdk_sends_come_back_to_the_sdk_unchanged() {
    let Some(python) = python() else {
        return;
    };
    let built = sdk(&python, "build", &Value::Null);
    let app = broker().await;
    let mut stored = Vec::new();
    for request in built["requests"].as_array().unwrap() {
        stored.extend(publish(&app, request).await);
    }
    assert_eq!(stored.len(), built["expected"].as_array().unwrap().len());
    let messages = Value::Array(delivered(&app).await);
    let parsed = sdk(&python, "parse", &messages);
    let (expected, parsed) = (by_id(&built["expected"]), by_id(&parsed));
    assert_eq!(
        parsed.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        expected.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );
    for ((id, sent), (_, got)) in expected.iter().zip(&parsed) {
        assert_eq!(
            got, sent,
            "event {id}: what the SDK parsed differs from what it sent"
        );
    }
}
