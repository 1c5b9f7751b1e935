//! The `/api/v1/bus` routes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use flotilla_bus::{Delivery, GroupName, GroupSpec, Outgoing};
use flotilla_core::{TopicName, TopicPattern};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Broker, Error, problem, publish, sse};

mod batch;
mod dlq;
pub(crate) mod limits;
mod settle;

type Answer = Result<Response, Error>;

pub(crate) fn router(broker: Broker) -> Router {
    let limit = broker.options.max_body_bytes;
    Router::new()
        .route("/api/v1/bus", get(info))
        .route("/api/v1/bus/events", post(batch::publish))
        .route("/api/v1/bus/settle", post(settle::batch))
        .route("/api/v1/bus/topics", get(topics))
        .route("/api/v1/bus/topics/{topic}/events", post(publish_events))
        .route("/api/v1/bus/groups", get(groups))
        .route(
            "/api/v1/bus/groups/{group}",
            put(declare).delete(delete_group),
        )
        .route("/api/v1/bus/groups/{group}/pull", post(pull))
        .route("/api/v1/bus/groups/{group}/events", get(sse::events))
        .route("/api/v1/bus/groups/{group}/ack", post(settle::ack))
        .route("/api/v1/bus/groups/{group}/nack", post(settle::nack))
        .route("/api/v1/bus/groups/{group}/reject", post(settle::reject))
        .route("/api/v1/bus/groups/{group}/dlq/purge", post(dlq::purge))
        .route("/api/v1/bus/dlq", get(dlq::list))
        .route("/api/v1/bus/dlq/{id}", get(dlq::get))
        .route("/api/v1/bus/dlq/{id}/replay", post(dlq::replay))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(problem::normalize))
        .with_state(broker)
}

/// What the bus behind this API is and honours, with the limits a client must respect.
async fn info(State(b): State<Broker>) -> Answer {
    let c = b.backend.capabilities();
    ok(json!({
        "backend": b.backend.name(),
        "capabilities": {
            "per_key_order": c.per_key_order,
            "delayed_publish": c.delayed_publish,
            "dedupe": c.dedupe,
            "fenced_receipts": c.fenced_receipts,
        },
        "limits": {
            "max_event_bytes": b.options.max_event_bytes,
            "max_body_bytes": b.options.max_body_bytes,
            "max_pull": b.options.max_pull,
            "max_wait_ms": b.options.max_wait_ms,
            "max_in_flight": b.options.max_in_flight,
            "max_lease_ms": limits::MAX_LEASE_MS,
            "max_delay_ms": limits::MAX_DELAY_MS,
        },
    }))
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

/// Query-string errors as problem+json, like every other error.
pub(crate) fn query_error(e: QueryRejection) -> Error {
    Error::BadRequest(format!("invalid query string: {}", e.body_text()))
}

fn ok(value: Value) -> Answer {
    Ok(axum::Json(value).into_response())
}

fn no_content() -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishQuery {
    /// Deliver not before this many milliseconds from now.
    delay_ms: Option<u64>,
}

async fn publish_events(
    State(b): State<Broker>,
    Path(topic): Path<String>,
    q: Result<Query<PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let Query(q) = q.map_err(query_error)?;
    let delay = limits::delay("delay_ms", q.delay_ms.unwrap_or(0))?;
    let topic = TopicName::new(topic).map_err(flotilla_bus::Error::from)?;
    let events = publish::events(&headers, &body, b.options.max_event_bytes)?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let batch = events
        .into_iter()
        .map(|e| {
            let out = Outgoing::new(topic.clone(), e);
            if delay.is_zero() {
                out
            } else {
                out.deliver_after(delay)
            }
        })
        .collect();
    let outcomes = b.backend.publish(batch).await?;
    let list: Vec<Value> = ids
        .iter()
        .zip(outcomes)
        .map(|(id, o)| json!({ "id": id, "outcome": o }))
        .collect();
    ok(json!({ "outcomes": list }))
}

async fn topics(State(b): State<Broker>) -> Answer {
    ok(json!({ "topics": b.backend.topics().await? }))
}

async fn groups(State(b): State<Broker>) -> Answer {
    ok(json!({ "groups": b.backend.groups().await? }))
}

pub(crate) fn group(name: String) -> Result<GroupName, Error> {
    Ok(GroupName::new(name)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declare {
    pattern: String,
}

async fn declare(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let d: Declare = json_body(&body)?;
    let spec = GroupSpec {
        name: group(g)?,
        pattern: TopicPattern::new(d.pattern).map_err(flotilla_bus::Error::from)?,
    };
    b.backend.declare_group(&spec).await?;
    no_content()
}

async fn delete_group(State(b): State<Broker>, Path(g): Path<String>) -> Answer {
    b.backend.delete_group(&group(g)?).await?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pull {
    /// Most deliveries to answer (default 16, at most `max_pull`).
    max: Option<usize>,
    /// Longest wait for the first delivery (default 10 000, at most `max_wait_ms`).
    wait_ms: Option<u64>,
    /// Lease of each delivery (default 30 000, at most [`limits::MAX_LEASE_MS`]).
    lease_ms: Option<u64>,
}

pub(crate) fn delivery(d: Delivery) -> Value {
    json!({
        "receipt": d.receipt.token,
        "topic": d.topic,
        "attempt": d.attempt,
        "published_at_ms": millis(d.published_at),
        "event": d.event,
    })
}

async fn pull(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let p: Pull = json_body(&body)?;
    let lease = limits::lease(p.lease_ms.unwrap_or(30_000))?;
    let max = limits::within("max", p.max.unwrap_or(16), 1, b.options.max_pull)?;
    let default_wait = b.options.max_wait_ms.min(10_000);
    let wait_ms = p.wait_ms.unwrap_or(default_wait);
    let wait = limits::within("wait_ms", wait_ms, 0, b.options.max_wait_ms)?;
    let wait = Duration::from_millis(wait);
    let got = b.backend.receive(&group(g)?, max, lease, wait).await?;
    ok(json!({ "deliveries": got.into_iter().map(delivery).collect::<Vec<_>>() }))
}
