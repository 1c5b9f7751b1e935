//! The operations API, `/api/v1/sagas`: start, list, show with a timeline, cancel, retry,
//! and the registered definitions. The control plane mounts [`router`] beside the store's
//! and the bus's. Every write is a `POST`, so the control plane's bearer-token check (which
//! lets reads through) guards them all.
//!
//! The path's second segment is a definition name for `POST` (start) and an instance id for
//! `GET` (show): both are one segment, so one route serves both. `definitions` is therefore
//! not usable as a saga name over HTTP.

mod problem;
mod read;
mod render;
mod write;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::Orchestrator;
use problem::Problem;

/// Largest request body: a start's input.
const MAX_BODY: usize = 1024 * 1024;

/// The sagas API on `orchestrator`.
pub fn router(orchestrator: Orchestrator) -> Router {
    Router::new()
        .route("/api/v1/sagas", get(read::list))
        .route("/api/v1/sagas/definitions", get(read::definitions))
        .route("/api/v1/sagas/{key}", get(read::show).post(write::start))
        .route("/api/v1/sagas/{key}/{id}", get(read::show_named))
        .route("/api/v1/sagas/{key}/cancel", post(write::cancel))
        .route("/api/v1/sagas/{key}/retry", post(write::retry))
        .with_state(orchestrator)
}

/// A query string decoded into `T`; a bad one is a problem+json 400 naming the field (axum's
/// own `Query` answers plain text).
struct Q<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| Problem::bad_request("query", format!("query string: {}", e.body_text())))
    }
}

/// Reads a JSON body whatever its content type; an empty body is `T`'s default. A bad one is
/// a 400 naming the field.
async fn json_body<T: DeserializeOwned + Default>(body: Body) -> Result<T, Problem> {
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| {
        Problem::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "Body too large",
            format!("a body may be at most {MAX_BODY} bytes"),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // axum's decoder names the path of the bad field; serde_json's gives a line and column.
    axum::Json::from_bytes(&bytes)
        .map(|axum::Json(value)| value)
        .map_err(|e| Problem::bad_request("body", format!("body: {}", e.body_text())))
}
