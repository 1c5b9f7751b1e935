//! What every service of the shop shares at its HTTP edge: its listener default, the
//! `Idempotency-Key` header, store errors as problem+json, and publishing with a stable id.

use std::net::SocketAddr;
use std::path::Path;

use axum::http::{HeaderMap, StatusCode};
use flotilla::core::CloudEvent;
use flotilla::events::Bus;
use flotilla::{Problem, ServiceConfig};

use crate::Service;

/// The header a caller repeats on a retry so the effect is applied once.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The SDK's `[service]` settings, listening on the service's own port unless configured.
pub(crate) fn service_config(
    service: Service,
    file: Option<&Path>,
) -> Result<ServiceConfig, flotilla::ConfigError> {
    let mut config = ServiceConfig::load(file)?;
    if config.listen == ServiceConfig::default().listen {
        config.listen = SocketAddr::from(([127, 0, 0, 1], service.default_port()));
    }
    Ok(config)
}

/// The request's `Idempotency-Key`, required on every call that changes something.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let missing = || {
        Problem::new(StatusCode::BAD_REQUEST)
            .detail("the Idempotency-Key header is required: repeat it on a retry")
            .field("Idempotency-Key", "is missing")
    };
    let value = headers.get(IDEMPOTENCY_KEY).ok_or_else(missing)?;
    let key = value.to_str().unwrap_or_default();
    let valid = !key.is_empty()
        && key.len() <= 150
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:@".contains(c));
    match valid {
        true => Ok(key.to_owned()),
        false => Err(Problem::new(StatusCode::BAD_REQUEST)
            .detail("Idempotency-Key must be 1 to 150 letters, digits or _-.:@")
            .field("Idempotency-Key", format!("{key:?} is not a valid key"))),
    }
}

/// A store failure as the client sees it: its class decides the status, and 5xx details stay
/// in the log. Losing every optimistic-concurrency retry to other writers of the same stream
/// is contention, not a conflict with the caller's request: 503, so the caller (a saga step)
/// retries under the same key instead of taking it as a refusal.
pub(crate) fn store_problem(e: flotilla::eventsourcing::Error) -> Problem {
    match e {
        flotilla::eventsourcing::Error::WrongExpectedVersion { .. } => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .detail("too many concurrent updates of the same record; retry")
        }
        e => Problem::from_error(&e),
    }
}

/// How many times a command is decided again after losing a race: products are written by
/// every concurrent checkout that holds some of them.
pub(crate) const CONFLICT_RETRIES: usize = 20;

/// Publishes `topic` with `data` under the event id `id`, so publishing the same fact again
/// (a retried request) is dropped by the bus's publisher dedupe instead of delivered twice.
pub(crate) async fn publish(
    bus: &Bus,
    source: &str,
    topic: &str,
    id: String,
    data: serde_json::Value,
) -> Result<(), Problem> {
    let mut event = CloudEvent::new(source, topic).with_json(data);
    event.id = id;
    match bus.publish(event).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Problem::from_error(&e)),
    }
}

/// A 422 naming one invalid field.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
        .detail(format!("{field} is invalid"))
        .field(field, message)
}
