//! Services in their own processes use the platform: a publisher and a ledger service (each a
//! separate process on the SDK, connected by `platform.url` alone) against a real `flotilla
//! up`, which is killed with SIGKILL and restarted mid-run. Every publish the publisher saw
//! acknowledged must reach the ledger's event-sourced stream exactly once: the bus delivers at
//! least once, and the ledger's append is idempotent by the event's id (the documented way a
//! handler deduplicates).
//!
//! The two services are this test binary itself, re-run with `PLATFORM_E2E_ROLE` set (see
//! `service_process`), so they are real processes with nothing shared but the platform.
#![allow(clippy::unwrap_used)] // the shared `support` helpers unwrap

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::events::{DlqQuery, GroupName, HandlerError, Typed};
use flotilla::eventsourcing::{EventStore, ExpectedVersion, NewEvent, ReadStream};
use flotilla::platform::{Platform, PlatformConfig};
use flotilla::{Microservice, ServiceConfig};
use flotilla_core::{CloudEvent, StreamId};
use support::{free_port, up_on};

const ROLE: &str = "PLATFORM_E2E_ROLE";
const EVENTS: usize = 400;
const GROUP: &str = "e2e-ledger";

/// Starts `flotilla up` on fixed ports (a restart must come back where services look).
fn up(data: &Path, api: u16, gateway: u16) -> Child {
    let gateway = format!("127.0.0.1:{gateway}");
    up_on(api, data, &[("FLOTILLA_GATEWAY__LISTEN", &gateway)])
}

fn service(role: &str, url: &str, stream: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "service_process",
        "--include-ignored",
        "--nocapture",
    ])
    .env(ROLE, role)
    .env("FLOTILLA_PLATFORM__URL", url)
    .env("PLATFORM_E2E_STREAM", stream)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = "GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let mut answer = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// Polls the service's `/ready` until it answers 200 (bounded).
fn wait_ready(port: u16) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !ready(port) {
        assert!(Instant::now() < give_up, "the ledger never reported ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child, signal: &str) {
    let pid = child.id().to_string();
    let ok = Command::new("kill").args([signal, &pid]).status();
    assert!(ok.is_ok_and(|s| s.success()), "kill {signal} {pid}");
}

#[test]
fn acknowledged_events_reach_the_ledger_exactly_once_across_a_control_plane_sigkill() {
    let data = tempfile::tempdir().expect("data dir");
    let (api, gateway) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{api}");
    let stream = format!("ledger-{}", flotilla_testkit::unique_name("e2e"));
    let mut platform = up(data.path(), api, gateway);
    let ledger_port = free_port();
    let mut ledger = service("ledger", &url, &stream)
        .env(
            "FLOTILLA_SERVICE__LISTEN",
            format!("127.0.0.1:{ledger_port}"),
        )
        .spawn()
        .expect("ledger starts");
    // Events published before the ledger's group exists are not kept for it (the contract):
    // publish once the ledger reports ready, which it does only after subscribing.
    wait_ready(ledger_port);
    let mut publisher = service("publisher", &url, &stream)
        .spawn()
        .expect("publisher starts");
    let acked = read_acks(&mut publisher, &mut platform, data.path(), api, gateway);
    let (applied, dead) = wait_for_ledger(&url, &stream, &acked);
    kill(&mut ledger, "-TERM");
    assert_eq!(ledger.wait().expect("ledger exits").code(), Some(0));
    kill(&mut platform, "-TERM");
    assert_eq!(platform.wait().expect("platform exits").code(), Some(0));

    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !applied.contains_key(*id))
        .collect();
    let doubled: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "acked {}, applied {}, lost {}, applied twice {}",
        acked.len(),
        applied.len(),
        lost.len(),
        doubled.len()
    );
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert!(lost.is_empty(), "acknowledged but never applied: {lost:?}");
    assert!(doubled.is_empty(), "applied more than once: {doubled:?}");
    assert_eq!(
        acked.len(),
        EVENTS,
        "the publisher got every publish acknowledged"
    );
}

/// Reads the publisher's `ACK <id>` lines; SIGKILLs and restarts the control plane once a
/// third of the events are acknowledged.
fn read_acks(
    publisher: &mut Child,
    platform: &mut Child,
    data: &Path,
    api: u16,
    gateway: u16,
) -> BTreeSet<String> {
    let lines = BufReader::new(publisher.stdout.take().expect("piped")).lines();
    let mut acked = BTreeSet::new();
    for line in lines {
        let line = line.expect("utf-8");
        let Some(id) = line.strip_prefix("ACK ") else {
            continue;
        };
        acked.insert(id.to_owned());
        if acked.len() == EVENTS / 3 {
            kill(platform, "-KILL");
            let _ = platform.wait();
            *platform = up(data, api, gateway);
        }
    }
    assert_eq!(publisher.wait().expect("publisher exits").code(), Some(0));
    acked
}

/// Waits (bounded) until every acknowledged id is in the ledger's stream; answers how many
/// times each id was applied, and the ledger group's dead letters (id and last error).
fn wait_for_ledger(
    url: &str,
    stream: &str,
    acked: &BTreeSet<String>,
) -> (BTreeMap<String, usize>, Vec<(String, String)>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let platform = Platform::connect(PlatformConfig::new(url))
            .await
            .expect("connects");
        let store = platform.event_store();
        let stream = StreamId::new(stream).expect("valid stream id");
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let applied = applied(&store, &stream).await;
            let done = acked.iter().all(|id| applied.contains_key(id));
            if done || Instant::now() > give_up {
                return (applied, dead_letters(&platform).await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn dead_letters(platform: &Platform) -> Vec<(String, String)> {
    let query = DlqQuery {
        group: Some(GroupName::new(GROUP).expect("valid group")),
        ..DlqQuery::default()
    };
    let letters = platform.bus().backend().dlq_list(&query).await;
    letters
        .expect("the dead-letter queue can be listed")
        .into_iter()
        .map(|d| (d.event.id, d.last_error))
        .collect()
}

async fn applied(store: &Arc<dyn EventStore>, stream: &StreamId) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let Ok(events) = store.read_stream(stream, ReadStream::all()).await else {
        return counts;
    };
    for e in events {
        let source = e.data["event"].as_str().unwrap_or_default().to_owned();
        *counts.entry(source).or_default() += 1;
    }
    counts
}

/// The services' entry point when this binary is re-run as a service process; ignored in
/// ordinary runs: it is not a test of its own, and runs in CI as the child process the test
/// above starts. (Plan: move these roles into a test-support binary of the CLI package once
/// a second package needs them, so no entry point hides among the tests.)
#[test]
#[ignore = "child process of acknowledged_events_reach_the_ledger_exactly_once_across_a_control_plane_sigkill; runs in CI through it"]
fn service_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let stream = std::env::var("PLATFORM_E2E_STREAM").expect("stream named");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let platform = Platform::load(None).await.expect("platform connects");
        match role.as_str() {
            "publisher" => publish(&platform).await,
            _ => run_ledger(platform, stream).await,
        }
    });
}

/// Publishes `EVENTS` credits from 8 concurrent publishers, retrying each with the same id
/// until the platform acknowledges it, and prints `ACK <id>` for each.
async fn publish(platform: &Platform) {
    let bus = platform.bus();
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in (worker..EVENTS).step_by(8) {
                    let event = CloudEvent::new("e2e-publisher", "credits.added")
                        .with_json(serde_json::json!({ "n": n }));
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        match bus.publish(event.clone()).await {
                            Ok(_) => break println!("ACK {}", event.id),
                            Err(e) if Instant::now() > deadline => panic!("publish {n}: {e}"),
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher task");
    }
}

/// The ledger service: each credit becomes an event of its stream, appended with the bus
/// event's id as the store event's id, so a redelivered credit is not applied twice.
async fn run_ledger(platform: Platform, stream: String) {
    let store = platform.event_store();
    let stream = StreamId::new(stream).expect("valid stream id");
    let config = ServiceConfig {
        drain_delay: Duration::ZERO,
        ..ServiceConfig::load(None).expect("service config")
    };
    let handler = move |credit: Typed<serde_json::Value>| {
        let (store, stream) = (Arc::clone(&store), stream.clone());
        async move {
            let id = credit.received.event.id.clone();
            let uuid = uuid::Uuid::parse_str(&id).map_err(HandlerError::reject)?;
            let mut event = NewEvent::new(
                "Credited",
                serde_json::json!({ "event": id, "credit": credit.data }),
            );
            event.id = uuid;
            store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await
                .map(drop)
                .map_err(HandlerError::retry)
        }
    };
    Microservice::builder("ledger")
        .expect("valid name")
        .config(config)
        .platform(&platform)
        .on_event("credits.*", GROUP, handler)
        .build()
        .expect("service builds")
        .run()
        .await
        .expect("service runs");
}
