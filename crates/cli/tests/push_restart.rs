//! A push subscription to a service survives the service's ordinary restart: the events
//! published while no instance is routable wait for the next instance instead of spending
//! their delivery attempts and ending in the dead-letter queue. Real processes: `flotilla up`
//! with a `[[bus.api.push]]` to the `mailer` service, and `mailer` on the SDK (this binary
//! re-run with `PUSH_RESTART_ROLE` set), stopped with SIGTERM and started again.
#![allow(clippy::unwrap_used)] // the shared `support` helpers unwrap

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flotilla::platform::Platform;
use flotilla::{Microservice, ServiceConfig};
use serde_json::json;
use support::{KilledOnDrop, eventually, free_port, http, http_as, up_on};

const ROLE: &str = "PUSH_RESTART_ROLE";

/// Two deliveries 100 ms apart: without the wait for an instance, a restart of a second
/// dead-letters every event published meanwhile.
const CONFIG: &str = r#"
[[bus.api.push]]
group = "mailer-hook"
pattern = "orders.*"
service = "mailer"
path = "/events"
policy = { max_deliveries = 2, backoff = { kind = "list", delays = [100] } }
"#;

fn up(dir: &std::path::Path, api: u16) -> KilledOnDrop {
    let config = dir.join("flotilla.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.display().to_string();
    KilledOnDrop(up_on(
        api,
        &dir.join("data"),
        &[("FLOTILLA_CONFIG", &config)],
    ))
}

/// The mailer on a fresh port, and the ids it reports receiving on its stdout.
fn mailer(api: u16) -> (KilledOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "service_process",
            "--include-ignored",
            "--nocapture",
        ])
        .env(ROLE, "mailer")
        .env("FLOTILLA_PLATFORM__URL", format!("http://127.0.0.1:{api}"))
        .env(
            "FLOTILLA_SERVICE__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("GOT ") {
                let _ = tx.send(id.to_owned());
            }
        }
    });
    (KilledOnDrop(child), rx)
}

/// The next id the mailer reports receiving (bounded).
fn next_received(got: &mpsc::Receiver<String>) -> String {
    got.recv_timeout(Duration::from_secs(30))
        .expect("the mailer received the next event")
}

fn publish(api: u16, id: &str) {
    let event =
        json!({"specversion": "1.0", "id": id, "source": "/test", "type": "orders.created"});
    let (status, text) = http_as(
        api,
        "POST",
        "/api/v1/bus/topics/orders.created/events",
        "application/cloudevents+json",
        &event.to_string(),
    );
    assert_eq!(status, 200, "{text}");
}

fn routable_mailers(api: u16) -> usize {
    let (_, body) = http(api, "GET", "/v1/health/service/mailer?passing=true", "");
    serde_json::from_str::<Vec<serde_json::Value>>(&body).map_or(0, |v| v.len())
}

#[test]
fn events_published_while_the_pushed_to_service_restarts_are_delivered_not_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let _platform = up(dir.path(), api);
    let (mut first, got) = mailer(api);
    eventually("the mailer is routable", Duration::from_secs(30), || {
        routable_mailers(api) == 1
    });
    publish(api, "before");
    assert_eq!(next_received(&got), "before");

    support::send_signal(first.0.id(), "-TERM");
    assert_eq!(first.0.wait().unwrap().code(), Some(0), "a clean stop");
    eventually("no mailer is routable", Duration::from_secs(30), || {
        routable_mailers(api) == 0
    });
    publish(api, "during-1");
    publish(api, "during-2");
    // The restart's gap: long enough for both deliveries of each event (100 ms apart) had
    // "no instance" counted as a failed attempt.
    std::thread::sleep(Duration::from_secs(1));

    let (_second, got) = mailer(api);
    let mut received = [next_received(&got), next_received(&got)];
    received.sort();
    assert_eq!(received, ["during-1", "during-2"]);
    let (_, dlq) = http(api, "GET", "/api/v1/bus/dlq?group=mailer-hook", "");
    assert!(!dlq.contains("during-"), "nothing dead-lettered: {dlq}");
}

/// The mailer's entry point when this binary is re-run as a service process; ignored in
/// ordinary runs: it is not a test of its own, and runs in CI as the child process the test
/// above starts. (Plan: move these roles into a test-support binary of the CLI package once
/// a second package needs them, so no entry point hides among the tests.)
#[test]
#[ignore = "child process of events_published_while_the_pushed_to_service_restarts_are_delivered_not_dead_lettered; runs in CI through it"]
fn service_process() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let platform = Platform::load(None).await.unwrap();
        let events = axum::routing::post(|body: String| async move {
            let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            println!("GOT {}", event["id"].as_str().unwrap_or("?"));
            http::StatusCode::NO_CONTENT
        });
        let config = ServiceConfig {
            drain_delay: Duration::ZERO,
            ..ServiceConfig::load(None).unwrap()
        };
        Microservice::builder("mailer")
            .unwrap()
            .config(config)
            .routes(axum::Router::new().route("/events", events))
            .platform(&platform)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
    });
}
