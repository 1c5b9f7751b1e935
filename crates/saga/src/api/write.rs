//! `POST` handlers: start, cancel, retry.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, json_body, render};
use crate::Orchestrator;

/// A start: the saga's input and, for a start that may be repeated safely, its id.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartBody {
    #[serde(default)]
    data: Value,
    id: Option<String>,
}

/// `201 Created` with the id and a `Location`; `200` when the id already named the same
/// start.
pub(super) async fn start(
    State(orch): State<Orchestrator>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    // The host's request pipeline put this hop's own context in the headers.
    let trace = flotilla_telemetry::headers::extract(&headers);
    let StartBody { data, id } = json_body(body).await?;
    let (id, created) = match id {
        Some(id) => {
            let started = orch
                .start_with_id_in_trace(&name, &id, data, trace.as_ref())
                .await?;
            (started.id, started.created)
        }
        None => (
            orch.start_in_trace(&name, data, trace.as_ref()).await?,
            true,
        ),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/sagas/{id}");
    let body = Json(json!({ "id": id, "name": name, "created": created }));
    Ok((status, [(header::LOCATION, location)], body).into_response())
}

pub(super) async fn cancel(
    State(orch): State<Orchestrator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let state = orch.cancel(&id).await?;
    Ok(Json(render::instance(&state)))
}

pub(super) async fn retry(
    State(orch): State<Orchestrator>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let state = orch.retry(&id).await?;
    Ok(Json(render::instance(&state)))
}
