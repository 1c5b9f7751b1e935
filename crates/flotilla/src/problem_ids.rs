//! Problem bodies written by code other than [`Problem`](crate::problem::Problem) — the
//! control plane's registry, bus, event-store and sagas APIs build their own — gain the
//! request's `request_id` and `trace_id` here, so every problem a client gets from a Flotilla
//! server names the trace to look for. Only error responses whose type is
//! `application/problem+json` are read, and only when they are small.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use http_body::Body as _;
use serde_json::{Map, Value};

use crate::middleware::RequestContext;

/// Problem bodies are a few hundred bytes; one that is not is left as it is.
const MAX_PROBLEM_BYTES: u64 = 64 * 1024;

/// Marks a response whose problem body already names the request's ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named;

/// Adds the ids `ctx` holds to a problem+json body that lacks them.
pub(crate) async fn name(response: Response, ctx: &RequestContext) -> Response {
    if response.status().as_u16() < 400
        || response.extensions().get::<Named>().is_some()
        || !is_problem(&response)
        || response
            .body()
            .size_hint()
            .upper()
            .is_none_or(|n| n > MAX_PROBLEM_BYTES)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PROBLEM_BYTES as usize).await else {
        // The body failed mid-way; there is nothing left to send but its head.
        return Response::from_parts(parts, Body::empty());
    };
    let named = match serde_json::from_slice::<Map<String, Value>>(&bytes) {
        Ok(mut problem) => {
            with_ids(&mut problem, ctx);
            serde_json::to_vec(&problem).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(named.len()));
    Response::from_parts(parts, Body::from(named))
}

fn with_ids(problem: &mut Map<String, Value>, ctx: &RequestContext) {
    problem
        .entry("request_id")
        .or_insert_with(|| Value::String(ctx.request_id.to_string()));
    problem
        .entry("trace_id")
        .or_insert_with(|| Value::String(ctx.trace.trace_id_hex()));
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(crate::problem::CONTENT_TYPE))
}
