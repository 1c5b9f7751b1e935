//! The Consul-compatible subset, at Consul's own paths and in Consul's JSON shapes, so Consul
//! clients and Prometheus' `consul_sd_configs` work unchanged. Flotilla plays a single Consul
//! agent on one node: every instance appears on that node, each with one service check
//! (`service:<id>`). Draining appears as critical, as Consul's maintenance mode does.

mod agent;
mod catalog;

use axum::Router;
use axum::extract::Query as RawQuery;
use axum::routing::{get, put};

use crate::Registry;

type Pairs = RawQuery<Vec<(String, String)>>;

pub(super) fn reads() -> Router<Registry> {
    Router::new()
        .route("/v1/agent/self", get(catalog::agent_self))
        .route("/v1/catalog/services", get(catalog::catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog::catalog_service))
        .route("/v1/health/service/{name}", get(catalog::health_service))
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
