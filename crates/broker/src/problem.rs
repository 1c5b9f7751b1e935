//! The last word on every response of the bus API: any error the framework produces itself
//! (a 413 from the body limit, a path or query rejection, a 405) becomes problem+json like the
//! API's own errors, and the internal cause of a 5xx is logged with the request id, then
//! dropped from the response.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{StatusCode, header};
use http_body_util::BodyExt;

use crate::error::{InternalCause, problem, server_error_detail};

/// The header the control plane (or a proxy in front) puts the request id in.
const REQUEST_ID: &str = "x-request-id";

/// A framework rejection's text is a short sentence; anything longer is cut.
const MAX_DETAIL_BYTES: usize = 1024;

pub(crate) async fn normalize(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let mut res = next.run(req).await;
    if let Some(InternalCause(cause)) = res.extensions_mut().remove::<InternalCause>() {
        tracing::error!(request_id, status = res.status().as_u16(), error = %cause, "bus request failed");
    }
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&res) {
        return res;
    }
    if status.is_server_error() {
        tracing::error!(
            request_id,
            status = status.as_u16(),
            "bus request failed in the framework"
        );
        return problem(status, server_error_detail(status));
    }
    let headers = res.headers().clone();
    let text = rejection_text(status, res.into_body()).await;
    let mut out = problem(status, &text);
    // Keep what a client needs to act on (Allow on a 405, Retry-After).
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

fn is_problem(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"))
}

async fn rejection_text(status: StatusCode, body: Body) -> String {
    let limited = http_body_util::Limited::new(body, MAX_DETAIL_BYTES);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return "the request was refused".into(),
    };
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").into()
    } else {
        text
    }
}
