//! Consul's health reads: service entries, a service's checks, and checks by state.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use flotilla_discovery::HealthStatus;
use serde_json::{Value, json};

use super::catalog::tagged;
use super::{Pairs, every_instance, shapes};
use crate::http::Blocking;
use crate::http::api::with_index;
use crate::record::InstanceRecord;
use crate::{Error, Registry};

pub(super) async fn health_service(
    State(r): State<Registry>,
    Path(name): Path<String>,
    axum::extract::Query(pairs): Pairs,
) -> Result<Response, Error> {
    let (revision, records) = tagged(&r, &name, &pairs).await?;
    // `?passing` (any value but "false"/"0") keeps only instances whose checks all pass.
    let passing_only = pairs
        .iter()
        .any(|(k, v)| k == "passing" && v != "false" && v != "0");
    let o = r.options();
    let node = shapes::node(o);
    let body: Vec<Value> = records
        .iter()
        .filter(|rec| !passing_only || rec.status == HealthStatus::Passing)
        .map(|rec| {
            json!({
                "Node": node,
                "Service": service_view(rec),
                "Checks": shapes::checks(o, rec),
            })
        })
        .collect();
    Ok(with_index(Json(body).into_response(), revision))
}

/// The `Service` of a health entry (Consul's `AgentService` with indexes).
fn service_view(rec: &InstanceRecord) -> Value {
    let i = &rec.instance;
    json!({
        "ID": i.id, "Service": i.name, "Tags": i.tags, "Address": i.address, "Port": i.port,
        "Meta": i.metadata, "Weights": { "Passing": i.weight, "Warning": 1 },
        "EnableTagOverride": false, "CreateIndex": rec.create_index, "ModifyIndex": rec.modify_index,
    })
}

/// `GET /v1/health/checks/{service}`: every check of the service's instances.
pub(super) async fn health_checks(
    State(r): State<Registry>,
    Path(name): Path<String>,
    axum::extract::Query(pairs): Pairs,
) -> Result<Response, Error> {
    let (revision, records) = tagged(&r, &name, &pairs).await?;
    let o = r.options();
    let body: Vec<Value> = records
        .iter()
        .flat_map(|rec| shapes::checks(o, rec))
        .collect();
    Ok(with_index(Json(body).into_response(), revision))
}

/// `GET /v1/health/state/{state}`: every check in `state` (`any`, `passing`, `warning`,
/// `critical`), blocking on the catalog-wide index.
pub(super) async fn health_state(
    State(r): State<Registry>,
    Path(state): Path<String>,
    axum::extract::Query(pairs): Pairs,
) -> Result<Response, Error> {
    if !["any", "passing", "warning", "critical"].contains(&state.as_str()) {
        return Err(Error::Invalid(format!(
            "state {state:?} must be any, passing, warning or critical"
        )));
    }
    Blocking::parse(&pairs, &r)?
        .wait_on(r.watch_index(), |i| *i)
        .await;
    let o = r.options();
    let body: Vec<Value> = every_instance(&r)
        .iter()
        .flat_map(|rec| shapes::checks(o, rec))
        .filter(|c| state == "any" || c["Status"] == state.as_str())
        .collect();
    Ok(with_index(Json(body).into_response(), r.index()))
}
