//! Handlers of `/api/v1/streams`: one module per kind of operation (writes, reads, snapshots
//! and checkpoints, live streams); the parsing every handler shares lives here.
//!
//! Writes are never `GET`s: the control plane lets reads through without its bearer token.

mod live;
mod meta;
mod read;
mod write;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use flotilla_core::StreamId;
use flotilla_eventstore::ExpectedVersion;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::StoreApi;
use crate::problem::Problem;

const HEADER: &str = "expected-version";

pub(crate) fn router(api: StoreApi) -> Router {
    Router::new()
        .route("/api/v1/streams", get(read::list_streams))
        .route("/api/v1/streams/$all", get(read::read_all))
        .route("/api/v1/streams/$all/subscribe", get(live::subscribe))
        .route("/api/v1/streams/$head", get(live::head))
        .route(
            "/api/v1/streams/$subscriptions",
            get(meta::list_subscriptions),
        )
        .route(
            "/api/v1/streams/$subscriptions/{name}",
            get(meta::load_checkpoint).put(meta::save_checkpoint),
        )
        .route(
            "/api/v1/streams/{stream}",
            get(read::read_stream)
                .post(write::append)
                .delete(write::delete_stream),
        )
        .route(
            "/api/v1/streams/{stream}/version",
            get(read::stream_version),
        )
        .route("/api/v1/streams/{stream}/truncate", post(write::truncate))
        .route(
            "/api/v1/streams/{stream}/snapshot",
            get(meta::load_snapshot).put(meta::save_snapshot),
        )
        .with_state(api)
}

/// A query string decoded into `T`; a bad one is a problem+json 400 naming the field (axum's
/// own `Query` answers plain text).
pub(crate) struct Q<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| Problem::bad_request(format!("query string: {}", e.body_text())))
    }
}

/// Reads a JSON body of at most `max_body_bytes` whatever its content type; a bad one is a 400
/// naming the field.
pub(crate) async fn json_body<T: DeserializeOwned>(
    api: &StoreApi,
    what: &str,
    body: Body,
) -> Result<T, Problem> {
    let bytes = to_bytes(body, api.options.max_body_bytes)
        .await
        .map_err(|_| {
            let limit = api.options.max_body_bytes;
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                format!("a {what} body may be at most {limit} bytes"),
            )
        })?;
    // axum's decoder names the path of the bad field (`events[2].type: ...`); serde_json's
    // own message gives only a line and column.
    axum::Json::from_bytes(&bytes)
        .map(|axum::Json(value)| value)
        .map_err(|e| Problem::bad_request(format!("{what} body: {}", e.body_text())))
}

pub(crate) fn stream_id(raw: &str) -> Result<StreamId, Problem> {
    StreamId::new(raw).map_err(|e| Problem::bad_request(e.to_string()))
}

/// Parses `any`, `no-stream`, `exists` or a version number.
fn parse_expected(raw: &str) -> Result<ExpectedVersion, Problem> {
    match raw.trim() {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" => Ok(ExpectedVersion::NoStream),
        "exists" => Ok(ExpectedVersion::StreamExists),
        n => n.parse().map(ExpectedVersion::Exact).map_err(|_| {
            Problem::bad_request(format!(
                "expected version {n:?} must be any, no-stream, exists or a version number"
            ))
        }),
    }
}

pub(crate) fn expected_from(
    headers: &HeaderMap,
    field: Option<&Value>,
) -> Result<ExpectedVersion, Problem> {
    if let Some(h) = headers.get(HEADER) {
        let raw = h
            .to_str()
            .map_err(|_| Problem::bad_request("Expected-Version is not text"))?;
        return parse_expected(raw);
    }
    match field {
        None | Some(Value::Null) => Ok(ExpectedVersion::Any),
        Some(Value::Number(n)) => n.as_u64().map(ExpectedVersion::Exact).ok_or_else(|| {
            Problem::bad_request(format!("expected_version {n} must be a whole number >= 0"))
        }),
        Some(Value::String(s)) => parse_expected(s),
        Some(other) => Err(Problem::bad_request(format!(
            "expected_version {other} must be a string or a number"
        ))),
    }
}

/// The page size a read asked for (default 100), capped at `max_read_limit`.
pub(crate) fn capped(api: &StoreApi, limit: Option<usize>) -> usize {
    limit.unwrap_or(100).clamp(1, api.options.max_read_limit)
}
