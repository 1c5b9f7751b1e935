//! The Consul-compatible subset behaves as Consul documents it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_registry::Options;
use tokio::time::Instant;

const CONSUL_REGISTRATION: &str = r#"{
  "ID": "web1", "Name": "web", "Tags": ["primary", "v1"], "Address": "10.0.0.5", "Port": 8000,
  "Meta": {"zone": "eu-1"}, "EnableTagOverride": false, "Weights": {"Passing": 10, "Warning": 1},
  "Check": {"TTL": "15s", "DeregisterCriticalServiceAfter": "90m"}
}"#;

#[tokio::test]
async fn consul_register_ttl_pass_and_health_passing_behave_as_consul() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let (status, _, _) = common::call(
        &r,
        Method::PUT,
        "/v1/agent/service/register",
        Some(CONSUL_REGISTRATION),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, headers, all) =
        common::call(&r, Method::GET, "/v1/health/service/web", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("x-consul-index"));
    let entry = &all[0];
    assert_eq!(entry["Service"]["ID"], "web1");
    assert_eq!(entry["Service"]["Service"], "web");
    assert_eq!(entry["Service"]["Address"], "10.0.0.5");
    assert_eq!(entry["Service"]["Port"], 8000);
    assert_eq!(entry["Service"]["Meta"]["zone"], "eu-1");
    assert_eq!(entry["Service"]["Weights"]["Passing"], 10);
    assert_eq!(entry["Checks"][0]["CheckID"], "service:web1");
    assert_eq!(
        entry["Checks"][0]["Status"], "critical",
        "TTL checks start critical, as in Consul"
    );
    let (_, _, passing) =
        common::call(&r, Method::GET, "/v1/health/service/web?passing", None).await;
    assert_eq!(passing.as_array().unwrap().len(), 0);

    let (status, _, _) = common::call(
        &r,
        Method::PUT,
        "/v1/agent/check/pass/service:web1?note=ok",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, passing) =
        common::call(&r, Method::GET, "/v1/health/service/web?passing=true", None).await;
    assert_eq!(passing[0]["Checks"][0]["Status"], "passing");
    assert_eq!(passing[0]["Checks"][0]["Output"], "ok");

    common::call(&r, Method::PUT, "/v1/agent/check/warn/service:web1", None).await;
    let (_, _, passing) =
        common::call(&r, Method::GET, "/v1/health/service/web?passing", None).await;
    assert_eq!(
        passing.as_array().unwrap().len(),
        0,
        "passing excludes warning, as in Consul"
    );

    let (status, _, _) =
        common::call(&r, Method::PUT, "/v1/agent/check/pass/service:nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn consul_catalog_endpoints_list_services_and_instances_with_tag_filters() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    common::call(
        &r,
        Method::PUT,
        "/v1/agent/service/register",
        Some(CONSUL_REGISTRATION),
    )
    .await;
    let other = r#"{"Name":"api","Port":9000}"#;
    common::call(&r, Method::PUT, "/v1/agent/service/register", Some(other)).await;
    let (_, headers, services) = common::call(&r, Method::GET, "/v1/catalog/services", None).await;
    assert_eq!(
        services,
        serde_json::json!({"api": [], "web": ["primary", "v1"]})
    );
    assert!(headers.contains_key("x-consul-index"));
    let (_, _, web) =
        common::call(&r, Method::GET, "/v1/catalog/service/web?tag=primary", None).await;
    assert_eq!(web[0]["ServiceID"], "web1");
    assert_eq!(web[0]["ServicePort"], 8000);
    assert_eq!(web[0]["ServiceTags"], serde_json::json!(["primary", "v1"]));
    let (_, _, none) =
        common::call(&r, Method::GET, "/v1/catalog/service/web?tag=canary", None).await;
    assert_eq!(none, serde_json::json!([]));
    let (_, _, api) = common::call(&r, Method::GET, "/v1/catalog/service/api", None).await;
    assert_eq!(
        (
            api[0]["ServiceID"].as_str(),
            api[0]["ServiceAddress"].as_str()
        ),
        (Some("api"), Some("127.0.0.1"))
    );
    let (status, _, _) =
        common::call(&r, Method::PUT, "/v1/agent/service/deregister/web1", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, services) = common::call(&r, Method::GET, "/v1/catalog/services", None).await;
    assert_eq!(services, serde_json::json!({"api": []}));
    let (_, _, me) = common::call(&r, Method::GET, "/v1/agent/self", None).await;
    assert_eq!(me["Config"]["Datacenter"], "dc1");
}

#[tokio::test(start_paused = true)]
async fn consul_blocking_queries_wait_on_x_consul_index() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    common::call(
        &r,
        Method::PUT,
        "/v1/agent/service/register",
        Some(CONSUL_REGISTRATION),
    )
    .await;
    let (_, headers, _) = common::call(&r, Method::GET, "/v1/health/service/web", None).await;
    let index = headers["x-consul-index"].to_str().unwrap().to_owned();
    let started = Instant::now();
    let waiter = {
        let (r, uri) = (
            r.clone(),
            format!("/v1/health/service/web?index={index}&wait=5m"),
        );
        tokio::spawn(async move { common::call(&r, Method::GET, &uri, None).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!waiter.is_finished());
    common::call(&r, Method::PUT, "/v1/agent/check/pass/service:web1", None).await;
    let (_, headers, body) = waiter.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_ne!(headers["x-consul-index"].to_str().unwrap(), index);
    assert_eq!(body[0]["Checks"][0]["Status"], "passing");
    let started = Instant::now();
    let (_, h, _) = common::call(
        &r,
        Method::GET,
        &format!("/v1/catalog/services?index={}&wait=10s", r.index()),
        None,
    )
    .await;
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(h["x-consul-index"], r.index().to_string().as_str());
}

#[tokio::test]
async fn consul_registration_with_a_bad_name_or_two_check_kinds_is_refused() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let (status, _, _) = common::call(
        &r,
        Method::PUT,
        "/v1/agent/service/register",
        Some(r#"{"Name":"Web App","Port":1}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let both = r#"{"Name":"web","Port":1,"Check":{"TTL":"10s","TCP":"127.0.0.1:1"}}"#;
    let (status, _, json) =
        common::call(&r, Method::PUT, "/v1/agent/service/register", Some(both)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(r.services().is_empty());
}
