//! `flotilla projections rebuild` end to end: a service built with the SDK hosts a projection
//! on an in-memory event store; the CLI binary rebuilds it, found by URL or through the
//! registry of a running platform.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{http, start_role, stop};

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla::Microservice;
use flotilla::eventsourcing::projection::{BoxError, Projection};
use flotilla::eventsourcing::{
    EventStore, ExpectedVersion, MemoryEventStore, NewEvent, RecordedEvent,
};
use flotilla::{ServiceConfig, ServiceHandle};
use flotilla_core::StreamId;

/// Generous: the CLI answers in well under a second.
const LIMIT: Duration = Duration::from_secs(120);

/// Order totals by stream: the read model under test.
#[derive(Clone, Default)]
struct Totals {
    model: Arc<Mutex<Vec<(String, u64)>>>,
    resets: Arc<Mutex<u32>>,
}

#[async_trait::async_trait]
impl Projection for Totals {
    fn name(&self) -> &str {
        "order-totals"
    }

    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let amount = event.data["amount"].as_u64().ok_or("no amount")?;
        self.model
            .lock()
            .unwrap()
            .push((event.stream.to_string(), amount));
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.model.lock().unwrap().clear();
        *self.resets.lock().unwrap() += 1;
        Ok(())
    }
}

struct Service {
    port: u16,
    handle: ServiceHandle,
    totals: Totals,
    join: tokio::task::JoinHandle<Result<(), flotilla::Error>>,
}

async fn service_with_history() -> Service {
    let store = Arc::new(MemoryEventStore::new());
    for (stream, amount) in [("order-1", 10), ("order-2", 20), ("order-1", 5)] {
        let event = NewEvent::new("OrderPlaced", serde_json::json!({ "amount": amount }));
        let id = StreamId::new(stream).unwrap();
        store
            .append(&id, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    let totals = Totals::default();
    let config = ServiceConfig {
        drain_delay: Duration::ZERO,
        ..ServiceConfig::default()
    };
    let dyn_store: Arc<dyn EventStore> = store;
    let service = Microservice::builder("orders")
        .unwrap()
        .config(config)
        .projection(dyn_store, totals.clone())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = service.handle();
    let join = tokio::spawn(service.serve(listener));
    while handle.state() == flotilla::State::Starting {
        tokio::task::yield_now().await;
    }
    Service {
        port,
        handle,
        totals,
        join,
    }
}

async fn cli(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::from(support::flotilla());
    let run = cmd.args(args).kill_on_drop(true).output();
    match tokio::time::timeout(LIMIT, run).await {
        Ok(output) => output.unwrap(),
        Err(_) => panic!(
            "`flotilla {}` did not finish within {LIMIT:?}",
            args.join(" ")
        ),
    }
}

fn expected_model() -> Vec<(String, u64)> {
    let rows = [("order-1", 10), ("order-2", 20), ("order-1", 5)];
    rows.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_by_url_replays_history_into_an_emptied_read_model() {
    let svc = service_with_history().await;
    while svc.totals.model.lock().unwrap().len() < 3 {
        tokio::task::yield_now().await;
    }
    let url = format!("http://127.0.0.1:{}", svc.port);
    let out = cli(&[
        "projections",
        "rebuild",
        "order-totals",
        "--service",
        &url,
        "--json",
    ])
    .await;
    support::assert_success(&out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["rebuild"]["state"], "done");
    assert_eq!(status["rebuild"]["position"], 3);
    assert_eq!(*svc.totals.resets.lock().unwrap(), 1);
    assert_eq!(
        *svc.totals.model.lock().unwrap(),
        expected_model(),
        "rebuilt, nothing doubled"
    );

    let out = cli(&["projections", "rebuild", "nope", "--service", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no projection named \"nope\"") && stderr.contains("404"),
        "{stderr}"
    );

    svc.handle.shutdown();
    svc.join.await.unwrap().unwrap();
    let out = cli(&["projections", "rebuild", "order-totals", "--service", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the service"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_finds_the_service_through_the_registry() {
    let svc = service_with_history().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let data = dir.path().join("data");
    let up = tokio::task::spawn_blocking(move || start_role("up", &data, &routes, &[]))
        .await
        .unwrap();
    let reg = format!(
        r#"{{"name":"orders","address":"127.0.0.1","port":{}}}"#,
        svc.port
    );
    let api = up.api;
    let (status, body) =
        tokio::task::spawn_blocking(move || http(api, "POST", "/api/v1/registry/instances", &reg))
            .await
            .unwrap();
    assert!(status == 200 || status == 201, "{status} {body}");

    let control_plane = format!("http://127.0.0.1:{api}");
    let args = [
        "projections",
        "rebuild",
        "order-totals",
        "--service",
        "orders",
        "--url",
        &control_plane,
    ];
    let out = cli(&args).await;
    support::assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("projection order-totals rebuilt"));
    assert_eq!(*svc.totals.model.lock().unwrap(), expected_model());

    let unknown = [
        "projections",
        "rebuild",
        "order-totals",
        "--service",
        "billing",
        "--url",
        &control_plane,
    ];
    let out = cli(&unknown).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no passing instance of service \"billing\"")
    );
    tokio::task::spawn_blocking(move || stop(up)).await.unwrap();
    svc.handle.shutdown();
    svc.join.await.unwrap().unwrap();
}
