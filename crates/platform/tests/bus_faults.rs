//! The platform bus when the control plane fails: restarted while services publish and
//! consume, down when the service starts, stalled, or refusing the token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use flotilla_bus::{Backend, Bus, DeliveryPolicy, Error, GroupName, GroupSpec, Outgoing};
use flotilla_core::error::Classify;
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_platform::bus::{BatchOptions, PlatformBus};
use flotilla_platform::{ConnectOptions, ControlPlane};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

fn client(url: &str, timeout: Duration) -> ControlPlane {
    let mut options = ConnectOptions::new(url);
    options.timeout = timeout;
    ControlPlane::new(options).unwrap()
}

fn outgoing(id: &str) -> Outgoing {
    let mut e = CloudEvent::new("/faults", "faults.test").with_json(json!({ "id": id }));
    e.id = id.to_owned();
    Outgoing::new(TopicName::new("faults.e").unwrap(), e)
}

/// Publishes `id` until the control plane acknowledges it, retrying what is retryable with
/// the same id, as the contract asks; answers how many tries failed.
async fn publish_until_acknowledged(bus: &PlatformBus, id: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failed = 0;
    loop {
        match bus.publish(vec![outgoing(id)]).await {
            Ok(_) => return failed,
            Err(e) if e.class().retryable && Instant::now() < deadline => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publish {id}: {e}"),
        }
    }
}

/// A subscription recording every event id its handler saw.
async fn record(bus: &PlatformBus) -> (Arc<Mutex<HashSet<String>>>, Arc<Notify>) {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let changed = Arc::new(Notify::new());
    let (s, n) = (Arc::clone(&seen), Arc::clone(&changed));
    let sub = Bus::new(Arc::new(bus.clone()))
        .subscribe("faults.>")
        .group("faults")
        .concurrency(16)
        // Short leases: events whose settle was lost in the restart come back quickly.
        .handler_timeout(Duration::from_secs(1))
        .lease_margin(Duration::from_secs(1))
        .policy(DeliveryPolicy {
            max_deliveries: 1000,
            ..DeliveryPolicy::default()
        })
        .handler(move |r| {
            let (s, n) = (Arc::clone(&s), Arc::clone(&n));
            async move {
                s.lock().unwrap().insert(r.event.id.clone());
                n.notify_waiters();
                Ok(())
            }
        })
        .await
        .unwrap();
    std::mem::forget(sub);
    (seen, changed)
}

/// Waits until every id of `want` was seen, or 30 s passed; answers the missing ones.
async fn missing_after_wait(
    seen: &Mutex<HashSet<String>>,
    changed: &Notify,
    want: &[String],
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let notified = changed.notified();
        let missing: Vec<String> = {
            let seen = seen.lock().unwrap();
            want.iter()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_publishing_and_consuming_loses_no_acknowledged_event() {
    let server = common::ControlPlane::start().await;
    let bus = PlatformBus::new(client(&server.url(), Duration::from_secs(2)));
    let (seen, changed) = record(&bus).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let (bus, acked) = (bus.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                let mut failed = 0;
                for i in 0..150 {
                    let id = format!("p{p}-{i}");
                    failed += publish_until_acknowledged(&bus, &id).await;
                    acked.lock().unwrap().push(id);
                }
                failed
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 150 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (dir, addr) = server.kill().await;
    // Down for a moment, as a crashed control plane is while it restarts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = common::ControlPlane::start_at(&dir, addr).await;
    let mut failed = 0;
    for p in publishers {
        failed += p.await.unwrap();
    }
    assert!(failed > 0, "the publishers saw the control plane go away");
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 600);
    let missing = missing_after_wait(&seen, &changed, &acked).await;
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_down_at_start_is_reached_when_it_comes_up() {
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let bus = PlatformBus::new(client(&format!("http://{addr}"), Duration::from_secs(2)));
    let early = bus.publish(vec![outgoing("early")]).await;
    assert!(
        matches!(&early, Err(Error::Unavailable(_))),
        "down is retryable: {early:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let _server = common::ControlPlane::start_at(dir.path(), addr).await;
    let group = GroupName::new("late").unwrap();
    let spec = GroupSpec {
        name: group.clone(),
        pattern: TopicPattern::new("faults.>").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
    publish_until_acknowledged(&bus, "early").await;
    let got = bus
        .receive(&group, 1, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got[0].event.id, "early");
}

/// A server that describes itself like the bus API, then reads each request and never
/// answers; it keeps the largest number of events one request carried.
async fn stalled_server() -> (String, Arc<AtomicUsize>) {
    let most = Arc::new(AtomicUsize::new(0));
    let info = json!({
        "backend": "stalled",
        "capabilities": {"per_key_order": true, "delayed_publish": true, "dedupe": true, "fenced_receipts": true},
        "limits": {"max_event_bytes": 1_048_576, "max_body_bytes": 8_388_608, "max_pull": 256,
                   "max_wait_ms": 30_000, "max_in_flight": 256, "max_lease_ms": 86_400_000,
                   "max_delay_ms": 31_622_400_000_u64},
    });
    let m = Arc::clone(&most);
    let hold = move |body: bytes::Bytes| {
        let m = Arc::clone(&m);
        async move {
            let events = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["events"].as_array().map(Vec::len))
                .unwrap_or(0);
            m.fetch_max(events, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    };
    let router = Router::new()
        .route("/api/v1/bus", get(move || async move { axum::Json(info) }))
        .fallback(any(hold));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_control_plane_fails_calls_within_their_deadline() {
    let (url, _) = stalled_server().await;
    let bus = PlatformBus::new(client(&url, Duration::from_millis(300)));
    let started = Instant::now();
    let r = bus.publish(vec![outgoing("stuck")]).await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    let group = GroupName::new("g").unwrap();
    let r = bus
        .receive(&group, 1, Duration::from_secs(30), Duration::ZERO)
        .await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    let r = bus
        .ack(&flotilla_bus::Receipt {
            group,
            token: "t".into(),
        })
        .await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_a_stalled_control_plane_wait_in_a_bounded_queue() {
    let (url, most) = stalled_server().await;
    let batching = BatchOptions {
        in_flight: 2,
        queue: 8,
        max_events: 10,
        ..BatchOptions::default()
    };
    let bus = PlatformBus::with_batching(client(&url, Duration::from_millis(500)), batching);
    let callers: Vec<_> = (0..200)
        .map(|i| {
            let bus = bus.clone();
            tokio::spawn(async move { bus.publish(vec![outgoing(&format!("e{i}"))]).await })
        })
        .collect();
    for c in callers {
        let r = c.await.unwrap();
        assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    }
    // Publishes were gathered, never beyond a request's limit: the batcher holds at most
    // `in_flight` requests of `max_events` plus its queue, and the other callers wait.
    let most = most.load(Ordering::SeqCst);
    assert!((2..=10).contains(&most), "events in one request: {most}");
}

#[tokio::test]
async fn a_refused_token_is_a_clear_error_and_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let router = Router::new().fallback(any(move || {
        c.fetch_add(1, Ordering::SeqCst);
        async { http::StatusCode::UNAUTHORIZED }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let options = ConnectOptions::new(url).token("wrong");
    let bus = PlatformBus::new(ControlPlane::new(options).unwrap());
    let r = bus.publish(vec![outgoing("x")]).await;
    let e = r.expect_err("refused");
    assert!(!e.class().retryable, "{e}");
    assert!(e.to_string().contains("platform.token"), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "asked once, not retried");
}
