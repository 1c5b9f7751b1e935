//! The dead-letter endpoints: list, show, replay, purge.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use bytes::Bytes;
use flotilla_bus::{DeadLetter, DlqQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, group, json_body, limits, millis, no_content, ok, query_error};
use crate::Broker;

/// Most dead letters one list answers.
pub(crate) const MAX_DLQ_PAGE: usize = 1000;

fn dead_letter(d: DeadLetter) -> Value {
    json!({
        "id": d.id,
        "group": d.group,
        "topic": d.topic,
        "reason": d.reason,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "published_at_ms": millis(d.published_at),
        "dead_lettered_at_ms": millis(d.dead_lettered_at),
        "event": d.event,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DlqParams {
    group: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn list(
    State(b): State<Broker>,
    q: Result<Query<DlqParams>, QueryRejection>,
) -> Answer {
    let Query(q) = q.map_err(query_error)?;
    let query = DlqQuery {
        group: q.group.map(group).transpose()?,
        after: q.after,
        limit: limits::within("limit", q.limit.unwrap_or(100), 1, MAX_DLQ_PAGE)?,
    };
    let list = b.backend.dlq_list(&query).await?;
    ok(json!({ "dead_letters": list.into_iter().map(dead_letter).collect::<Vec<_>>() }))
}

pub(crate) async fn get(State(b): State<Broker>, Path(id): Path<String>) -> Answer {
    ok(dead_letter(b.backend.dlq_get(&id).await?))
}

pub(crate) async fn replay(State(b): State<Broker>, Path(id): Path<String>) -> Answer {
    b.backend.dlq_replay(&id).await?;
    no_content()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Purge {
    ids: Vec<String>,
}

pub(crate) async fn purge(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let p: Purge = json_body(&body)?;
    let n = b.backend.dlq_purge(&group(g)?, &p.ids).await?;
    ok(json!({ "purged": n }))
}
