//! RFC 9457 problem details for the sagas API: every saga [`Error`] becomes one, with the
//! status its kind calls for and a machine-readable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_core::error::Classify;
use serde_json::{Map, Value, json};

use crate::Error;

/// A problem+json response.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
    extra: Map<String, Value>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// Bad input at `field`.
    pub(crate) fn bad_request(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid request", detail)
            .with("code", json!("invalid_input"))
            .with("field", json!(field))
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let status = StatusCode::from_u16(e.class().kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (title, code) = match &e {
            Error::Definition { .. } | Error::Parse(_) => {
                ("Invalid saga definition", "invalid_definition")
            }
            Error::Input { .. } => ("Invalid request", "invalid_input"),
            Error::UnknownDefinition { .. } => ("Unknown saga", "unknown_saga"),
            Error::NotFound(_) => ("No such saga instance", "not_found"),
            Error::InvalidState { .. } => ("Not possible in this state", "invalid_state"),
            Error::Corrupt { .. } => ("Corrupt saga stream", "corrupt"),
            Error::Store(_) => ("Event store error", "store"),
        };
        let problem = Self::new(status, title, e.to_string()).with("code", json!(code));
        match e {
            Error::Input { field, .. } | Error::Definition { field, .. } => {
                problem.with("field", json!(field))
            }
            _ => problem,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut detail = self.detail;
        if self.status.is_server_error() {
            // Storage internals are logged, not sent.
            tracing::error!(status = %self.status, %detail, "sagas API error");
            detail = "the saga store failed; retry".into();
        }
        let mut body = self.extra;
        body.insert("type".into(), json!("about:blank"));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(detail));
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
