//! Watches: per-service isolation, blocking queries, the event stream.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use flotilla_core::ServiceName;
use flotilla_discovery::Discovery;
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_registry::Options;
use tokio::time::Instant;

const REGISTER: &str = "/api/v1/registry/instances";

#[tokio::test]
async fn a_watcher_of_a_is_not_woken_by_changes_to_b() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let a = ServiceName::new("alpha").unwrap();
    let watchers: Vec<_> = (0..1000).map(|_| r.watch(&a)).collect();
    for i in 0..10 {
        common::call(
            &r,
            Method::POST,
            REGISTER,
            Some(&common::registration("beta", &format!("b{i}"), 80, "")),
        )
        .await;
    }
    assert!(
        watchers.iter().all(|w| !w.has_changed().unwrap()),
        "no watcher of alpha woke"
    );
    common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("alpha", "a1", 80, "")),
    )
    .await;
    assert!(
        watchers.iter().all(|w| w.has_changed().unwrap()),
        "every watcher of alpha woke"
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocking_query_returns_at_once_on_change() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let (_, _, first) = common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("alpha", "a1", 80, "")),
    )
    .await;
    let index = first["modify_index"].as_u64().unwrap();
    let started = Instant::now();
    let waiter = {
        let r = r.clone();
        tokio::spawn(async move {
            common::call(
                &r,
                Method::GET,
                &format!("/api/v1/registry/services/alpha?index={index}&wait=60s"),
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("beta", "b1", 80, "")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiter.is_finished(),
        "a change to beta does not answer a query on alpha"
    );
    common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("alpha", "a2", 80, "")),
    )
    .await;
    let (status, headers, json) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered on the change, not after wait"
    );
    assert_eq!(json["instances"].as_array().unwrap().len(), 2);
    let revision: u64 = headers["x-flotilla-revision"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(revision > index);
}

#[tokio::test(start_paused = true)]
async fn a_blocking_query_returns_after_wait_when_nothing_changes() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let (_, _, first) = common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("alpha", "a1", 80, "")),
    )
    .await;
    let index = first["modify_index"].as_u64().unwrap();
    let started = Instant::now();
    let (status, headers, _) = common::call(
        &r,
        Method::GET,
        &format!("/api/v1/registry/services/alpha?index={index}&wait=30s"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(
        headers["x-flotilla-revision"],
        index.to_string().as_str(),
        "same revision: nothing changed"
    );
    let started = Instant::now();
    common::call(
        &r,
        Method::GET,
        "/api/v1/registry/services/alpha?index=5&wait=30m",
        None,
    )
    .await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "an index other than the current one answers at once"
    );
    let started = Instant::now();
    common::call(
        &r,
        Method::GET,
        &format!("/api/v1/registry/services/alpha?index={index}&wait=1h"),
        None,
    )
    .await;
    assert_eq!(
        started.elapsed(),
        Options::default().max_wait,
        "wait is capped"
    );
    let (status, _, _) = common::call(
        &r,
        Method::GET,
        "/api/v1/registry/services/alpha?index=x",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_event_stream_sends_a_snapshot_then_one_per_change() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let (l, addr) = common::listener().await;
    let stop = tokio_util::sync::CancellationToken::new();
    common::serve(l, r.router(), stop.clone());
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /api/v1/registry/watch?service=alpha HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut read_until = async |needle: &str, seen: &mut String| {
        while !seen.contains(needle) {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "stream closed");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_until("event: snapshot", &mut seen).await;
    assert!(seen.contains("text/event-stream"));
    common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("alpha", "a1", 80, "")),
    )
    .await;
    read_until("\"id\":\"a1\"", &mut seen).await;
    stop.cancel();
}

#[tokio::test]
async fn the_all_services_stream_announces_every_change_in_order() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let mut changes = r.changes();
    common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("alpha", "a1", 80, "")),
    )
    .await;
    common::call(
        &r,
        Method::PUT,
        "/api/v1/registry/services/alpha/instances/a1/drain",
        None,
    )
    .await;
    common::call(
        &r,
        Method::DELETE,
        "/api/v1/registry/services/alpha/instances/a1",
        None,
    )
    .await;
    let seen: Vec<_> = (0..3).map(|_| changes.try_recv().unwrap()).collect();
    let statuses: Vec<_> = seen
        .iter()
        .map(|c| c.status.map(|s| s.to_string()))
        .collect();
    assert_eq!(
        statuses,
        [
            Some("passing".to_string()),
            Some("draining".to_string()),
            None
        ]
    );
    assert!(seen.windows(2).all(|w| w[0].revision < w[1].revision));
}
