//! Consul's local-agent reads: the services and checks "registered with this agent", which
//! for Flotilla's single node is the whole catalog.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{every_instance, shapes};
use crate::{Error, Registry};

/// `GET /v1/agent/services`: `{id: AgentService}`.
pub(super) async fn services(State(r): State<Registry>) -> Json<BTreeMap<String, Value>> {
    let o = r.options();
    Json(
        every_instance(&r)
            .iter()
            .map(|rec| (rec.instance.id.clone(), shapes::agent_service(o, rec)))
            .collect(),
    )
}

/// `GET /v1/agent/service/{id}`: one `AgentService` with its `ContentHash`. Hash-based
/// blocking is not offered: the answer is immediate.
pub(super) async fn service(
    State(r): State<Registry>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let rec = r
        .find_by_id(&id)
        .and_then(|name| r.record(&name, &id))
        .ok_or_else(|| Error::NotFound(format!("service ID {id:?}")))?;
    let mut body = shapes::agent_service(r.options(), &rec);
    // Any change to the instance moves its modify index, so it serves as the content hash.
    body["ContentHash"] = json!(format!("{:016x}", rec.modify_index));
    Ok(Json(body).into_response())
}

/// `GET /v1/agent/checks`: `{check_id: HealthCheck}`.
pub(super) async fn checks(State(r): State<Registry>) -> Json<BTreeMap<String, Value>> {
    let o = r.options();
    let checks = every_instance(&r)
        .iter()
        .flat_map(|rec| shapes::checks(o, rec))
        .filter_map(|c| Some((c["CheckID"].as_str()?.to_owned(), c)))
        .collect();
    Json(checks)
}
