//! RFC 9457 problem details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_core::error::Classify;
use flotilla_eventstore::Error;
use serde_json::{Map, Value, json};

/// A problem+json response.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid request", detail)
            .with("code", json!("invalid_input"))
    }

    /// Every subscription slot is taken (`max_subscribers`).
    pub(crate) fn too_many_subscribers() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many subscriptions",
            "every subscription slot is in use; retry later",
        )
        .retry_after(5)
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

/// Event-store errors carry, beside the human `detail`, a machine-readable `code` and the data
/// a remote client needs to rebuild the same [`Error`] (the platform backend does): the
/// stream, the expected and actual versions, the event id, whether a retry may help.
impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let status = StatusCode::from_u16(e.class().kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match &e {
            Error::WrongExpectedVersion {
                stream,
                expected,
                actual,
            } => Self::new(status, "Wrong expected version", e.to_string())
                .with("code", json!("wrong_expected_version"))
                .with("stream", json!(stream))
                .with("expected_version", json!(expected))
                .with("actual_version", json!(actual)),
            Error::IdempotencyViolation { id, reason } => Self::new(
                status,
                "Event id reused with different content",
                e.to_string(),
            )
            .with("code", json!("idempotency_violation"))
            .with("event_id", json!(id))
            .with("reason", json!(reason)),
            Error::StreamDeleted { stream } => Self::new(status, "Stream deleted", e.to_string())
                .with("code", json!("stream_deleted"))
                .with("stream", json!(stream)),
            Error::InvalidInput(_) => Self::new(status, "Invalid request", e.to_string())
                .with("code", json!("invalid_input")),
            Error::Storage { retryable, .. } => {
                // Internal details are logged, not sent.
                tracing::error!(error = %e, "event store failure");
                Self::new(
                    status,
                    "Event store unavailable",
                    "the event store failed; retry",
                )
                .with("code", json!("storage"))
                .with("retryable", json!(retryable))
            }
            Error::Handler { .. } => {
                tracing::error!(error = %e, "event store failure");
                Self::new(status, "Event store failure", "a subscriber failed")
                    .with("code", json!("handler"))
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(m) = &mut body {
            m.extend(self.extra);
        }
        let mut res = (self.status, body.to_string()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}
