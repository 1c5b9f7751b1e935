//! Interoperability with the official Python CloudEvents SDK, both ways: the requests the SDK
//! builds (structured, binary and batch content modes) are accepted with the same content, and
//! the events the broker delivers — pulled, and pushed to a webhook — parse with the SDK's
//! `from_http` into the events that were sent. The SDK's side is `cloudevents_sdk.py`; `scripts/test-tools.sh install` installs the
//! SDK, and the test skips visibly without it.
#![allow(clippy::unwrap_used)]

mod common;
use common::call;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flotilla_broker::{Broker, Options, PushOptions};
use flotilla_bus::{Backend as _, MemoryBackend};
use http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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

/// A broker with a pull group `py` and a push subscription to a webhook on 127.0.0.1:0 (both
/// take every `t.*` event); answers its router, the requests the webhook received, and the
/// token stopping its push.
async fn broker() -> (Router, mpsc::UnboundedReceiver<Value>, CancellationToken) {
    let (url, pushed) = webhook().await;
    let options = Options {
        push: vec![PushOptions {
            group: "hook".into(),
            pattern: "t.*".into(),
            url: Some(url),
            service: None,
            path: "/events".into(),
            filter: Default::default(),
            concurrency: 1,
            timeout_ms: 5_000,
            wait_for_instance_ms: 0,
            policy: Default::default(),
        }],
        ..Options::default()
    };
    let memory = MemoryBackend::new();
    let broker = Broker::new(options, Arc::new(memory.clone())).unwrap();
    let stop = CancellationToken::new();
    let (running, token) = (broker.clone(), stop.clone());
    tokio::spawn(async move { running.run(token).await.unwrap() });
    // The push group exists once its subscription started; events published before would
    // not be routed to it.
    while memory.groups().await.unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let app = broker.router();
    let declare = Request::put("/api/v1/bus/groups/py")
        .header("content-type", "application/json")
        .body(Body::from(json!({"pattern": "t.*"}).to_string()))
        .unwrap();
    assert_eq!(call(&app, declare).await.0, StatusCode::NO_CONTENT);
    (app, pushed, stop)
}

/// A webhook that reports every request it receives as an HTTP message for the SDK.
async fn webhook() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let headers: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap())))
                    .collect();
                let _ = tx.send(json!({"headers": headers, "body_b64": B64.encode(&body)}));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
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

/// Every event the pull group holds, as the HTTP messages a subscriber would build from them:
/// a delivery's `event` in structured mode.
async fn pulled(app: &Router) -> Vec<Value> {
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

/// `n` requests the webhook received (the push loop runs on its own; the bound only keeps a
/// broken push from hanging the test).
async fn pushed(rx: &mut mpsc::UnboundedReceiver<Value>, n: usize) -> Vec<Value> {
    let mut messages = Vec::new();
    while messages.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv());
        messages.push(next.await.unwrap().unwrap());
    }
    messages
}

/// Asserts that what the SDK parsed from `messages` is, event by event, what it sent.
fn assert_sdk_reads_back(python: &Path, built: &Value, messages: Vec<Value>, how: &str) {
    let parsed = sdk(python, "parse", &Value::Array(messages));
    let (expected, parsed) = (by_id(&built["expected"]), by_id(&parsed));
    assert_eq!(
        parsed.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        expected.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        "{how}"
    );
    for ((id, sent), (_, got)) in expected.iter().zip(&parsed) {
        assert_eq!(
            got, sent,
            "{how} event {id}: the SDK parsed other than it sent"
        );
    }
}

#[tokio::test]
async fn events_the_sdk_sends_come_back_to_the_sdk_unchanged_pulled_and_pushed() {
    let Some(python) = python() else {
        return;
    };
    let built = sdk(&python, "build", &Value::Null);
    let (app, mut webhook, stop) = broker().await;
    let mut stored = Vec::new();
    for request in built["requests"].as_array().unwrap() {
        stored.extend(publish(&app, request).await);
    }
    let n = built["expected"].as_array().unwrap().len();
    assert_eq!(stored.len(), n);
    assert_sdk_reads_back(&python, &built, pulled(&app).await, "pulled");
    assert_sdk_reads_back(&python, &built, pushed(&mut webhook, n).await, "pushed");
    stop.cancel();
}
