//! Handlers of `/api/v1/streams`.

use std::convert::Infallible;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flotilla_core::StreamId;
use flotilla_eventstore::{
    Direction, ExpectedVersion, Filter, Metadata, NewEvent, ReadAll, ReadStream, RecordedEvent,
    subscribe_all,
};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::StoreApi;
use crate::problem::Problem;

const HEADER: &str = "expected-version";

pub(crate) fn router(api: StoreApi) -> Router {
    Router::new()
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/streams/$all", get(read_all))
        .route("/api/v1/streams/$subscriptions", get(list_subscriptions))
        .route("/api/v1/streams/$all/subscribe", get(subscribe))
        .route(
            "/api/v1/streams/{stream}",
            get(read_stream).post(append).delete(delete_stream),
        )
        .with_state(api)
}

fn stream_id(raw: &str) -> Result<StreamId, Problem> {
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

fn expected_from(headers: &HeaderMap, field: Option<&Value>) -> Result<ExpectedVersion, Problem> {
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

async fn append(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let stream = stream_id(&stream)?;
    let bytes = to_bytes(body, api.options.max_body_bytes)
        .await
        .map_err(|_| {
            let limit = api.options.max_body_bytes;
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                format!("an append body may be at most {limit} bytes"),
            )
        })?;
    let body: AppendBody = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("append body: {e}")))?;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    from: Option<u64>,
    limit: Option<usize>,
    #[serde(default)]
    direction: Direction,
}

fn capped(api: &StoreApi, limit: Option<usize>) -> usize {
    limit.unwrap_or(100).clamp(1, api.options.max_read_limit)
}

async fn read_stream(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    Query(q): Query<StreamQuery>,
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
    Ok(Json(json!({ "events": events, "next": next.flatten() })))
}

/// Persistent subscribers (projections) with their checkpoint and lag behind the head.
async fn list_subscriptions(State(api): State<StoreApi>) -> Result<Json<Value>, Problem> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_streams(
    State(api): State<StoreApi>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Problem> {
    let after = q.after.as_deref().map(stream_id).transpose()?;
    let limit = capped(&api, q.limit);
    let streams = api.store.list_streams(after.as_ref(), limit).await?;
    let next = (streams.len() == limit).then(|| streams.last().map(|s| s.stream.clone()));
    Ok(Json(
        json!({ "streams": streams, "next_after": next.flatten() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllQuery {
    after: Option<u64>,
    limit: Option<usize>,
    category: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

fn filter_of(q: &AllQuery) -> Result<Filter, Problem> {
    match (&q.category, &q.event_type) {
        (None, None) => Ok(Filter::All),
        (Some(c), None) => Ok(Filter::Category(c.clone())),
        (None, Some(t)) => Ok(Filter::EventType(t.clone())),
        (Some(_), Some(_)) => Err(Problem::bad_request(
            "filter by category or by type, not both",
        )),
    }
}

async fn read_all(
    State(api): State<StoreApi>,
    Query(q): Query<AllQuery>,
) -> Result<Json<Value>, Problem> {
    let limit = capped(&api, q.limit);
    let read = ReadAll::after(q.after.unwrap_or(0), limit).filtered(filter_of(&q)?);
    let events = api.store.read_all(read).await?;
    let next = events.last().map(|e| e.position);
    Ok(Json(json!({ "events": events, "next_after": next })))
}

async fn delete_stream(
    State(api): State<StoreApi>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let stream = stream_id(&stream)?;
    let expected = expected_from(&headers, None)?;
    api.store.delete_stream(&stream, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn subscribe(
    State(api): State<StoreApi>,
    Query(q): Query<AllQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let filter = filter_of(&q)?;
    // A reconnecting EventSource resumes after the last id it saw.
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match last_id {
        Some(id) => id
            .parse()
            .map_err(|_| Problem::bad_request(format!("Last-Event-ID {id:?} is not a position")))?,
        None => q.after.unwrap_or(0),
    };
    // The permit lives as long as the stream, so a closed connection frees its slot.
    let permit = api
        .subscribers
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::too_many_subscribers())?;
    let sub = subscribe_all(api.store.clone(), after, filter);
    let end = api.streams_end.clone().cancelled_owned();
    let stream = futures_util::stream::unfold(Some((sub, permit)), |state| async move {
        let (mut sub, permit) = state?;
        match sub.next().await? {
            Ok(e) => Some((Ok(sse_event(&e)), Some((sub, permit)))),
            Err(e) => {
                // Storage details stay in the log; the client resumes from its last id.
                tracing::error!(error = %e, "subscription failed");
                let ev = SseEvent::default()
                    .event("error")
                    .data("the subscription failed; reconnect with Last-Event-ID to resume");
                Some((Ok(ev), None))
            }
        }
    })
    .take_until(end);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn sse_event(e: &RecordedEvent) -> SseEvent {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "null".into());
    let event = SseEvent::default().id(e.position.to_string()).data(data);
    // The SSE `event:` line cannot carry line breaks; the type is in the data regardless.
    if e.event_type.chars().any(char::is_control) {
        event
    } else {
        event.event(e.event_type.as_str())
    }
}
