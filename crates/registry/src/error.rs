//! The registry's one error type, its classification, and its problem+json rendering.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind, InstanceError, NameError};
use flotilla_discovery::QueryError;
use flotilla_discovery::catalog::StoreError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name in the request or URL is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The instance description broke a rule.
    #[error(transparent)]
    Instance(#[from] InstanceError),
    /// A discovery filter is invalid.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A check definition, option or request field is invalid; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The request body is not valid JSON for this endpoint.
    #[error("malformed request body: {0}")]
    Body(String),
    /// The request body is larger than the configured limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// No such service or instance.
    #[error("{0} not found")]
    NotFound(String),
    /// A write without the configured bearer token.
    #[error("this endpoint needs the registry's bearer token")]
    Unauthenticated,
    /// The catalog could not be stored; the change was not applied.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Name(_)
            | Self::Instance(_)
            | Self::Query(_)
            | Self::Invalid(_)
            | Self::Body(_) => ErrorKind::InvalidInput,
            Self::TooLarge(_) => ErrorKind::TooLarge,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Unauthenticated => ErrorKind::Unauthenticated,
            Self::Store(_) => ErrorKind::Unavailable,
        }
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(self.kind())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Storage details stay in the log; the client learns only that it may retry.
        let detail = match &self {
            Self::Store(e) => {
                tracing::error!(error = %e, "registry catalog write failed");
                "the catalog could not be stored; retry later".to_owned()
            }
            other => other.to_string(),
        };
        problem(status, &detail)
    }
}

/// An RFC 9457 problem+json response.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_http_statuses_by_kind() {
        assert_eq!(Error::TooLarge(10).kind().http_status(), 413);
        assert_eq!(Error::Unauthenticated.kind().http_status(), 401);
        assert!(Error::Store(StoreError("x".into())).class().retryable);
        let r = Error::Invalid("bad".into()).into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
