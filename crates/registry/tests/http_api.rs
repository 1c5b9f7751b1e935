//! The native HTTP API: validation, limits, tokens, discovery filters, drain, persistence.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use flotilla_core::ServiceName;
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_discovery::{Discovery, HealthStatus};
use flotilla_registry::Options;

const REGISTER: &str = "/api/v1/registry/instances";

#[tokio::test]
async fn bad_names_and_oversized_payloads_are_refused_and_change_nothing() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let bad_name = common::registration("Bad_Name", "x", 80, "");
    let (status, headers, json) = common::call(&r, Method::POST, REGISTER, Some(&bad_name)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(
        json["detail"].as_str().unwrap().contains("\"Bad_Name\""),
        "{json}"
    );

    let tags: Vec<String> = (0..65).map(|i| format!("\"t{i}\"")).collect();
    let many = common::registration("users", "u1", 80, &format!("\"tags\":[{}]", tags.join(",")));
    let (status, _, json) = common::call(&r, Method::POST, REGISTER, Some(&many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json["detail"].as_str().unwrap().contains("tags"), "{json}");

    let huge_meta = common::registration(
        "users",
        "u1",
        80,
        &format!("\"metadata\":{{\"k\":\"{}\"}}", "v".repeat(600)),
    );
    let (status, _, json) = common::call(&r, Method::POST, REGISTER, Some(&huge_meta)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["detail"].as_str().unwrap().contains("metadata.k"),
        "{json}"
    );

    let oversized = common::registration(
        "users",
        "u1",
        80,
        &format!("\"version\":\"{}\"", "1".repeat(70_000)),
    );
    let (status, _, json) = common::call(&r, Method::POST, REGISTER, Some(&oversized)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");

    let (status, _, _) = common::call(&r, Method::POST, REGISTER, Some("{\"name\":")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bad_check = common::registration(
        "users",
        "u1",
        80,
        r#""check":{"type":"http","interval":"1ms"}"#,
    );
    let (status, _, _) = common::call(&r, Method::POST, REGISTER, Some(&bad_check)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert!(
        r.services().is_empty(),
        "no refused request touched the catalog"
    );
    assert_eq!(r.index(), 0);
}

#[tokio::test]
async fn writes_need_the_token_when_one_is_configured() {
    let options = Options {
        token: Some("s3cret".into()),
        ..Options::default()
    };
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), options).await;
    let body = common::registration("users", "u1", 80, "");
    let (status, headers, _) = common::call(&r, Method::POST, REGISTER, Some(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) =
        common::call_with(&r, Method::POST, REGISTER, Some(&body), Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(r.services().is_empty());
    let (status, _, _) =
        common::call_with(&r, Method::POST, REGISTER, Some(&body), Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) =
        common::call(&r, Method::GET, "/api/v1/registry/services/users", None).await;
    assert_eq!(status, StatusCode::OK, "reads stay open");
}

#[tokio::test]
async fn discovery_filters_by_status_version_tags_and_metadata() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let regs = [
        (
            "a",
            r#""version":"1.2.0","tags":["canary","eu"],"metadata":{"zone":"eu-1"}"#,
        ),
        (
            "b",
            r#""version":"2.0.0","tags":["eu"],"metadata":{"zone":"eu-2"}"#,
        ),
        ("c", r#""version":"1.5.0","status":"critical""#),
    ];
    for (id, extra) in regs {
        let (status, _, _) = common::call(
            &r,
            Method::POST,
            REGISTER,
            Some(&common::registration("users", id, 80, extra)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let ids = |json: &serde_json::Value| -> Vec<String> {
        json["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let base = "/api/v1/registry/services/users";
    let cases = [
        ("", vec!["a", "b"]),
        ("?status=any", vec!["a", "b", "c"]),
        ("?status=critical", vec!["c"]),
        ("?version=%5E1", vec!["a"]),
        ("?tags=canary,eu", vec!["a"]),
        ("?tags=canary,nope&tag_match=any", vec!["a"]),
        ("?meta.zone=eu-2", vec!["b"]),
    ];
    for (query, expected) in cases {
        let (status, headers, json) =
            common::call(&r, Method::GET, &format!("{base}{query}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids(&json), expected, "{query}");
        assert_eq!(
            headers["x-flotilla-revision"],
            json["revision"].to_string().as_str()
        );
    }
    let (status, _, json) =
        common::call(&r, Method::GET, &format!("{base}?version=one"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    let (_, _, list) = common::call(&r, Method::GET, "/api/v1/registry/services", None).await;
    assert_eq!(list[0]["name"], "users");
    assert_eq!(
        (list[0]["instances"].as_u64(), list[0]["routable"].as_u64()),
        (Some(3), Some(2))
    );
}

#[tokio::test]
async fn a_drained_instance_leaves_discovery_at_once_and_deregister_removes_it() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let users = ServiceName::new("users").unwrap();
    for id in ["a", "b"] {
        common::call(
            &r,
            Method::POST,
            REGISTER,
            Some(&common::registration("users", id, 80, "")),
        )
        .await;
    }
    let rx = r.watch(&users);
    let (status, _, json) = common::call(
        &r,
        Method::PUT,
        "/api/v1/registry/services/users/instances/a/drain",
        None,
    )
    .await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("draining"))
    );
    let routable: Vec<_> = rx.borrow().routable().map(|i| i.id.clone()).collect();
    assert_eq!(routable, vec!["b".to_string()]);
    let (status, _, _) = common::call(
        &r,
        Method::PUT,
        "/api/v1/registry/services/users/instances/a/heartbeat",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        r.record(&users, "a").unwrap().status,
        HealthStatus::Draining,
        "a heartbeat does not undo a drain"
    );
    let (status, _, _) = common::call(
        &r,
        Method::DELETE,
        "/api/v1/registry/services/users/instances/a",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = common::call(
        &r,
        Method::DELETE,
        "/api/v1/registry/services/users/instances/a",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(r.snapshot(&users).endpoints.len(), 1);
}

#[tokio::test]
async fn the_catalog_survives_a_restart_with_statuses_and_revisions() {
    let store = MemoryCatalogStore::new();
    let users = ServiceName::new("users").unwrap();
    let before = {
        let (r, stop) = common::registry(&store, Options::default()).await;
        let check = r#""status":"passing","check":{"type":"ttl","ttl":"1h"}"#;
        common::call(
            &r,
            Method::POST,
            REGISTER,
            Some(&common::registration("users", "a", 80, check)),
        )
        .await;
        common::call(
            &r,
            Method::POST,
            REGISTER,
            Some(&common::registration("users", "b", 81, "")),
        )
        .await;
        common::call(
            &r,
            Method::PUT,
            "/api/v1/registry/services/users/instances/b/drain",
            None,
        )
        .await;
        stop.cancel();
        r.snapshot(&users)
    };
    let (r, _run) = common::registry(&store, Options::default()).await;
    let after = r.snapshot(&users);
    assert_eq!(after, before, "same instances, statuses and revision");
    common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("users", "c", 82, "")),
    )
    .await;
    assert!(
        r.snapshot(&users).revision > before.revision,
        "revisions continue upwards"
    );
}

#[tokio::test]
async fn metrics_report_instances_by_status_and_watchers() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    common::call(
        &r,
        Method::POST,
        REGISTER,
        Some(&common::registration("users", "a", 80, "")),
    )
    .await;
    let _w1 = r.watch(&ServiceName::new("users").unwrap());
    let _w2 = r.watch(&ServiceName::new("orders").unwrap());
    let (status, _, text) = common::call(&r, Method::GET, "/api/v1/registry/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let samples = flotilla_testkit::prometheus::parse(text.as_str().unwrap()).unwrap();
    let sum =
        |name, labels: &[(&str, &str)]| flotilla_testkit::prometheus::sum(&samples, name, labels);
    assert_eq!(
        sum("flotilla_registry_instances", &[("status", "passing")]),
        1.0
    );
    assert_eq!(
        sum("flotilla_registry_instances", &[("status", "critical")]),
        0.0
    );
    assert_eq!(sum("flotilla_registry_watchers", &[]), 2.0);
}

#[tokio::test]
async fn re_registering_an_unchanged_instance_keeps_its_status_and_revision() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let users = ServiceName::new("users").unwrap();
    let body = common::registration("users", "a", 80, r#""check":{"type":"ttl","ttl":"1m"}"#);
    common::call(&r, Method::POST, REGISTER, Some(&body)).await;
    common::call(
        &r,
        Method::PUT,
        "/api/v1/registry/services/users/instances/a/heartbeat",
        None,
    )
    .await;
    let before = r.snapshot(&users);
    let (status, _, json) = common::call(&r, Method::POST, REGISTER, Some(&body)).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (StatusCode::OK, Some("passing"))
    );
    assert_eq!(r.snapshot(&users), before, "no new revision, no wake-up");
    let changed = common::registration(
        "users",
        "a",
        80,
        r#""version":"2.0.0","check":{"type":"ttl","ttl":"1m"}"#,
    );
    let (_, _, json) = common::call(&r, Method::POST, REGISTER, Some(&changed)).await;
    assert_eq!(
        json["status"], "critical",
        "a changed instance with a check starts over"
    );
}
