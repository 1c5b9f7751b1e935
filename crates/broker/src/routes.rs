//! The `/api/v1/bus` routes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use flotilla_bus::{
    DeadLetter, Delivery, DlqQuery, Failure, FailureReason, GroupName, GroupSpec, Outgoing, Receipt,
};
use flotilla_core::{TopicName, TopicPattern};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Broker, Error, problem, publish, sse};

type Answer = Result<Response, Error>;

pub(crate) fn router(broker: Broker) -> Router {
    let limit = broker.options.max_body_bytes;
    Router::new()
        .route("/api/v1/bus/topics", get(topics))
        .route("/api/v1/bus/topics/{topic}/events", post(publish_events))
        .route("/api/v1/bus/groups", get(groups))
        .route(
            "/api/v1/bus/groups/{group}",
            put(declare).delete(delete_group),
        )
        .route("/api/v1/bus/groups/{group}/pull", post(pull))
        .route("/api/v1/bus/groups/{group}/events", get(sse::events))
        .route("/api/v1/bus/groups/{group}/ack", post(ack))
        .route("/api/v1/bus/groups/{group}/nack", post(nack))
        .route("/api/v1/bus/groups/{group}/reject", post(reject))
        .route("/api/v1/bus/groups/{group}/dlq/purge", post(purge))
        .route("/api/v1/bus/dlq", get(dlq_list))
        .route("/api/v1/bus/dlq/{id}", get(dlq_get))
        .route("/api/v1/bus/dlq/{id}/replay", post(dlq_replay))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(problem::normalize))
        .with_state(broker)
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
    let topic = TopicName::new(topic).map_err(flotilla_bus::Error::from)?;
    let events = publish::events(&headers, &body, b.options.max_event_bytes)?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let batch = events
        .into_iter()
        .map(|e| {
            let out = Outgoing::new(topic.clone(), e);
            match q.delay_ms {
                Some(ms) => out.deliver_after(Duration::from_millis(ms)),
                None => out,
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
#[serde(deny_unknown_fields, default)]
struct Pull {
    max: usize,
    wait_ms: u64,
    lease_ms: u64,
}

impl Default for Pull {
    fn default() -> Self {
        Self {
            max: 16,
            wait_ms: 10_000,
            lease_ms: 30_000,
        }
    }
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
    if p.lease_ms == 0 {
        return Err(Error::BadRequest("lease_ms 0 must be at least 1".into()));
    }
    let max = p.max.clamp(1, b.options.max_pull);
    let wait = Duration::from_millis(p.wait_ms).min(b.options.max_wait());
    let lease = Duration::from_millis(p.lease_ms);
    let got = b.backend.receive(&group(g)?, max, lease, wait).await?;
    ok(json!({ "deliveries": got.into_iter().map(delivery).collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settle {
    receipt: String,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    reason: Option<String>,
}

/// A settle attempt frees the delivery's SSE in-flight slot whatever its outcome, unless the
/// backend was unreachable (the lease may still be held, and the client will retry).
fn settled(b: &Broker, r: &Receipt, outcome: Result<(), flotilla_bus::Error>) -> Answer {
    match outcome {
        Err(e @ flotilla_bus::Error::Unavailable(_)) => Err(e.into()),
        other => {
            b.leases.settled(r);
            other?;
            no_content()
        }
    }
}

fn receipt(g: String, s: &Settle) -> Result<Receipt, Error> {
    Ok(Receipt {
        group: group(g)?,
        token: s.receipt.clone(),
    })
}

async fn ack(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let r = receipt(g, &s)?;
    settled(&b, &r, b.backend.ack(&r).await)
}

async fn nack(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let delay = Duration::from_millis(s.delay_ms);
    let r = receipt(g, &s)?;
    settled(&b, &r, b.backend.nack(&r, delay).await)
}

async fn reject(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let failure = Failure {
        reason: FailureReason::Rejected,
        last_error: s
            .reason
            .clone()
            .unwrap_or_else(|| "rejected by the consumer".into()),
    };
    let r = receipt(g, &s)?;
    settled(&b, &r, b.backend.dead_letter(&r, failure).await)
}

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
struct DlqParams {
    group: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn dlq_list(State(b): State<Broker>, q: Result<Query<DlqParams>, QueryRejection>) -> Answer {
    let Query(q) = q.map_err(query_error)?;
    let query = DlqQuery {
        group: q.group.map(group).transpose()?,
        after: q.after,
        limit: q.limit.unwrap_or(100).min(1000),
    };
    let list = b.backend.dlq_list(&query).await?;
    ok(json!({ "dead_letters": list.into_iter().map(dead_letter).collect::<Vec<_>>() }))
}

async fn dlq_get(State(b): State<Broker>, Path(id): Path<String>) -> Answer {
    ok(dead_letter(b.backend.dlq_get(&id).await?))
}

async fn dlq_replay(State(b): State<Broker>, Path(id): Path<String>) -> Answer {
    b.backend.dlq_replay(&id).await?;
    no_content()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Purge {
    ids: Vec<String>,
}

async fn purge(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let p: Purge = json_body(&body)?;
    let n = b.backend.dlq_purge(&group(g)?, &p.ids).await?;
    ok(json!({ "purged": n }))
}
