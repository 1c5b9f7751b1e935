//! Health checks end to end: thresholds, deregister-after, TTLs.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use flotilla_core::ServiceName;
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_discovery::{Discovery, HealthStatus, ServiceSet};
use flotilla_registry::Options;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn users() -> ServiceName {
    ServiceName::new("users").unwrap()
}

async fn wait_until(
    rx: &mut watch::Receiver<ServiceSet>,
    what: &str,
    f: impl Fn(&ServiceSet) -> bool,
) {
    let waited = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| f(s))).await;
    assert!(waited.is_ok(), "gave up waiting for: {what}");
}

fn status_of(set: &ServiceSet, id: &str) -> Option<HealthStatus> {
    set.endpoints
        .iter()
        .find(|e| e.instance.id == id)
        .map(|e| e.status)
}

/// An upstream that answers `status` to every request and counts them.
async fn upstream(status: StatusCode) -> (u16, Arc<AtomicUsize>, CancellationToken) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            status
        }
    });
    let (l, addr) = common::listener().await;
    let stop = CancellationToken::new();
    common::serve(l, router, stop.clone());
    (addr.port(), hits, stop)
}

#[tokio::test]
async fn failing_http_check_turns_critical_after_exactly_the_configured_failures_then_deregisters()
{
    let (port, hits, _stop) = upstream(StatusCode::INTERNAL_SERVER_ERROR).await;
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let mut rx = r.watch(&users());
    let check = r#""status":"passing","check":{"type":"http","path":"/health","interval":"400ms","timeout":"200ms","failures_before_critical":3,"deregister_after":"1s"}"#;
    let (status, _, _) = common::call(
        &r,
        Method::POST,
        "/api/v1/registry/instances",
        Some(&common::registration("users", "u1", port, check)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    wait_until(&mut rx, "u1 critical", |s| {
        status_of(s, "u1") == Some(HealthStatus::Critical)
    })
    .await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "critical on the third failure, not before or after"
    );
    wait_until(&mut rx, "u1 deregistered", |s| status_of(s, "u1").is_none()).await;
    let record = r.record(&users(), "u1");
    assert!(record.is_none());
    assert!(
        r.metrics_text()
            .contains("flotilla_registry_checks_total{kind=\"http\",status=\"critical\"}")
    );
}

#[tokio::test]
async fn a_new_instance_is_not_routed_until_its_check_passes_and_429_is_a_warning() {
    let (ok_port, _, _a) = upstream(StatusCode::OK).await;
    let (busy_port, _, _b) = upstream(StatusCode::TOO_MANY_REQUESTS).await;
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let mut rx = r.watch(&users());
    let check = r#""check":{"type":"http","interval":"200ms","timeout":"100ms"}"#;
    for (id, port) in [("ok", ok_port), ("busy", busy_port)] {
        let body = common::registration("users", id, port, check);
        let (status, _, json) =
            common::call(&r, Method::POST, "/api/v1/registry/instances", Some(&body)).await;
        assert_eq!(
            (status, json["status"].as_str()),
            (StatusCode::OK, Some("critical"))
        );
    }
    assert_eq!(
        rx.borrow().routable().count(),
        0,
        "nothing routable before a check passed"
    );
    wait_until(&mut rx, "ok passing", |s| {
        status_of(s, "ok") == Some(HealthStatus::Passing)
    })
    .await;
    wait_until(&mut rx, "busy warning", |s| {
        status_of(s, "busy") == Some(HealthStatus::Warning)
    })
    .await;
}

#[tokio::test]
async fn tcp_check_passes_when_the_port_accepts_and_fails_when_it_does_not() {
    let (port, _, stop) = upstream(StatusCode::OK).await;
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let mut rx = r.watch(&users());
    let check = r#""check":{"type":"tcp","interval":"200ms","timeout":"100ms"}"#;
    common::call(
        &r,
        Method::POST,
        "/api/v1/registry/instances",
        Some(&common::registration("users", "t1", port, check)),
    )
    .await;
    wait_until(&mut rx, "t1 passing", |s| {
        status_of(s, "t1") == Some(HealthStatus::Passing)
    })
    .await;
    stop.cancel();
    wait_until(&mut rx, "t1 critical", |s| {
        status_of(s, "t1") == Some(HealthStatus::Critical)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_ttl_instance_that_stops_heartbeating_turns_critical() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let check = r#""check":{"type":"ttl","ttl":"10s"}"#;
    common::call(
        &r,
        Method::POST,
        "/api/v1/registry/instances",
        Some(&common::registration("users", "t1", 80, check)),
    )
    .await;
    assert_eq!(
        r.snapshot(&users()).endpoints[0].status,
        HealthStatus::Critical,
        "critical until the first heartbeat"
    );
    for _ in 0..3 {
        let (status, _, json) = common::call(
            &r,
            Method::PUT,
            "/api/v1/registry/services/users/instances/t1/heartbeat",
            None,
        )
        .await;
        assert_eq!(
            (status, json["status"].as_str()),
            (StatusCode::OK, Some("passing"))
        );
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            r.snapshot(&users()).endpoints[0].status,
            HealthStatus::Passing,
            "heartbeats within the TTL keep it passing"
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let record = r.record(&users(), "t1").unwrap();
    assert_eq!(record.status, HealthStatus::Critical);
    assert!(record.output.contains("TTL"), "{}", record.output);
}

#[tokio::test(start_paused = true)]
async fn a_ttl_instance_critical_past_deregister_after_is_removed() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let check = r#""status":"passing","check":{"type":"ttl","ttl":"5s","deregister_after":"20s"}"#;
    common::call(
        &r,
        Method::POST,
        "/api/v1/registry/instances",
        Some(&common::registration("users", "t1", 80, check)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        r.record(&users(), "t1").unwrap().status,
        HealthStatus::Critical
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        r.record(&users(), "t1").is_some(),
        "still there 15s into critical"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        r.record(&users(), "t1").is_none(),
        "gone after 20s critical"
    );
}

#[tokio::test]
async fn a_new_instance_is_probed_at_once_not_at_a_random_point_of_its_interval() {
    let (port, hits, _stop) = upstream(StatusCode::OK).await;
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let mut rx = r.watch(&users());
    // With a one-hour interval a jittered first probe would almost surely come too late.
    let check = r#""check":{"type":"http","path":"/health","interval":"1h"}"#;
    common::call(
        &r,
        Method::POST,
        "/api/v1/registry/instances",
        Some(&common::registration("users", "u1", port, check)),
    )
    .await;
    let waited = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| status_of(s, "u1") == Some(HealthStatus::Passing)),
    )
    .await;
    assert!(
        waited.is_ok(),
        "u1 was not probed within 5 s of registering"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
