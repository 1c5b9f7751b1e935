//! `POST /api/v1/admin/backup`: a copy of the embedded database, taken while the control plane
//! serves. Behind the control plane's token (it writes a file on this machine).

use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flotilla::Problem;
use flotilla_sqlite::{Database, Error};
use http::StatusCode;
use serde::Deserialize;

/// The path of the route.
pub(crate) const PATH: &str = "/api/v1/admin/backup";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// Absolute path of the new file, on the control plane's machine.
    path: PathBuf,
}

pub(crate) fn router(db: Database) -> Router {
    Router::new().route(PATH, post(backup)).with_state(db)
}

async fn backup(State(db): State<Database>, body: Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "the body must be {{\"path\": \"/abs/file.db\"}}: {e}"
            ));
        }
    };
    let path = request.path;
    if !path.is_absolute() {
        return bad(format!(
            "path {:?} must be absolute",
            path.display().to_string()
        ));
    }
    match db.backup(&path).await {
        Ok(()) => {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).ok();
            tracing::info!(path = %path.display(), ?bytes, "database backed up");
            axum::Json(serde_json::json!({ "path": path, "bytes": bytes })).into_response()
        }
        Err(e @ Error::Backup { .. }) if path.exists() => problem(StatusCode::CONFLICT, e),
        Err(e @ (Error::Backup { .. } | Error::Open { .. })) => problem(StatusCode::BAD_REQUEST, e),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "backup failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
    }
}

fn bad(detail: String) -> Response {
    Problem::new(StatusCode::BAD_REQUEST)
        .detail(detail)
        .into_response()
}

fn problem(status: StatusCode, e: Error) -> Response {
    Problem::new(status).detail(e.to_string()).into_response()
}
