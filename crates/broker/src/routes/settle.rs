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
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::{Answer, group, json_body, limits, no_content};
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

/// A settle attempt frees the delivery's SSE in-flight slot whatever its outcome, unless the
/// backend was unreachable (the lease may still be held, and the client will retry).
fn settled(b: &Broker, r: &Receipt, outcome: Result<(), flotilla_bus::Error>) -> Answer {
    match outcome {
        Err(e @ flotilla_bus::Error::Unavailable(_)) => Err(e.into()),
        Err(flotilla_bus::Error::LeaseLost) => {
            b.leases.settled(r);
            Ok(lease_lost())
        }
        other => {
            b.leases.settled(r);
            other?;
            no_content()
        }
    }
}

fn lease_lost() -> Response {
    let body = json!({
        "type": LEASE_LOST,
        "title": "Lease Lost",
        "status": 409,
        "detail": flotilla_bus::Error::LeaseLost.to_string(),
    });
    let mut res = (StatusCode::CONFLICT, body.to_string()).into_response();
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

pub(crate) async fn ack(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let r = receipt(g, &s)?;
    settled(&b, &r, b.backend.ack(&r).await)
}

pub(crate) async fn nack(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let delay: Duration = limits::delay("delay_ms", s.delay_ms)?;
    let r = receipt(g, &s)?;
    settled(&b, &r, b.backend.nack(&r, delay).await)
}

pub(crate) async fn reject(State(b): State<Broker>, Path(g): Path<String>, body: Bytes) -> Answer {
    let s: Settle = json_body(&body)?;
    let failure = Failure {
        reason: s.failure.unwrap_or(FailureReason::Rejected),
        last_error: s
            .reason
            .clone()
            .unwrap_or_else(|| "rejected by the consumer".into()),
    };
    let r = receipt(g, &s)?;
    settled(&b, &r, b.backend.dead_letter(&r, failure).await)
}
