//! What the store keeps beside events: snapshots per stream and checkpoints per persistent
//! subscriber.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flotilla_eventstore::Snapshot;
use flotilla_eventstore::store::validate_subscriber;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{json_body, stream_id};
use crate::StoreApi;
use crate::problem::Problem;

/// `{"snapshot": {"stream","version","state"} | null}`: an absent snapshot is a normal answer,
/// not a 404, which means the stream is deleted.
pub(super) async fn load_snapshot(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
) -> Result<Json<Value>, Problem> {
    let stream = stream_id(&stream)?;
    let snapshot = api.store.load_snapshot(&stream).await?;
    Ok(Json(json!({ "snapshot": snapshot })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    version: u64,
    state: Value,
}

pub(super) async fn save_snapshot(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    body: Body,
) -> Result<StatusCode, Problem> {
    let stream = stream_id(&stream)?;
    let body: SnapshotBody = json_body(&api, "snapshot", body).await?;
    let snapshot = Snapshot {
        stream,
        version: body.version,
        state: body.state,
    };
    api.store.save_snapshot(snapshot).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Persistent subscribers (projections) with their checkpoint and lag behind the head.
pub(super) async fn list_subscriptions(
    State(api): State<StoreApi>,
) -> Result<Json<Value>, Problem> {
    let head = *api.store.head().borrow();
    let subs: Vec<Value> = api
        .store
        .list_checkpoints()
        .await?
        .into_iter()
        .map(|(name, position)| {
            json!({ "name": name, "position": position, "lag": head.saturating_sub(position) })
        })
        .collect();
    Ok(Json(json!({ "head": head, "subscriptions": subs })))
}

/// `{"name", "position": N | null}`.
pub(super) async fn load_checkpoint(
    State(api): State<StoreApi>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    validate_subscriber(&name)?;
    let position = api.store.load_checkpoint(&name).await?;
    Ok(Json(json!({ "name": name, "position": position })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointBody {
    position: u64,
}

pub(super) async fn save_checkpoint(
    State(api): State<StoreApi>,
    Path(name): Path<String>,
    body: Body,
) -> Result<StatusCode, Problem> {
    validate_subscriber(&name)?;
    let body: CheckpointBody = json_body(&api, "checkpoint", body).await?;
    api.store.save_checkpoint(&name, body.position).await?;
    Ok(StatusCode::NO_CONTENT)
}
