//! Drains and Consul maintenance: what takes an instance out of rotation and what brings it
//! back. A re-registration ends a drain (a restarted process claims its id); a Consul
//! maintenance outlives it, as in Consul, until disabled.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use flotilla_core::ServiceName;
use flotilla_discovery::HealthStatus;
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_registry::{DrainKind, Options, Registry};

const REGISTER: &str = "/api/v1/registry/instances";
const TTL: &str = r#""check":{"type":"ttl","ttl":"1h"},"status":"passing""#;

fn users() -> ServiceName {
    ServiceName::new("users").unwrap()
}

fn status(r: &Registry) -> HealthStatus {
    r.record(&users(), "a").unwrap().status
}

async fn register(r: &Registry) {
    let body = common::registration("users", "a", 80, TTL);
    let (code, _, json) = common::call(r, Method::POST, REGISTER, Some(&body)).await;
    assert_eq!(code, StatusCode::OK, "{json}");
}

async fn put(r: &Registry, uri: &str) {
    let (code, _, json) = common::call(r, Method::PUT, uri, None).await;
    assert_eq!(code, StatusCode::OK, "{uri}: {json}");
}

#[tokio::test]
async fn re_registering_a_drained_instance_ends_the_drain() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    register(&r).await;
    put(&r, "/api/v1/registry/services/users/instances/a/drain").await;
    assert_eq!(status(&r), HealthStatus::Draining);
    // The unchanged registration a restarted process sends.
    register(&r).await;
    assert_eq!(status(&r), HealthStatus::Passing);
    assert_eq!(r.record(&users(), "a").unwrap().drain, None);
}

#[tokio::test]
async fn a_drained_instance_returns_to_what_its_check_said_meanwhile() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    register(&r).await;
    put(&r, "/api/v1/registry/services/users/instances/a/drain").await;
    let beat = r#"{"status":"critical","output":"disk full"}"#;
    let (code, _, _) = common::call(
        &r,
        Method::PUT,
        "/api/v1/registry/services/users/instances/a/heartbeat",
        Some(beat),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        status(&r),
        HealthStatus::Draining,
        "a heartbeat never undoes it"
    );
    let body = common::registration("users", "a", 80, r#""check":{"type":"ttl","ttl":"1h"}"#);
    common::call(&r, Method::POST, REGISTER, Some(&body)).await;
    assert_eq!(status(&r), HealthStatus::Critical);
}

#[tokio::test]
async fn consul_maintenance_outlives_re_registration_and_ends_when_disabled() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    register(&r).await;
    put(
        &r,
        "/v1/agent/service/maintenance/a?enable=true&reason=kernel%20upgrade",
    )
    .await;
    let drain = r.record(&users(), "a").unwrap().drain.unwrap();
    assert_eq!(
        (drain.kind, drain.reason.as_str(), drain.checked),
        (
            DrainKind::Maintenance,
            "kernel upgrade",
            HealthStatus::Passing
        )
    );
    put(&r, "/v1/agent/check/fail/service:a").await;
    put(&r, "/v1/agent/check/pass/service:a").await;
    register(&r).await;
    put(&r, "/api/v1/registry/services/users/instances/a/drain").await;
    assert_eq!(status(&r), HealthStatus::Draining, "maintenance stays on");
    assert_eq!(
        r.record(&users(), "a").unwrap().drain.unwrap().kind,
        DrainKind::Maintenance,
        "a drain does not weaken a maintenance"
    );
    // py-consul sends Python's `False`; Consul parses flags with Go's ParseBool.
    put(&r, "/v1/agent/service/maintenance/a?enable=False").await;
    assert_eq!(status(&r), HealthStatus::Passing);
    let (code, _, json) = common::call(
        &r,
        Method::PUT,
        "/v1/agent/service/maintenance/a?enable=maybe",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(json["detail"].as_str().unwrap().contains("maybe"), "{json}");
}

#[tokio::test]
async fn maintenance_without_a_reason_gets_consuls_default_and_shows_as_its_check() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    register(&r).await;
    put(&r, "/v1/agent/service/maintenance/a?enable=true").await;
    let (_, _, entries) = common::call(&r, Method::GET, "/v1/health/service/users", None).await;
    let checks = &entries[0]["Checks"];
    assert_eq!(checks[0]["CheckID"], "service:a");
    assert_eq!(
        checks[0]["Status"], "passing",
        "the service check itself passes"
    );
    assert_eq!(checks[1]["CheckID"], "_service_maintenance:a");
    assert_eq!(checks[1]["Status"], "critical");
    assert!(
        checks[1]["Notes"]
            .as_str()
            .unwrap()
            .contains("no reason was provided")
    );
    let (_, _, passing) =
        common::call(&r, Method::GET, "/v1/health/service/users?passing", None).await;
    assert_eq!(passing, serde_json::json!([]));
}
