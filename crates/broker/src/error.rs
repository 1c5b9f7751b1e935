//! Errors and their problem+json (RFC 9457) form.
//!
//! A client sees what it can act on: the message of a 4xx, and only a generic sentence for a
//! 5xx. The cause of a 5xx (backend error text, which may name hosts or queues) travels on the
//! response as an [`InternalCause`] extension, and [`crate::problem::normalize`] logs it with
//! the request id and strips it before the response leaves.

use axum::response::{IntoResponse, Response};
use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// Why a bus HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus refused or failed.
    #[error(transparent)]
    Bus(#[from] flotilla_bus::Error),
    /// The request is malformed; the message names what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The content type is not one this endpoint accepts.
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    /// Every SSE stream slot is taken (`max_sse_streams`); retry later.
    #[error("too many open event streams (at most {0}); retry later")]
    TooManyStreams(usize),
    /// The options are invalid.
    #[error("invalid bus HTTP options: {0}")]
    Config(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Bus(e) => e.class(),
            Self::TooManyStreams(_) => ErrorClass::of(ErrorKind::Unavailable),
            Self::BadRequest(_) | Self::UnsupportedMediaType(_) | Self::Config(_) => {
                ErrorClass::of(ErrorKind::InvalidInput)
            }
        }
    }
}

impl Error {
    /// Names the batch element an input error is about (`events[3]: ...`), so a client whose
    /// batch is refused for one bad event knows which; other errors pass unchanged (a
    /// too-large event keeps its 413 and says its size).
    pub(crate) fn at(self, field: &str, index: usize) -> Self {
        let invalid = matches!(self.class().kind, ErrorKind::InvalidInput)
            && !matches!(self, Self::Bus(flotilla_bus::Error::TooLarge { .. }));
        if invalid {
            Self::BadRequest(format!("{field}[{index}]: {self}"))
        } else {
            self
        }
    }
}

/// The internal cause of a 5xx answer, for the log only (never sent).
#[derive(Debug, Clone)]
pub(crate) struct InternalCause(pub(crate) String);

/// What a client is told about a 5xx: nothing internal.
pub(crate) fn server_error_detail(status: StatusCode) -> &'static str {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        "the event bus is unavailable; retry later and quote the request id if it persists"
    } else {
        "the event bus failed to handle the request; quote the request id when reporting it"
    }
}

/// A problem+json response.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::from_u16(self.class().kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        if !status.is_server_error() {
            return problem(status, &self.to_string());
        }
        if let Self::TooManyStreams(_) = self {
            let mut res = problem(status, &self.to_string());
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
        let mut res = problem(status, server_error_detail(status));
        res.extensions_mut().insert(InternalCause(self.to_string()));
        res
    }
}
