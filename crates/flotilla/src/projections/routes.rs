//! `/admin/projections`: state and progress of hosted projections, and rebuilds.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Value, json};

use super::host::{Refusal, Shared};
use crate::admin::{AdminAccess, guard};
use crate::problem::Problem;

type Hosted = Arc<BTreeMap<String, Arc<Shared>>>;

pub(super) fn router(hosted: Hosted, access: AdminAccess) -> Router {
    Router::new()
        .route("/admin/projections", get(list))
        .route("/admin/projections/{name}", get(show))
        .route("/admin/projections/{name}/rebuild", post(rebuild))
        .with_state(hosted)
        .layer(axum::middleware::from_fn_with_state(access, guard))
}

fn unknown(name: &str) -> Problem {
    Problem::not_found(format!("this service hosts no projection named {name:?}"))
}

/// The projection's status with its checkpoint and lag read from the store now.
async fn describe(shared: &Shared) -> Result<Value, Problem> {
    let head = *shared.store.head().borrow();
    let checkpoint = shared
        .store
        .load_checkpoint(&shared.name)
        .await
        .map_err(|e| {
            tracing::error!(projection = %shared.name, error = %e, "reading a checkpoint failed");
            Problem::internal()
        })?
        .unwrap_or(0);
    let status = shared.status();
    Ok(json!({
        "name": shared.name,
        "state": status.state,
        "error": status.error,
        "checkpoint": checkpoint,
        "head": head,
        "lag": head.saturating_sub(checkpoint),
        "rebuild": status.rebuild,
    }))
}

async fn list(State(hosted): State<Hosted>) -> Result<Response, Problem> {
    let mut projections = Vec::with_capacity(hosted.len());
    for shared in hosted.values() {
        projections.push(describe(shared).await?);
    }
    Ok(axum::Json(json!({ "projections": projections })).into_response())
}

async fn show(State(hosted): State<Hosted>, Path(name): Path<String>) -> Result<Response, Problem> {
    let shared = hosted.get(&name).ok_or_else(|| unknown(&name))?;
    Ok(axum::Json(describe(shared).await?).into_response())
}

async fn rebuild(
    State(hosted): State<Hosted>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let shared = hosted.get(&name).ok_or_else(|| unknown(&name))?;
    match shared.request_rebuild() {
        Ok(rebuild) => {
            let body = json!({ "name": name, "rebuild": rebuild });
            Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
        }
        Err(Refusal::Running(id)) => Err(Problem::new(StatusCode::CONFLICT).detail(format!(
            "rebuild {id} of projection {name:?} is still running; wait for it to finish"
        ))),
        Err(Refusal::Stopped) => Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .detail("the service is shutting down; its projections are stopped")),
    }
}
