//! The gateway's exported spans: one server span per request, one client span per upstream
//! attempt (so retries show as separate attempts). Each is `Span::none()` when spans are not
//! exported: the request path then formats and allocates nothing for them.

use http::{Request, Response};
use tracing::Span;

use crate::upstream::Target;

/// The server span of a client request; its name gains the route once one matched.
pub(super) fn request<B>(req: &Request<B>, hop: &flotilla_telemetry::Hop<'_>) -> Span {
    if !hop.records() {
        return Span::none();
    }
    tracing::info_span!(
        target: flotilla_telemetry::TARGET,
        "gateway request",
        otel.kind = "server",
        otel.name = req.method().as_str(),
        otel.status_code = tracing::field::Empty,
        http.request.method = req.method().as_str(),
        http.route = tracing::field::Empty,
        url.path = req.uri().path(),
        url.scheme = req.uri().scheme_str().unwrap_or("http"),
        http.response.status_code = tracing::field::Empty,
    )
}

pub(super) fn record_response(span: &Span, route: Option<&str>, status: u16) {
    if let Some(route) = route {
        // The gateway's routes are named, not templated: the name is what groups requests.
        span.record("http.route", route);
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// A client span for one attempt at an upstream instance; `resend` counts the attempts
/// before it (`http.request.resend_count`).
pub(super) fn attempt<B>(
    req: &Request<B>,
    target: &Target,
    resend: usize,
    trace: &flotilla_core::TraceContext,
) -> Span {
    if !flotilla_telemetry::enabled_for(Some(trace)) {
        return Span::none();
    }
    let host = target.authority.host();
    let port = target
        .authority
        .port_u16()
        .unwrap_or(match target.scheme.as_str() {
            "https" => 443,
            _ => 80,
        });
    tracing::info_span!(
        target: flotilla_telemetry::TARGET,
        "upstream attempt",
        otel.kind = "client",
        otel.name = req.method().as_str(),
        otel.status_code = tracing::field::Empty,
        http.request.method = req.method().as_str(),
        http.request.resend_count = resend,
        server.address = host,
        server.port = port,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

pub(super) fn record_attempt<B, E, T>(span: &Span, result: &Result<Result<Response<B>, E>, T>) {
    match result {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", resp.status().as_str());
            }
        }
        Ok(Err(_)) => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", "transport");
        }
        Err(_) => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", "timeout");
        }
    }
}
