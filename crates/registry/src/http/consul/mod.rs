//! The Consul-compatible subset, at Consul's own paths and in Consul's JSON shapes, so Consul
//! clients and Prometheus' `consul_sd_configs` work unchanged. Flotilla plays a single Consul
//! agent on one node: every instance appears on that node, each with one service check
//! (`service:<id>`); a drained instance also carries Consul's maintenance check and is
//! critical, as in Consul's maintenance mode.

mod agent;
mod catalog;
mod health;
mod keys;
mod local;
mod shapes;

use axum::Router;
use axum::extract::Query as RawQuery;
use axum::routing::{get, put};
use flotilla_discovery::{HealthStatus, Query};

use crate::Registry;
use crate::record::InstanceRecord;

type Pairs = RawQuery<Vec<(String, String)>>;

pub(super) fn reads() -> Router<Registry> {
    Router::new()
        .route("/v1/agent/self", get(catalog::agent_self))
        .route("/v1/agent/services", get(local::services))
        .route("/v1/agent/service/{id}", get(local::service))
        .route("/v1/agent/checks", get(local::checks))
        .route("/v1/catalog/services", get(catalog::catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog::catalog_service))
        .route("/v1/catalog/nodes", get(catalog::catalog_nodes))
        .route("/v1/catalog/datacenters", get(catalog::catalog_datacenters))
        .route("/v1/status/leader", get(catalog::status_leader))
        .route("/v1/status/peers", get(catalog::status_peers))
        .route("/v1/health/service/{name}", get(health::health_service))
        .route("/v1/health/checks/{name}", get(health::health_checks))
        .route("/v1/health/state/{state}", get(health::health_state))
}

/// Every instance of every service, whatever its status, by service then id.
fn every_instance(r: &Registry) -> Vec<InstanceRecord> {
    let mut any = Query::default();
    any.status = vec![
        HealthStatus::Passing,
        HealthStatus::Warning,
        HealthStatus::Critical,
        HealthStatus::Draining,
    ];
    r.services()
        .into_iter()
        .flat_map(|s| r.instances(&s.name, &any).1)
        .collect()
}

pub(super) fn writes() -> Router<Registry> {
    Router::new()
        .route("/v1/agent/service/register", put(agent::register))
        .route("/v1/agent/service/deregister/{id}", put(agent::deregister))
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(agent::maintenance),
        )
        .route(
            "/v1/agent/check/{verdict}/{check_id}",
            put(agent::check_update),
        )
}
