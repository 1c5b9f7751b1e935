//! Settling a delivery: ack, nack (with a delay) and reject (dead-letter), by receipt.
//!
//! A receipt whose lease ended answers 409 with the problem type [`LEASE_LOST`], so a client
//! can tell "another consumer holds this event now" from any other conflict without reading
//! the message text.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flotilla_bus::{Failure, FailureReason, Receipt};
use flotilla_core::error::Classify;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, group, json_body, limits, no_content, ok};
use crate::Broker;

/// The problem type of a settle whose lease ended (`flotilla_bus::Error::LeaseLost`).
pub(crate) const LEASE_LOST: &str = "urn:flotilla:problem:lease-lost";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settle {
    receipt: String,
    /// Nack only: redeliver after this many milliseconds.
    #[serde(default)]
    delay_ms: u64,
    /// Reject only: the last error, kept with the dead letter.
    #[serde(default)]
    reason: Option<String>,
    /// Reject only: why it is dead-lettered (`rejected`, the default, or `max_deliveries`).
    #[serde(default)]
    failure: Option<FailureReason>,
}

/// What a settle does.
enum Verb {
    Ack,
    Nack(Duration),
    Reject(Failure),
}

/// Applies `verb`. Whatever the outcome, the delivery's SSE in-flight slot is freed, unless
/// the backend was unreachable (the lease may still be held, and the client will retry).
async fn apply(b: &Broker, r: &Receipt, verb: Verb) -> Result<(), flotilla_bus::Error> {
    let outcome = match verb {
        Verb::Ack => b.backend.ack(r).await,
        Verb::Nack(delay) => b.backend.nack(r, delay).await,
        Verb::Reject(failure) => b.backend.dead_letter(r, failure).await,
    };
    if !matches!(outcome, Err(flotilla_bus::Error::Unavailable(_))) {
        b.leases.settled(r);
    }
    outcome
}

fn answer(outcome: Result<(), flotilla_bus::Error>) -> Answer {
    match outcome {
        Ok(()) => no_content(),
        Err(flotilla_bus::Error::LeaseLost) => Ok(lease_lost()),
        Err(e) => Err(e.into()),
    }
}

fn lease_lost_body() -> Value {
    json!({
        "type": LEASE_LOST,
        "title": "Lease Lost",
        "status": 409,
        "detail": flotilla_bus::Error::LeaseLost.to_string(),
    })
}

fn lease_lost() -> Response {
    let mut res = (StatusCode::CONFLICT, lease_lost_body().to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

fn receipt(g: String, s: &Settle) -> Result<Receipt, crate::Error> {
    Ok(Receipt {
        group: group(g)?,
        token: s.receipt.clone(),
    })
}

fn failure(s: &Settle) -> Failure {
    Failure {
        reason: s.failure.unwrap_or(FailureReason::Rejected),
        last_error: s
            .reason
            .clone()
            .unwrap_or_else(|| "rejected by the consumer".into()),
    }
}

pub(crate) async fn ack(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let r = receipt(g, &s)?;
    answer(apply(&b, &r, Verb::Ack).await)
}

pub(crate) async fn nack(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let delay = limits::delay("delay_ms", s.delay_ms)?;
    let r = receipt(g, &s)?;
    answer(apply(&b, &r, Verb::Nack(delay)).await)
}

pub(crate) async fn reject(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let r = receipt(g, &s)?;
    answer(apply(&b, &r, Verb::Reject(failure(&s))).await)
}

/// Most settles in one `POST /api/v1/bus/settle`.
pub(crate) const MAX_SETTLES: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Batch {
    settles: Vec<Item>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Action {
    Ack,
    Nack,
    Reject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    group: String,
    action: Action,
    receipt: String,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    failure: Option<FailureReason>,
}

/// One settle of a batch, its outcome as `{"status", "type"?, "detail"?}`.
async fn one(b: Broker, item: Item) -> Value {
    let Item {
        group: g,
        action,
        receipt: token,
        delay_ms,
        reason,
        failure: kind,
    } = item;
    let s = Settle {
        receipt: token,
        delay_ms,
        reason,
        failure: kind,
    };
    let verb = match action {
        Action::Ack => Ok(Verb::Ack),
        Action::Nack => limits::delay("delay_ms", s.delay_ms).map(Verb::Nack),
        Action::Reject => Ok(Verb::Reject(failure(&s))),
    };
    let outcome = match (receipt(g, &s), verb) {
        (Ok(r), Ok(verb)) => apply(&b, &r, verb).await.map_err(crate::Error::from),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match outcome {
        Ok(()) => json!({ "status": 204 }),
        Err(crate::Error::Bus(flotilla_bus::Error::LeaseLost)) => lease_lost_body(),
        Err(e) => item_problem(&e),
    }
}

/// A failed item as a problem object; a 5xx says nothing internal (its cause is logged).
fn item_problem(e: &crate::Error) -> Value {
    let status = StatusCode::from_u16(e.class().kind.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let detail = if status.is_server_error() {
        tracing::error!(error = %e, "a settle of a batch failed");
        crate::error::server_error_detail(status).to_owned()
    } else {
        e.to_string()
    };
    json!({ "status": status.as_u16(), "detail": detail })
}

/// `POST /api/v1/bus/settle`: many settles (any groups, any actions) in one request, applied
/// concurrently so the backend can commit them together; one result per settle, in order.
pub(crate) async fn batch(State(b): State<Broker>, body: Bytes) -> Answer {
    let batch: Batch = json_body(&body)?;
    limits::within("settles", batch.settles.len(), 1, MAX_SETTLES)?;
    let mut running = tokio::task::JoinSet::new();
    for (i, item) in batch.settles.into_iter().enumerate() {
        let b = b.clone();
        running.spawn(async move { (i, one(b, item).await) });
    }
    let mut results = vec![Value::Null; running.len()];
    while let Some(done) = running.join_next().await {
        let (i, result) =
            done.map_err(|e| crate::Error::Bus(flotilla_bus::Error::Backend(e.to_string())))?;
        results[i] = result;
    }
    ok(json!({ "results": results }))
}
