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

async fn register(r: &flotilla_registry::Registry, body: &str) -> (StatusCode, serde_json::Value) {
    let (status, _, json) =
        common::call(r, Method::PUT, "/v1/agent/service/register", Some(body)).await;
    (status, json)
}

#[tokio::test]
async fn consul_registration_keys_match_ignoring_case_and_a_lowercase_check_is_kept() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    // The body py-consul sends, plus a snake_case key and a field Consul has and Flotilla ignores.
    let body = r#"{"name": "web", "id": "web1", "port": 8000, "tags": ["a"],
        "meta": {"Zone": "eu-1"}, "enabletagoverride": true,
        "checks": [{"ttl": "15s", "deregister_critical_service_after": "1m"}],
        "tagged_addresses": {}}"#;
    let (status, json) = register(&r, body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let record = r
        .record(&flotilla_core::ServiceName::new("web").unwrap(), "web1")
        .unwrap();
    assert_eq!(record.instance.port, 8000);
    assert_eq!(
        record.instance.metadata["Zone"], "eu-1",
        "user keys keep their case"
    );
    let check = record.check.expect("the lowercase check was kept");
    assert_eq!(check.deregister_after, Some(Duration::from_secs(60)));
    assert_eq!(
        record.status,
        flotilla_discovery::HealthStatus::Critical,
        "unchecked yet, so not routable"
    );
}

#[tokio::test]
async fn consul_check_status_passing_starts_the_instance_passing() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let body = r#"{"Name":"web","ID":"web1","Port":1,"Check":{"TTL":"15s","Status":"passing"}}"#;
    assert_eq!(register(&r, body).await.0, StatusCode::OK);
    let (_, _, passing) =
        common::call(&r, Method::GET, "/v1/health/service/web?passing", None).await;
    assert_eq!(passing[0]["Service"]["ID"], "web1");
}

#[tokio::test]
async fn consul_checks_flotilla_cannot_run_are_refused_by_name_not_dropped() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    for (body, named) in [
        (
            r#"{"Name":"web","Check":{"Args":["/bin/true"],"Interval":"10s"}}"#,
            "Args",
        ),
        (
            r#"{"name":"web","checks":[{"grpc":"127.0.0.1:1","interval":"10s"}]}"#,
            "GRPC",
        ),
        (
            r#"{"Name":"web","Check":{"Interval":"10s"}}"#,
            "HTTP, TCP or TTL",
        ),
        (r#"{"Name":"web","Kind":"connect-proxy"}"#, "Kind"),
    ] {
        let (status, json) = register(&r, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(json["detail"].as_str().unwrap().contains(named), "{json}");
    }
    assert!(r.services().is_empty());
}

#[tokio::test]
async fn consul_agent_health_catalog_and_status_reads_answer_in_consuls_shapes() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    register(&r, CONSUL_REGISTRATION).await;
    let get = |uri: &'static str| {
        let r = r.clone();
        async move { common::call(&r, Method::GET, uri, None).await }
    };
    let (_, _, services) = get("/v1/agent/services").await;
    assert_eq!(services["web1"]["Service"], "web");
    assert_eq!(services["web1"]["Address"], "10.0.0.5");
    assert_eq!(services["web1"]["Weights"]["Passing"], 10);
    let (_, _, one) = get("/v1/agent/service/web1").await;
    assert_eq!(
        (one["ID"].as_str(), one["Port"].as_u64()),
        (Some("web1"), Some(8000))
    );
    assert!(one["ContentHash"].is_string());
    assert_eq!(get("/v1/agent/service/nope").await.0, StatusCode::NOT_FOUND);
    let (_, _, checks) = get("/v1/agent/checks").await;
    assert_eq!(checks["service:web1"]["Status"], "critical");
    assert_eq!(checks["service:web1"]["ServiceID"], "web1");
    let (_, h, health) = get("/v1/health/checks/web").await;
    assert!(h.contains_key("x-consul-index"));
    assert_eq!(health[0]["CheckID"], "service:web1");
    let (_, _, critical) = get("/v1/health/state/critical").await;
    assert_eq!(critical[0]["CheckID"], "service:web1");
    let (_, _, passing) = get("/v1/health/state/passing").await;
    assert_eq!(passing, serde_json::json!([]));
    let (status, _, bad) = get("/v1/health/state/sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["detail"].as_str().unwrap().contains("sideways"));
    let (_, _, nodes) = get("/v1/catalog/nodes").await;
    assert_eq!(
        (nodes[0]["Node"].as_str(), nodes[0]["Datacenter"].as_str()),
        (Some("flotilla"), Some("dc1"))
    );
    assert_eq!(
        get("/v1/catalog/datacenters").await.2,
        serde_json::json!(["dc1"])
    );
    assert_eq!(get("/v1/status/leader").await.2, "127.0.0.1:8300");
    assert_eq!(
        get("/v1/status/peers").await.2,
        serde_json::json!(["127.0.0.1:8300"])
    );
}

#[tokio::test(start_paused = true)]
async fn consul_health_state_blocks_on_the_catalog_index() {
    let (r, _run) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    register(&r, CONSUL_REGISTRATION).await;
    let uri = format!("/v1/health/state/any?index={}&wait=1m", r.index());
    let waiter = {
        let r = r.clone();
        tokio::spawn(async move { common::call(&r, Method::GET, &uri, None).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiter.is_finished(), "nothing changed yet");
    common::call(&r, Method::PUT, "/v1/agent/check/pass/service:web1", None).await;
    let (_, _, checks) = waiter.await.unwrap();
    assert_eq!(checks[0]["Status"], "passing");
}
