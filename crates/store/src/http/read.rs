//! Reads: one stream, its version, `$all`, the list of streams.

use axum::Json;
use axum::extract::{Path, State};
use flotilla_eventstore::{Direction, Filter, ReadAll, ReadStream};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Q, capped, stream_id};
use crate::StoreApi;
use crate::problem::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
    from: Option<u64>,
    limit: Option<usize>,
    #[serde(default)]
    direction: Direction,
}

/// Pages answer `limit`, the page size actually applied, so a client asking for more than
/// `max_read_limit` knows a full page when it sees one and reads on.
pub(super) async fn read_stream(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    Q(q): Q<StreamQuery>,
) -> Result<Json<Value>, Problem> {
    let stream = stream_id(&stream)?;
    let limit = capped(&api, q.limit);
    let from = q.from.unwrap_or(match q.direction {
        Direction::Forward => 1,
        Direction::Backward => u64::MAX,
    });
    let read = ReadStream {
        from,
        limit,
        direction: q.direction,
    };
    let events = api.store.read_stream(&stream, read).await?;
    let next = (events.len() == limit).then(|| match q.direction {
        Direction::Forward => events.last().map(|e| e.version + 1),
        Direction::Backward => events.last().map(|e| e.version.saturating_sub(1)),
    });
    Ok(Json(
        json!({ "events": events, "next": next.flatten(), "limit": limit }),
    ))
}

/// `{"version": N | null}`; a deleted stream is a 404 problem.
pub(super) async fn stream_version(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
) -> Result<Json<Value>, Problem> {
    let stream = stream_id(&stream)?;
    let version = api.store.stream_version(&stream).await?;
    Ok(Json(json!({ "stream": stream, "version": version })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn list_streams(
    State(api): State<StoreApi>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Value>, Problem> {
    let after = q.after.as_deref().map(stream_id).transpose()?;
    let limit = capped(&api, q.limit);
    let streams = api.store.list_streams(after.as_ref(), limit).await?;
    let next = (streams.len() == limit).then(|| streams.last().map(|s| s.stream.clone()));
    Ok(Json(
        json!({ "streams": streams, "next_after": next.flatten(), "limit": limit }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AllQuery {
    pub(super) after: Option<u64>,
    limit: Option<usize>,
    category: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

pub(super) fn filter_of(q: &AllQuery) -> Result<Filter, Problem> {
    match (&q.category, &q.event_type) {
        (None, None) => Ok(Filter::All),
        (Some(c), None) => Ok(Filter::Category(c.clone())),
        (None, Some(t)) => Ok(Filter::EventType(t.clone())),
        (Some(_), Some(_)) => Err(Problem::bad_request(
            "filter by category or by type, not both",
        )),
    }
}

pub(super) async fn read_all(
    State(api): State<StoreApi>,
    Q(q): Q<AllQuery>,
) -> Result<Json<Value>, Problem> {
    let limit = capped(&api, q.limit);
    let read = ReadAll::after(q.after.unwrap_or(0), limit).filtered(filter_of(&q)?);
    let events = api.store.read_all(read).await?;
    let next = events.last().map(|e| e.position);
    Ok(Json(
        json!({ "events": events, "next_after": next, "limit": limit }),
    ))
}
