//! Errors and their problem+json (RFC 9457) form.

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
    /// The options are invalid.
    #[error("invalid bus HTTP options: {0}")]
    Config(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Bus(e) => e.class(),
            Self::BadRequest(_) | Self::UnsupportedMediaType(_) | Self::Config(_) => {
                ErrorClass::of(ErrorKind::InvalidInput)
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::from_u16(self.class().kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        // Internal details are logged, not sent.
        let detail = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "bus request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
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
}
