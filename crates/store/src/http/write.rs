//! Writes: append, soft delete, truncate.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_eventstore::{Metadata, NewEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{expected_from, json_body, stream_id};
use crate::StoreApi;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendBody {
    #[serde(default)]
    expected_version: Option<Value>,
    events: Vec<EventIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    /// Send it to make retries idempotent; a fresh one is assigned when absent.
    id: Option<Uuid>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    metadata: Metadata,
}

pub(super) async fn append(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let stream = stream_id(&stream)?;
    let body: AppendBody = json_body(&api, "append", body).await?;
    if body.events.len() > api.options.max_events_per_append {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many events",
            format!(
                "{} events in one append; at most {} are accepted",
                body.events.len(),
                api.options.max_events_per_append
            ),
        ));
    }
    let expected = expected_from(&headers, body.expected_version.as_ref())?;
    let events = body
        .events
        .into_iter()
        .map(|e| NewEvent {
            id: e.id.unwrap_or_else(Uuid::now_v7),
            event_type: e.event_type,
            data: e.data,
            metadata: e.metadata,
        })
        .collect();
    let result = api.store.append(&stream, expected, events).await?;
    Ok((StatusCode::CREATED, Json(result)).into_response())
}

pub(super) async fn delete_stream(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let stream = stream_id(&stream)?;
    let expected = expected_from(&headers, None)?;
    api.store.delete_stream(&stream, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TruncateBody {
    /// Events with a version below this one are removed.
    before: u64,
}

/// `POST .../{stream}/truncate` (a POST, not a DELETE with a body: proxies drop those).
pub(super) async fn truncate(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    body: Body,
) -> Result<Json<Value>, Problem> {
    let stream = stream_id(&stream)?;
    let body: TruncateBody = json_body(&api, "truncate", body).await?;
    let removed = api.store.truncate_stream(&stream, body.before).await?;
    Ok(Json(json!({ "removed": removed })))
}
