//! The body type the gateway speaks in, and RFC 9457 problem+json error responses.
//!
//! Kept private to this crate until the SDK exports a shared problem helper.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use crate::Error;

/// What a problem body names so that the request can be found again: its request id for the
/// logs, its trace id for the tracing UI.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestIds<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) trace: &'a flotilla_core::TraceParent,
}

/// Boxed error of any body in flight.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every request and response body the gateway handles: streamed, never collected.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The problem+json response for `err`, carrying the request and trace ids and no internal
/// detail.
pub(crate) fn problem(err: &Error, ids: RequestIds<'_>) -> Response<Body> {
    let status =
        StatusCode::from_u16(err.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    problem_status(status, &err.public_detail(), ids, err)
}

/// A problem response with an explicit status (used for 414, which has no error kind).
pub(crate) fn problem_status(
    status: StatusCode,
    detail: &str,
    ids: RequestIds<'_>,
    err: &Error,
) -> Response<Body> {
    let request_id = ids.request_id;
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "request_id": request_id,
        "trace_id": ids.trace.trace_id_hex(),
    });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    match err {
        Error::Unauthenticated { challenge, .. } => {
            if let Ok(v) = HeaderValue::from_str(challenge) {
                h.insert(WWW_AUTHENTICATE, v);
            }
        }
        Error::RateLimited { retry_after_secs } => {
            h.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        _ => {}
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problems_carry_status_request_and_trace_ids_and_no_internals() {
        let trace = flotilla_core::TraceParent::generate();
        let ids = RequestIds {
            request_id: "req-1",
            trace: &trace,
        };
        let resp = problem(&Error::Upstream("10.0.0.9 refused".into()), ids);
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["trace_id"], trace.trace_id_hex());
        assert!(!body.windows(8).any(|w| w == b"10.0.0.9"));
    }
}
