//! `GET` handlers: list, show, definitions.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, Q, render};
use crate::{Orchestrator, SagaStatus};

/// Default and largest page of `GET /api/v1/sagas`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    name: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn list(
    State(orch): State<Orchestrator>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Value>, Problem> {
    if let Some(s) = q
        .status
        .as_deref()
        .filter(|s| !SagaStatus::LABELS.contains(s))
    {
        let labels = SagaStatus::LABELS.join(", ");
        return Err(Problem::bad_request(
            "status",
            format!("status {s:?} must be one of {labels}"),
        ));
    }
    let limit = match q.limit {
        Some(0) => return Err(Problem::bad_request("limit", "limit must be 1 or more")),
        Some(n) => n.min(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    let sagas: Vec<Value> = orch
        .list(q.name.as_deref())
        .await?
        .iter()
        .filter(|s| {
            q.status
                .as_deref()
                .is_none_or(|want| s.status.label() == want)
        })
        .take(limit)
        .map(render::instance)
        .collect();
    Ok(Json(json!({ "sagas": sagas })))
}

pub(super) async fn show(
    State(orch): State<Orchestrator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let state = orch.get(&id).await?;
    let timeline = orch.timeline(&id).await?;
    Ok(Json(render::detail(&state, &timeline)))
}

/// `GET /api/v1/sagas/{name}/{id}`: the same as by id, and a 404 if the instance is of
/// another saga.
pub(super) async fn show_named(
    State(orch): State<Orchestrator>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let state = orch.get(&id).await?;
    if state.definition != name {
        return Err(crate::Error::NotFound(format!("{name}/{id}")).into());
    }
    let timeline = orch.timeline(&id).await?;
    Ok(Json(render::detail(&state, &timeline)))
}

pub(super) async fn definitions(State(orch): State<Orchestrator>) -> Json<Value> {
    let defs: Vec<Value> = orch
        .definitions()
        .iter()
        .map(|d| render::definition(d))
        .collect();
    Json(json!({ "definitions": defs }))
}
